"""The file-generation domain's Dagster definitions: report assets, their sources, the job and its schedule.

``file_generation_job`` is what the old ``processToRun=FileGenerationProcesses`` ran (``PROCESS_TO_RUN``); its run
config's one switch, ``{include_weekly: true}``, runs the weekly reports whatever the day. ``file_generation_schedule``
runs it at ``FILE_GENERATION_CRON`` in ``INTERVALPROCESSING_TIMEZONE``, tagging each run with its tick; after missed
ticks one run stands in for them and makes up a missed Friday's weekly reports. The resources (``mongo``, ``clock``,
``report_store``) are built in ``intervalprocessing_dagster.definitions.build_resources``. Missed ticks:
docs/decisions/file-generation-missed-ticks.md.
"""

from __future__ import annotations

from datetime import datetime
from itertools import takewhile
from typing import Any

from dagster import (
    AssetSelection,
    ConfigMapping,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)
from dagster import Field as ConfigField

from intervalprocessing_dagster.reports.assets import (
    BUILT_IN_REPORT_ASSETS,
    CONFIG_ASSETS,
    FRIDAY,
    MISSED_TICKS_TAG,
    WEEKLY_CATCH_UP_TAG,
    configured_reports,
)
from intervalprocessing_dagster.reports.checks import (
    CONFIG_CHECKS,
    build_freshness_checks,
    build_report_freshness_sensor,
    build_row_count_checks,
)
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG, run_stamp_tags, ticks_after
from intervalprocessing_dagster.runs.executor import with_run_summary
from intervalprocessing_dagster.runs.tags import SCHEDULE_NAME_TAG
from intervalprocessing_dagster.settings import Settings

PROCESS_TO_RUN = "FileGenerationProcesses"
SCHEDULE_NAME = "file_generation_schedule"
REPORT_ASSETS = (*BUILT_IN_REPORT_ASSETS, configured_reports)


def _report_op_config(config: dict[str, Any]) -> dict[str, Any]:
    """The job's one switch, handed to every report asset."""
    op_config = {"config": {"include_weekly": config["include_weekly"]}}
    return {"ops": {report.op.name: op_config for report in REPORT_ASSETS}}


file_generation_job = define_asset_job(
    name="file_generation_job",
    selection=AssetSelection.assets(*REPORT_ASSETS),
    description="The old FileGenerationProcesses: the daily reports, the weekly ones on Fridays, configured reports.",
    # Every report and check step in the run worker's own process, one after another: a step's own process cost
    # seconds of start-up each and bought no parallel CPU (docs/decisions/small-jobs-in-process.md).
    executor_def=with_run_summary(in_process_executor),
    config=ConfigMapping(
        config_fn=_report_op_config,
        config_schema={
            "include_weekly": ConfigField(
                bool, default_value=False, description="Produce the weekly reports even when the stamp is not a Friday."
            )
        },
    ),
)


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
            context.log.warning(
                f"{len(missed)} tick(s) were missed before {tick.isoformat()}: "
                f"{_listing(missed)}; this one run stands for them (files named for {tick:%Y-%m-%d})"
            )
            tags[MISSED_TICKS_TAG] = _listing(missed)
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


def report_definitions(settings: Settings) -> Definitions:
    freshness_checks = build_freshness_checks(REPORT_ASSETS, settings.timezone)
    return Definitions(
        assets=[*CONFIG_ASSETS, *REPORT_ASSETS],
        asset_checks=[*CONFIG_CHECKS, *freshness_checks, *build_row_count_checks(REPORT_ASSETS)],
        jobs=[file_generation_job],
        schedules=[build_file_generation_schedule(settings)],
        sensors=[build_report_freshness_sensor(freshness_checks)],
    )
