"""Schedules (crons, time zone, no overlap, run stamp), the processToRun mapping and the data-change definitions."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
)
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import (
    DEFAULT_REEXECUTION_POLICY,
    get_reexecution_strategy,
)

from intervalprocessing_dagster.data_change.cadence import CADENCE_TAG, MAX_RUNTIME_TAG, Cadence
from intervalprocessing_dagster.data_change.definitions import data_change_definitions
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS
from intervalprocessing_dagster.data_change.schedules import build_data_change_schedule
from intervalprocessing_dagster.process_to_run import JOB_BY_PROCESS
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from intervalprocessing_dagster.settings import Settings

EXPECTED = {
    "nightly_data_change_job": ("nightly_data_change_schedule", "0 2 * * *"),
    "hourly_data_change_job": ("hourly_data_change_schedule", "0 * * * *"),
    "half_hourly_data_change_job": ("half_hourly_data_change_schedule", "*/30 * * * *"),
    "quarter_hourly_data_change_job": ("quarter_hourly_data_change_schedule", "*/15 * * * *"),
}


def test_four_jobs_and_schedules_with_the_old_crons_in_the_configured_timezone() -> None:
    settings = Settings.from_env({"INTERVALPROCESSING_TIMEZONE": "America/Chicago"})
    definitions = data_change_definitions(settings)
    schedules = {s.job_name: s for s in definitions.schedules}
    assert set(schedules) == set(EXPECTED)
    assert {job.name for job in definitions.jobs} == {*EXPECTED, "revert_automation_run_job"}  # the undo: no schedule
    for job_name, (schedule_name, cron) in EXPECTED.items():
        schedule = schedules[job_name]
        assert (schedule.name, schedule.cron_schedule, schedule.execution_timezone) == (
            schedule_name,
            cron,
            "America/Chicago",
        )


@pytest.mark.parametrize("cadence", list(Cadence))
def test_each_job_is_limited_to_less_than_its_interval_and_tagged_for_one_at_a_time(cadence: Cadence) -> None:
    tags = DATA_CHANGE_JOBS[cadence].tags
    assert tags[CADENCE_TAG] == cadence.key
    assert 0 < cadence.work_budget_seconds < int(tags[MAX_RUNTIME_TAG]) < cadence.interval_seconds


@pytest.mark.parametrize("cadence", list(Cadence))
def test_the_retry_daemon_resumes_a_failed_run_from_failure(cadence: Cadence) -> None:
    """Step outputs live in S3 in production, so a retry's new ECS task can load the loader's output: only the
    automations that did not finish run again (tests/deploy proves the re-execution on the production path)."""
    with DagsterInstance.ephemeral() as instance:
        job = DATA_CHANGE_JOBS[cadence]
        # Launched runs carry their job's tags (the launch path merges them in; create_run_for_job does not).
        run = instance.create_run_for_job(job, status=DagsterRunStatus.FAILURE, tags=job.tags)
        strategy = get_reexecution_strategy(run, instance) or DEFAULT_REEXECUTION_POLICY  # as the daemon decides
        assert strategy == ReexecutionStrategy.FROM_FAILURE


def test_process_to_run_values_map_to_the_jobs() -> None:
    assert {name: job for name, job in JOB_BY_PROCESS.items() if name != "FileGenerationProcesses"} == {
        "NightlyDataChangeProcesses": "nightly_data_change_job",
        "HourlyDataChangeProcesses": "hourly_data_change_job",
        "HalfHourlyDataChangeProcesses": "half_hourly_data_change_job",
        "QuarterHourlyDataChangeProcesses": "quarter_hourly_data_change_job",
    }
    assert Cadence.from_process_to_run("HalfHourlyDataChangeProcesses") is Cadence.HALF_HOURLY
    with pytest.raises(ValueError, match="FileGenerationProcesses"):
        Cadence.from_process_to_run("FileGenerationProcesses")


def test_a_tick_requests_a_run_stamped_with_the_tick() -> None:
    schedule = build_data_change_schedule(Cadence.HOURLY, DATA_CHANGE_JOBS[Cadence.HOURLY], "America/New_York")
    tick = datetime(2026, 3, 6, 2, 0, tzinfo=ZoneInfo("America/New_York"))
    with instance_for_test() as instance:
        with build_schedule_context(instance, scheduled_execution_time=tick) as context:
            request = schedule.evaluate_tick(context).run_requests
    assert request is not None and len(request) == 1 and isinstance(request[0], RunRequest)
    assert datetime.fromisoformat(request[0].tags[RUN_STAMP_TAG]) == tick


def _origin(job_name: str) -> RemoteJobOrigin:
    """Where a run came from; Dagster insists on one for a queued run (no public constructor helper exists)."""
    code_location = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(module_name="intervalprocessing_dagster.definitions")
    )
    repository = RemoteRepositoryOrigin(code_location_origin=code_location, repository_name="__repository__")
    return RemoteJobOrigin(repository_origin=repository, job_name=job_name)


@pytest.mark.parametrize(
    ("status", "skipped"),
    [
        (DagsterRunStatus.QUEUED, True),
        (DagsterRunStatus.STARTED, True),
        (DagsterRunStatus.CANCELING, True),
        (DagsterRunStatus.SUCCESS, False),
        (DagsterRunStatus.FAILURE, False),
    ],
)
def test_a_tick_is_skipped_while_the_previous_run_is_queued_or_running(status: DagsterRunStatus, skipped: bool) -> None:
    job = DATA_CHANGE_JOBS[Cadence.QUARTER_HOURLY]
    schedule = build_data_change_schedule(Cadence.QUARTER_HOURLY, job, "UTC")
    with instance_for_test() as instance:
        previous = instance.add_run(
            DagsterRun(job_name=job.name, run_id=str(uuid.uuid4()), status=status, remote_job_origin=_origin(job.name))
        )
        other = DagsterRun(
            job_name=DATA_CHANGE_JOBS[Cadence.HOURLY].name, run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED
        )
        instance.add_run(other)
        with build_schedule_context(instance, scheduled_execution_time=datetime.now(ZoneInfo("UTC"))) as context:
            result = schedule(context)
    if skipped:
        assert isinstance(result, SkipReason) and previous.run_id in result.skip_message
    else:
        assert isinstance(result, RunRequest)  # another cadence's run does not block this one
