"""The history retention schedule: daily at 04:30 in the platform's time zone, after the night's runs."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from intervalprocessing_dagster.history.jobs import history_retention_job
from intervalprocessing_dagster.settings import Settings

# Daily at 04:30, after the nightly data change (02:00) and file generation (03:00).
HISTORY_RETENTION_CRON = "30 4 * * *"


def build_history_retention_schedule(settings: Settings) -> ScheduleDefinition:
    """Daily, running from the start (like the config checks): history is bounded without anyone turning it on."""
    return ScheduleDefinition(
        name="history_retention_schedule",
        job=history_retention_job,
        cron_schedule=HISTORY_RETENTION_CRON,
        execution_timezone=settings.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Daily deletion of runs older than {settings.run_history_success_days} days (successful) or "
        f"{settings.run_history_failure_days} days (failed), with their events, logs and step outputs.",
    )
