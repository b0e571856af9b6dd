"""The file-generation domain's part of the code location: the report assets and their sources, their checks and
freshness sensor, ``file_generation_job`` (``jobs.py``) and its schedule (``schedules.py``). The resources (``mongo``,
``clock``, ``report_store``) come from ``intervalprocessing_dagster/resources.py``.
"""

from __future__ import annotations

from dagster import Definitions

from intervalprocessing_dagster.reports.assets import CONFIG_ASSETS
from intervalprocessing_dagster.reports.checks import (
    CONFIG_CHECKS,
    build_freshness_checks,
    build_report_freshness_sensor,
    build_row_count_checks,
)
from intervalprocessing_dagster.reports.jobs import REPORT_ASSETS, file_generation_job
from intervalprocessing_dagster.reports.schedules import build_file_generation_schedule
from intervalprocessing_dagster.settings import Settings


def report_definitions(settings: Settings) -> Definitions:
    freshness_checks = build_freshness_checks(REPORT_ASSETS, settings.timezone)
    return Definitions(
        assets=[*CONFIG_ASSETS, *REPORT_ASSETS],
        asset_checks=[*CONFIG_CHECKS, *freshness_checks, *build_row_count_checks(REPORT_ASSETS)],
        jobs=[file_generation_job],
        schedules=[build_file_generation_schedule(settings)],
        sensors=[build_report_freshness_sensor(freshness_checks)],
    )
