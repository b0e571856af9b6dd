"""Which instant a run stands for, in the platform's time zone.

The old app called ``DateTime.Now`` wherever it needed a time (spec §5.10): note dates, file names and the Friday
check could disagree within one run, and a retry got a new time, so its notes and files were new too. Here every run
has one *stamp*: a scheduled run's tick (set as a visible tag by our schedules), or, for a manual run, the moment its
root run was created. Re-executions and retries share the root run (and its tag), so they share the stamp: a retried
note push or report upload is recognised as the same one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    DagsterError,
    DagsterInstance,
    DagsterRun,
    OpExecutionContext,
)

# A schedule's ticks as Dagster's scheduler computes them (its own DST rules): Dagster exports cron strings only, not
# their arithmetic (dagster-io/dagster#9501); tests/test_dagster_internals.py checks these two.
from dagster._utils.schedules import cron_string_iterator, get_latest_completed_cron_tick
from pydantic import Field

RUN_STAMP_TAG = "intervalprocessing/run_stamp"


def latest_tick(cron: str, now: datetime, timezone: str) -> datetime:
    """The last tick of ``cron`` at or before ``now``, as the schedule with that cron would have fired it."""
    return get_latest_completed_cron_tick(cron, now, timezone)


def ticks_after(after: datetime, cron: str, timezone: str) -> Iterator[datetime]:
    """The ticks of ``cron`` after ``after``, in order, as the schedule with that cron fires them."""
    return cron_string_iterator(after.timestamp() + 1, cron, timezone)


def run_stamp_tags(scheduled_time: datetime) -> dict[str, str]:
    """Tags a schedule puts on the run it requests, so the run (and any retry of it) knows its tick."""
    return {RUN_STAMP_TAG: scheduled_time.isoformat()}


def run_stamp(run: DagsterRun, instance: DagsterInstance) -> datetime:
    """The instant ``run`` stands for (time-zone aware): its stamp tag, else its root run's, else the root run's
    creation. The root's tag counts because not every re-execution copies its parent's tags: the daemon's retries
    and the UI's button do, Dagster's Python API (``ReexecutionOptions``) does not.

    For code that has a run but no op context too (the data-change jobs' closing check runs in the executor).
    """
    root = instance.get_run_record_by_id(run.root_run_id) if run.root_run_id else None
    tagged = run.tags.get(RUN_STAMP_TAG) or (root.dagster_run.tags.get(RUN_STAMP_TAG) if root else None)
    if tagged:
        return datetime.fromisoformat(tagged)
    if root is None:  # a root run, or the root run was deleted: this run's own creation is the next best instant
        root = instance.get_run_record_by_id(run.run_id)
    return root.create_timestamp


class RunClock(ConfigurableResource):
    """Gives ops their run's stamp in ``timezone`` (``INTERVALPROCESSING_TIMEZONE``)."""

    timezone: str = Field(default="UTC", description="IANA time zone for stamps, file names and the Friday rule.")

    def stamp(self, context: OpExecutionContext | AssetExecutionContext) -> datetime:
        zone = ZoneInfo(self.timezone)
        try:
            run = context.run
        except DagsterError:  # Dagster's DagsterInvalidPropertyError, not exported
            # Direct invocation (build_op_context / build_asset_context) has no run at all: the present moment is
            # the only instant such an execution can stand for.
            return datetime.now(zone)
        return run_stamp(run, context.instance).astimezone(zone)
