"""The code location: each domain's jobs, schedules, sensors, assets and checks, and the resources for this environment
(``resources.py``, the only place that branches on it). ``RUN_HISTORY_RETENTION=off`` leaves out the daily history
retention schedule (its job stays). The production *instance* (Postgres, ECS run launcher) is chosen by
``DAGSTER_HOME``'s ``dagster.yaml``, not by code.
"""

from __future__ import annotations

from dagster import Definitions

from intervalprocessing_dagster.data_change.definitions import data_change_definitions
from intervalprocessing_dagster.history.jobs import history_retention_job
from intervalprocessing_dagster.history.schedules import build_history_retention_schedule
from intervalprocessing_dagster.oncall.jobs import config_checks_job
from intervalprocessing_dagster.oncall.schedules import build_config_checks_schedule
from intervalprocessing_dagster.oncall.sensors import check_failure_alert_sensor, run_failure_alert_sensor
from intervalprocessing_dagster.reports.definitions import report_definitions
from intervalprocessing_dagster.resources import build_resources
from intervalprocessing_dagster.runs.executor import run_summary_executor
from intervalprocessing_dagster.settings import Settings


def build_definitions(settings: Settings) -> Definitions:
    return Definitions.merge(
        data_change_definitions(settings),
        report_definitions(settings),
        Definitions(
            jobs=[config_checks_job, history_retention_job],
            schedules=[
                build_config_checks_schedule(settings),
                *([build_history_retention_schedule(settings)] if settings.run_history_retention else []),
            ],
            sensors=[run_failure_alert_sensor, check_failure_alert_sensor],
            resources=build_resources(settings),
            # Every job's default executor: Dagster's own, plus one INFO summary line at the end of each run.
            executor=run_summary_executor,
        ),
    )


defs = build_definitions(Settings.from_env())
