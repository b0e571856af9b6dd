"""History retention (``history/retention.py``) against real storage: the production shape (Postgres storage,
compute logs and step outputs in S3 on moto) and the local one (the repo-root dagster.yaml: SQLite, disk).

Runs are real runs, executed under Dagster's own ``freeze_time`` so that their records, events and check
executions carry the age a test needs; the retention pass then runs at the real "now". What is asserted is read
back from storage and S3 directly (event rows, check-execution rows, object keys, SQLite files), not from the pass's
own report alone. About 25 s in all.
"""

import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetKey,
    AssetObservation,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    JobDefinition,
    MaterializeResult,
    OpExecutionContext,
    ReexecutionOptions,
    asset,
    asset_check,
    execute_job,
    in_process_executor,
    job,
    materialize,
    op,
    reconstructable,
)
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG
from dagster._core.test_utils import freeze_time
from dagster_aws.s3 import S3Resource
from sqlalchemy import func, select

from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.history.resources import RunRetention
from intervalprocessing_dagster.history.retention import purge_history
from intervalprocessing_dagster.runs.step_outputs import (
    LocalStepOutputs,
    LocalStepOutputStore,
    S3StepOutputs,
    S3StepOutputStore,
)
from intervalprocessing_dagster.settings import (
    DEFAULT_RUN_HISTORY_FAILURE_DAYS,
    DEFAULT_RUN_HISTORY_SUCCESS_DAYS,
    Settings,
    SettingsError,
)
from tests.postgres_cluster import PostgresServer

REPO = Path(__file__).resolve().parents[2]
BUCKET = "intervalprocessing"  # the conftest's s3_bucket
STEP_OUTPUTS_PREFIX = "dagster/step-outputs/"
COMPUTE_LOGS_PREFIX = "dagster/compute-logs"


@op(config_schema={"fail": bool})
def produce(context: OpExecutionContext) -> int:
    print("produced")  # captured stdout: a compute-log object per run
    if context.op_config["fail"]:
        raise RuntimeError("asked to fail")
    return 3


@op
def consume(value: int) -> None:
    print(f"consumed {value}")


@job(
    executor_def=in_process_executor,
    resource_defs={
        "io_manager": S3StepOutputs(s3_resource=S3Resource(), s3_bucket=BUCKET, s3_prefix=STEP_OUTPUTS_PREFIX)
    },
)
def work_job() -> None:
    consume(produce())


@job(executor_def=in_process_executor, resource_defs={"io_manager": LocalStepOutputs()})
def local_work_job() -> None:  # the code location's local IO manager: the instance's storage folder on disk
    consume(produce())


@op
def observe(context: OpExecutionContext) -> None:
    context.log_event(AssetObservation(asset_key="audits", metadata={"modified": 1}))


@job(executor_def=in_process_executor)
def observe_job() -> None:
    observe()


@asset
def report() -> MaterializeResult:
    return MaterializeResult(metadata={"rows": 3})


@asset_check(asset=report)
def report_rows() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


def _days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def _work(instance: DagsterInstance, days: float, *, fail: bool = False, the_job: JobDefinition = work_job) -> str:
    with freeze_time(_days_ago(days)):
        result = the_job.execute_in_process(
            instance=instance, raise_on_error=False, run_config={"ops": {"produce": {"config": {"fail": fail}}}}
        )
    assert result.success is not fail
    return result.run_id


def _retry(instance: DagsterInstance, parent_run_id: str, days: float) -> str:
    """A re-execution from failure, as the UI's button or a run retry makes it: it loads the parent's stored
    outputs, and carries the run-group tags those add (Dagster's Python API sets only the run's fields)."""
    with freeze_time(_days_ago(days)):
        result = execute_job(
            reconstructable(work_job),
            instance=instance,
            reexecution_options=ReexecutionOptions.from_failure(parent_run_id, instance),
            run_config={"ops": {"produce": {"config": {"fail": False}}}},
            tags={PARENT_RUN_ID_TAG: parent_run_id, ROOT_RUN_ID_TAG: parent_run_id},
        )
    return result.run_id


def _materialize(instance: DagsterInstance, days: float, selection: AssetSelection | None = None) -> str:
    with freeze_time(_days_ago(days)):
        return materialize([report, report_rows], instance=instance, selection=selection).run_id


def _event_rows(instance: DagsterInstance, run_id: str) -> int:
    with instance.event_log_storage.index_connection() as conn:
        return conn.execute(
            select(func.count()).select_from(SqlEventLogStorageTable).where(SqlEventLogStorageTable.c.run_id == run_id)
        ).scalar_one()


def _check_rows(instance: DagsterInstance, run_id: str) -> int:
    table = AssetCheckExecutionsTable
    with instance.event_log_storage.index_connection() as conn:
        return conn.execute(select(func.count()).select_from(table).where(table.c.run_id == run_id)).scalar_one()


