"""The file-generation domain's Dagster definitions: report assets, their sources, the job and its schedule.

``file_generation_job`` is what the old ``processToRun=FileGenerationProcesses`` ran (``PROCESS_TO_RUN``, for the
compatibility entry point). Its run config is one optional switch, ``{include_weekly: true}``, which makes the
weekly reports run whatever the day. ``file_generation_schedule`` runs it daily at ``FILE_GENERATION_CRON``
(default ``0 3 * * *``, after the nightly data change) in ``INTERVALPROCESSING_TIMEZONE``, and tags each run with
its tick, so file names, the Friday rule and any retry of that run all use the tick's time.

The resources these assets need are ``mongo``, ``clock`` and ``report_store``; they are not defined here but in
``intervalprocessing_dagster.definitions.build_resources``, which also picks the report store (S3 or local folder,
see ``delivery``).
"""

from __future__ import annotations

from typing import Any

from dagster import (
    AssetSelection,
    ConfigMapping,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)
from dagster import Field as ConfigField

from intervalprocessing_dagster.reports.assets import (
    BUILT_IN_REPORT_ASSETS,
    CONFIG_ASSETS,
    SOURCE_ASSETS,
    configured_reports,
)
from intervalprocessing_dagster.reports.checks import (
    CONFIG_CHECKS,
    build_freshness_checks,
    build_report_freshness_sensor,
    build_row_count_checks,
)
from intervalprocessing_dagster.runs.clock import run_stamp_tags
from intervalprocessing_dagster.settings import Settings

PROCESS_TO_RUN = "FileGenerationProcesses"
REPORT_ASSETS = (*BUILT_IN_REPORT_ASSETS, configured_reports)


def _report_op_config(config: dict[str, Any]) -> dict[str, Any]:
    """The job's one switch, handed to every report asset."""
    op_config = {"config": {"include_weekly": config["include_weekly"]}}
    return {"ops": {report.op.name: op_config for report in REPORT_ASSETS}}


file_generation_job = define_asset_job(
    name="file_generation_job",
    selection=AssetSelection.assets(*REPORT_ASSETS),
    description="The old FileGenerationProcesses: the daily reports, the weekly ones on Fridays, configured reports.",
    config=ConfigMapping(
        config_fn=_report_op_config,
        config_schema={"include_weekly": ConfigField(
            bool, default_value=False, description="Produce the weekly reports even when the stamp is not a Friday."
        )},
    ),
)


def build_file_generation_schedule(settings: Settings) -> ScheduleDefinition:
    @schedule(
        name="file_generation_schedule",
        job=file_generation_job,
        cron_schedule=settings.file_generation_cron,
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.STOPPED,  # like the data-change schedules: an operator turns it on
        description="Daily file generation, after the nightly data change.",
    )
    def file_generation_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        tick = context.scheduled_execution_time
        return RunRequest(run_key=tick.isoformat(), tags=run_stamp_tags(tick))

    return file_generation_schedule


def report_definitions(settings: Settings) -> Definitions:
    freshness_checks = build_freshness_checks(REPORT_ASSETS, settings.timezone)
    return Definitions(
        assets=[*SOURCE_ASSETS, *CONFIG_ASSETS, *REPORT_ASSETS],
        asset_checks=[*CONFIG_CHECKS, *freshness_checks, *build_row_count_checks(REPORT_ASSETS)],
        jobs=[file_generation_job],
        schedules=[build_file_generation_schedule(settings)],
        sensors=[build_report_freshness_sensor(freshness_checks)],
    )
