"""Which instant a run stands for, in the platform's time zone.

The old app called ``DateTime.Now`` wherever it needed a time (spec §5.10): note dates, file names and the Friday
check could disagree within one run, and a retry got a new time, so its notes and files were new too. Here every run
has one *stamp*: a scheduled run's tick (set as a visible tag by our schedules), or, for a manual run, the moment its
root run was created. Re-executions and retries copy tags and share the root run, so they share the stamp: a retried
note push or report upload is recognised as the same one.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import AssetExecutionContext, ConfigurableResource, OpExecutionContext
from dagster._core.errors import DagsterInvalidPropertyError
from pydantic import Field

RUN_STAMP_TAG = "intervalprocessing/run_stamp"


def run_stamp_tags(scheduled_time: datetime) -> dict[str, str]:
    """Tags a schedule puts on the run it requests, so the run (and any retry of it) knows its tick."""
    return {RUN_STAMP_TAG: scheduled_time.isoformat()}


class RunClock(ConfigurableResource):
    """Gives ops their run's stamp in ``timezone`` (``INTERVALPROCESSING_TIMEZONE``)."""

    timezone: str = Field(default="UTC", description="IANA time zone for stamps, file names and the Friday rule.")

    def stamp(self, context: OpExecutionContext | AssetExecutionContext) -> datetime:
        zone = ZoneInfo(self.timezone)
        try:
            run = context.run
        except DagsterInvalidPropertyError:
            # Direct invocation (build_op_context / build_asset_context) has no run at all: the present moment is
            # the only instant such an execution can stand for.
            return datetime.now(zone)
        tagged = run.tags.get(RUN_STAMP_TAG)
        if tagged:
            return datetime.fromisoformat(tagged).astimezone(zone)
        record = context.instance.get_run_record_by_id(run.root_run_id or run.run_id)
        if record is None:  # the root run was deleted; this run's own creation is the next best instant
            record = context.instance.get_run_record_by_id(run.run_id)
        return record.create_timestamp.astimezone(zone)
