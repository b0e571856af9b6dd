"""The config checks' schedule: hourly at :45, a quarter of an hour before the data-change ticks, **running** from the
start (it changes no data).
"""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from intervalprocessing_dagster.oncall.jobs import config_checks_job
from intervalprocessing_dagster.settings import Settings

CONFIG_CHECKS_CRON = "45 * * * *"


def build_config_checks_schedule(settings: Settings) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="config_checks_schedule",
        job=config_checks_job,
        cron_schedule=CONFIG_CHECKS_CRON,
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Hourly validation of the config collections (dataupdateconfigs, fileprocessingconfigs, "
        "storedqueries).",
    )
