"""A run's stamp: its schedule tick, or its root run's creation time, so retries and re-executions share it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance, build_op_context, job, op
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG

from intervalprocessing_dagster.run_clock import RunClock, run_stamp_tags


@op
def stamp_op(context, clock: RunClock) -> datetime:
    return clock.stamp(context)


@job
def stamp_job() -> None:
    stamp_op()


def _stamp(instance: DagsterInstance, timezone: str = "UTC", tags: dict[str, str] | None = None) -> tuple:
    result = stamp_job.execute_in_process(instance=instance, resources={"clock": RunClock(timezone=timezone)},
                                          tags=tags or {})
    return result.run_id, result.output_for_node("stamp_op")


def test_scheduled_run_is_stamped_with_its_tick_in_the_configured_zone() -> None:
    tick = datetime(2024, 3, 15, 7, 0, tzinfo=UTC)
    with DagsterInstance.ephemeral() as instance:
        _, stamp = _stamp(instance, "America/New_York", run_stamp_tags(tick))
    assert stamp == tick
    assert stamp.isoformat() == "2024-03-15T03:00:00-04:00"


def test_manual_run_is_stamped_with_its_creation_and_a_reexecution_shares_it() -> None:
    with DagsterInstance.ephemeral() as instance:
        before = datetime.now(UTC)
        first_run_id, first = _stamp(instance)
        _, retried = _stamp(instance, tags={ROOT_RUN_ID_TAG: first_run_id, PARENT_RUN_ID_TAG: first_run_id})
        _, unrelated = _stamp(instance)
    assert before - timedelta(seconds=1) <= first <= datetime.now(UTC)
    assert retried == first
    assert unrelated > first


def test_direct_invocation_has_no_run_and_is_stamped_now() -> None:
    before = datetime.now(UTC)
    stamp = RunClock(timezone="Europe/Berlin").stamp(build_op_context())
    assert before <= stamp <= datetime.now(UTC)
    assert stamp.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
