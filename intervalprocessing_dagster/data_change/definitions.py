"""The data-change part of the code location: the collections it reads and writes, the four cadence jobs and their
schedules, the undo job, and the automations' config checks.

Resources (``mongo``, ``clock``, ``guard``) are provided by the top-level ``definitions.py``.
"""

from dagster import Definitions

from intervalprocessing_dagster.data_change.assets import COLLECTIONS, DATA_UPDATE_CONFIGS
from intervalprocessing_dagster.data_change.checks import automations_are_valid, automations_within_limits
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS, revert_automation_run_job
from intervalprocessing_dagster.data_change.schedules import build_data_change_schedule
from intervalprocessing_dagster.settings import Settings


def data_change_definitions(settings: Settings) -> Definitions:
    """Jobs and schedules (the schedules run in ``settings.timezone``); the collections and the config checks."""
    return Definitions(
        assets=[DATA_UPDATE_CONFIGS, *COLLECTIONS],
        asset_checks=[automations_are_valid, automations_within_limits],
        jobs=[*DATA_CHANGE_JOBS.values(), revert_automation_run_job],
        schedules=[build_data_change_schedule(c, job, settings.timezone) for c, job in DATA_CHANGE_JOBS.items()],
    )
