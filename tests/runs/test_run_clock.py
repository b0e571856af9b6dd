"""A run's stamp: its schedule tick, or its root run's creation time, so retries and re-executions share it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import (
    DagsterInstance,
    JobDefinition,
    ReexecutionOptions,
    build_op_context,
    execute_job,
    in_process_executor,
    instance_for_test,
    job,
    op,
    reconstructable,
)

from intervalprocessing_dagster.runs.clock import RunClock, run_stamp_tags


@op
def stamp_op(context, clock: RunClock) -> datetime:
    return clock.stamp(context)


def _stamp_job(timezone: str) -> JobDefinition:
    @job(name="stamp_job", resource_defs={"clock": RunClock(timezone=timezone)}, executor_def=in_process_executor)
    def stamp_job() -> None:
        stamp_op()

    return stamp_job


def utc_stamp_job() -> JobDefinition:
    """At module level, so a re-execution in another process can reconstruct the job."""
    return _stamp_job("UTC")


def _stamp(instance: DagsterInstance, timezone: str = "UTC", tags: dict[str, str] | None = None) -> tuple:
    result = _stamp_job(timezone).execute_in_process(instance=instance, tags=tags or {})
    return result.run_id, result.output_for_node("stamp_op")


def test_scheduled_run_is_stamped_with_its_tick_in_the_configured_zone() -> None:
    tick = datetime(2024, 3, 15, 7, 0, tzinfo=UTC)
    with DagsterInstance.ephemeral() as instance:
        _, stamp = _stamp(instance, "America/New_York", run_stamp_tags(tick))
    assert stamp == tick
    assert stamp.isoformat() == "2024-03-15T03:00:00-04:00"


def test_manual_run_is_stamped_with_its_creation_and_a_reexecution_shares_it() -> None:
    with instance_for_test() as instance:
        before = datetime.now(UTC)
        first_run_id, first = _stamp(instance)
        reexecution = ReexecutionOptions(parent_run_id=first_run_id, step_selection=["stamp_op"])
        with execute_job(reconstructable(utc_stamp_job), instance, reexecution_options=reexecution) as result:
            assert result.dagster_run.root_run_id == first_run_id
            retried = result.output_for_node("stamp_op")
        _, unrelated = _stamp(instance)
    assert before - timedelta(seconds=1) <= first <= datetime.now(UTC)
    assert retried == first
    assert unrelated > first


def test_a_reexecution_that_does_not_copy_tags_still_has_its_root_runs_tick() -> None:
    """Dagster's Python API (``ReexecutionOptions``) does not copy the parent's tags (the daemon's retries and the
    UI's button do): the stamp comes from the root run's tag, not from the root run's creation."""
    tick = datetime(2024, 3, 15, 7, 0, tzinfo=UTC)
    with instance_for_test() as instance:
        with execute_job(reconstructable(utc_stamp_job), instance, tags=run_stamp_tags(tick)) as first:
            first_run_id = first.run_id
        reexecution = ReexecutionOptions(parent_run_id=first_run_id, step_selection=["stamp_op"])
        with execute_job(reconstructable(utc_stamp_job), instance, reexecution_options=reexecution) as result:
            assert "intervalprocessing/run_stamp" not in result.dagster_run.tags
            assert result.output_for_node("stamp_op") == tick


def test_direct_invocation_has_no_run_and_is_stamped_now() -> None:
    before = datetime.now(UTC)
    stamp = RunClock(timezone="Europe/Berlin").stamp(build_op_context())
    assert before <= stamp <= datetime.now(UTC)
    assert stamp.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
