"""The file-generation schedule: ``FILE_GENERATION_CRON`` in ``INTERVALPROCESSING_TIMEZONE``, each run tagged with
its tick.

After missed ticks one run stands in for them and makes up a missed Friday's weekly reports
(docs/decisions/file-generation-missed-ticks.md).
"""

from __future__ import annotations

from datetime import datetime
from itertools import takewhile

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)

from intervalprocessing_dagster.reports.assets import FRIDAY, MISSED_TICKS_TAG, WEEKLY_CATCH_UP_TAG
from intervalprocessing_dagster.reports.jobs import file_generation_job
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG, run_stamp_tags, ticks_after
from intervalprocessing_dagster.runs.tags import SCHEDULE_NAME_TAG
from intervalprocessing_dagster.settings import Settings

SCHEDULE_NAME = "file_generation_schedule"


def build_file_generation_schedule(settings: Settings) -> ScheduleDefinition:
    @schedule(
        name=SCHEDULE_NAME,
        job=file_generation_job,
        cron_schedule=settings.file_generation_cron,
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.STOPPED,  # like the data-change schedules: an operator turns it on
        description="Daily file generation, after the nightly data change.",
    )
    def file_generation_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        tick = context.scheduled_execution_time
        tags = run_stamp_tags(tick)
        missed = missed_ticks(context, settings)
        if missed:
            tags[MISSED_TICKS_TAG] = _listing(missed)
            context.log.warning(
                f"{len(missed)} tick(s) were missed before {tick.isoformat()}: "
                f"{tags[MISSED_TICKS_TAG]}; this one run stands for them (files named for {tick:%Y-%m-%d})"
            )
        fridays = [missed_tick for missed_tick in missed if missed_tick.weekday() == FRIDAY]
        if fridays and tick.weekday() != FRIDAY:
            tags[WEEKLY_CATCH_UP_TAG] = fridays[-1].isoformat()
            return RunRequest(run_key=tick.isoformat(), tags=tags, run_config={"include_weekly": True})
        return RunRequest(run_key=tick.isoformat(), tags=tags)

    return file_generation_schedule


def missed_ticks(context: ScheduleEvaluationContext, settings: Settings) -> list[datetime]:
    """The schedule's ticks strictly between its previous run's stamp and this tick, oldest first."""
    previous = context.instance.get_runs(
        RunsFilter(job_name=file_generation_job.name, tags={SCHEDULE_NAME_TAG: SCHEDULE_NAME}), limit=1
    )
    stamp = previous[0].tags.get(RUN_STAMP_TAG) if previous else None
    if stamp is None:
        return []
    tick = context.scheduled_execution_time
    ticks = ticks_after(datetime.fromisoformat(stamp), settings.file_generation_cron, settings.timezone)
    return list(takewhile(lambda missed: missed < tick, ticks))


def _listing(ticks: list[datetime]) -> str:
    """The ticks in a run tag: all of a few, the first and last of many (an outage of months stays one line)."""
    if len(ticks) <= 3:
        return ", ".join(tick.isoformat() for tick in ticks)
    return f"{len(ticks)} ticks from {ticks[0].isoformat()} to {ticks[-1].isoformat()}"