def _s3_keys(prefix: str) -> set[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def _run_keys(run_id: str) -> set[str]:
    """Everything S3 holds for the run: captured stdout/stderr and stored op outputs."""
    return _s3_keys(f"{COMPUTE_LOGS_PREFIX}/storage/{run_id}/") | _s3_keys(f"{STEP_OUTPUTS_PREFIX}storage/{run_id}/")


@pytest.fixture()
def production_instance(
    postgres_server: PostgresServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    """deploy/dagster.yaml's storage and compute logs: the pooled Postgres storage on a fresh database, S3 logs."""
    monkeypatch.setenv("TEST_PG_PASSWORD", postgres_server.password)
    (tmp_path / "dagster.yaml").write_text(
        postgres_server.dagster_storage(postgres_server.create_database(), "TEST_PG_PASSWORD")
        + textwrap.dedent(f"""\
            compute_logs:
              module: dagster_aws.s3.compute_log_manager
              class: S3ComputeLogManager
              config: {{bucket: {s3_bucket}, prefix: {COMPUTE_LOGS_PREFIX}, skip_empty_files: true}}
            telemetry:
              enabled: false
        """)
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_old_runs_go_with_their_events_logs_and_outputs_and_what_is_still_read_stays(
    production_instance: DagsterInstance,
) -> None:
    instance = production_instance
    # Past their window and held by nothing: deleted.
    old_report = _materialize(instance, 100)  # a materialization and a check evaluation, both superseded below
    old_failure = _work(instance, 95, fail=True)
    old_success = _work(instance, 40)
    old_group = [first := _work(instance, 100, fail=True), _retry(instance, first, 99)]
    # Kept: inside the window.
    recent_failure = _work(instance, 60, fail=True)
    recent_success = _work(instance, 10)
    # Kept although past the window: a failed run whose re-execution is inside its window ...
    parent = _work(instance, 95, fail=True)
    child = _retry(instance, parent, 20)
    # ... the latest materialization, observation and check evaluation, and a run that never finished.
    latest_materialization = _materialize(instance, 35)
    latest_check = _materialize(instance, 33, AssetSelection.checks(report_rows))
    with freeze_time(_days_ago(50)):
        latest_observation = observe_job.execute_in_process(instance=instance).run_id
    with freeze_time(_days_ago(200)):
        unfinished = instance.create_run_for_job(observe_job, status=DagsterRunStatus.STARTED).run_id

    deleted = [old_report, old_failure, old_success, *old_group]
    kept = [
        recent_failure,
        recent_success,
        parent,
        child,
        latest_materialization,
        latest_check,
        latest_observation,
        unfinished,
    ]
    assert all(_event_rows(instance, run_id) for run_id in deleted + kept[:-1])
    assert all(_run_keys(run_id) for run_id in [old_failure, old_success, recent_success])
    assert _check_rows(instance, old_report) == 1
    kept_before = {run_id: (_event_rows(instance, run_id), _run_keys(run_id)) for run_id in kept}
    store = S3StepOutputStore(s3_resource=S3Resource(), s3_bucket=BUCKET, s3_prefix=STEP_OUTPUTS_PREFIX)

    dry = purge_history(instance, RunRetention(), store, now=time.time(), batch_size=2, dry_run=True)
    assert {record.dagster_run.run_id for record in instance.get_run_records()} == set(deleted + kept)

    # Batches of 2, so kept and deleted runs share batches and the cursor has to step over deleted ones; then the
    # VACUUM of the history tables.
    purged = purge_history(instance, RunRetention(), store, now=time.time(), batch_size=2)

    assert {record.dagster_run.run_id for record in instance.get_run_records()} == set(kept)
    for run_id in deleted:
        assert _event_rows(instance, run_id) == 0, run_id
        assert _check_rows(instance, run_id) == 0, run_id
        assert _run_keys(run_id) == set(), run_id
    for run_id in kept:
        assert (_event_rows(instance, run_id), _run_keys(run_id)) == kept_before[run_id], run_id
    assert purged.deleted_runs == dry.deleted_runs == {"SUCCESS": 3, "FAILURE": 2}
    assert purged.kept_latest == {latest_materialization, latest_check, latest_observation}
    assert purged.kept_for_group == {parent}
    assert purged.deleted_step_outputs == 2  # old_success's and the retry's `produce` output (failures store none)
    assert purged.complete and purged.vacuum_seconds is not None and dry.vacuum_seconds is None

    # What the checks and the asset pages read is still there.
    assert instance.fetch_materializations(report.key, limit=1).records[0].run_id == latest_materialization
    assert instance.fetch_observations(AssetKey("audits"), limit=1).records[0].run_id == latest_observation
    check_key = AssetCheckKey(report.key, "report_rows")
    summary = instance.event_log_storage.get_asset_check_summary_records([check_key])[check_key]
    assert summary.last_completed_check_execution_record.run_id == latest_check

    again = purge_history(instance, RunRetention(), store, now=time.time())
    assert sum(again.deleted_runs.values()) == 0


@pytest.fixture()
def local_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """The repo-root dagster.yaml, as `dagster dev` and `dagster job execute` load it from the project folder."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_the_local_instance_loses_the_runs_files_and_every_run_of_the_last_days_stays(
    local_instance: DagsterInstance,
) -> None:
    instance = local_instance
    old, recent = _work(instance, 8, the_job=local_work_job), _work(instance, 3, the_job=local_work_job)
    home = Path(".intervalprocessing/dagster_home")
    files = {
        run_id: [home / "history" / "runs" / f"{run_id}.db", home / "storage" / run_id] for run_id in (old, recent)
    }
    assert all(path.exists() for paths in files.values() for path in paths)
    assert (home / "storage" / old / "produce" / "result").is_file()  # the stored output, beside the captured logs
    short_windows = RunRetention(success_days=1, failure_days=1, keep_all_days=7)

    stopped = purge_history(instance, short_windows, LocalStepOutputStore(), now=time.time(), stop_at=0.0)
    assert not stopped.complete and not stopped.deleted_runs and all(path.exists() for path in files[old])

    purged = purge_history(instance, short_windows, LocalStepOutputStore(), now=time.time())
    assert purged.deleted_runs == {"SUCCESS": 1}
    assert [record.dagster_run.run_id for record in instance.get_run_records()] == [recent]
    assert not any(path.exists() for path in files[old])
    assert all(path.exists() for path in files[recent])
    assert instance.all_logs(old) == []


def history_retention_job() -> JobDefinition:
    """The job as the code location builds it from the environment (at module level: reconstructable)."""
    return build_definitions(Settings.from_env()).resolve_job_def("history_retention_job")


def test_the_code_locations_job_deletes_with_the_configured_windows_and_says_so(
    local_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, kept = _work(local_instance, 40, the_job=local_work_job), _work(local_instance, 34, the_job=local_work_job)
    monkeypatch.setenv("RUN_HISTORY_SUCCESS_DAYS", "35")

    dry = execute_job(
        reconstructable(history_retention_job),
        instance=local_instance,
        run_config={"ops": {"delete_old_runs": {"config": {"dry_run": True}}}},
    )
    assert local_instance.get_run_by_id(old) is not None
    result = execute_job(reconstructable(history_retention_job), instance=local_instance)

    assert local_instance.get_run_by_id(old) is None and local_instance.get_run_by_id(kept) is not None
    dry_output = next(event for event in dry.all_events if event.event_type == DagsterEventType.STEP_OUTPUT)
    assert dry_output.event_specific_data.metadata["deleted_runs"].value == 1
    assert dry_output.event_specific_data.metadata["dry_run"].value is True
    summaries = [
        entry.user_message
        for entry in local_instance.all_logs(result.run_id)
        if entry.user_message.startswith("Run summary")
    ]
    assert summaries == [
        "Run summary: history retention deleted 1 run(s) (1 success) and 1 stored step output(s); kept past their "
        "window: 0 holding an asset's or check's latest event, 0 whose re-execution group is still kept"
    ]


def test_retention_is_on_by_default_and_its_settings_are_checked() -> None:
    settings = Settings.from_env({})
    assert (
        settings.run_history_retention,
        settings.run_history_success_days,
        settings.run_history_failure_days,
        settings.run_history_keep_all_days,
    ) == (True, 30, 90, 7)
    schedule = build_definitions(settings).resolve_schedule_def("history_retention_schedule")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING and schedule.cron_schedule == "30 4 * * *"
    assert build_definitions(settings).resources["retention"] == RunRetention()

    off = build_definitions(Settings.from_env({"RUN_HISTORY_RETENTION": "off"}))
    assert "history_retention_schedule" not in {schedule.name for schedule in off.schedules}
    assert off.resolve_job_def("history_retention_job") is not None  # still there, to run by hand

    for environ, message in (
        ({"RUN_HISTORY_RETENTION": "sometimes"}, "RUN_HISTORY_RETENTION='sometimes' must be on or off"),
        ({"RUN_HISTORY_SUCCESS_DAYS": "0"}, "RUN_HISTORY_SUCCESS_DAYS='0' is not a whole number of days of at least 1"),
        ({"RUN_HISTORY_FAILURE_DAYS": "ninety"}, "RUN_HISTORY_FAILURE_DAYS='ninety' is not a whole number of days"),
    ):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(environ)


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster.yaml"])
def test_both_instances_purge_ticks_as_long_as_the_runs_they_start(path: str, tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text((REPO / path).read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    for instigator in ("schedule", "sensor"):
        assert config["retention"][instigator]["purge_after_days"] == {
            "skipped": 7,
            "success": DEFAULT_RUN_HISTORY_SUCCESS_DAYS,
            "failure": DEFAULT_RUN_HISTORY_FAILURE_DAYS,
        }
