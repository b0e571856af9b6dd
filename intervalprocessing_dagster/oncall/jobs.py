"""The config checks of both domains as one job on its own hourly schedule, so a broken automation or report config
is red in the UI hours before the job that would trip over it runs.

``config_checks_job`` runs only the checks (``data_change/checks.py``, ``reports/checks.py``): it reads the config
collections and writes nothing. Its schedule starts **running** (unlike the jobs' schedules, it changes no data), and
the UI's "Execute" on any of the checks runs them on demand.

A check that fails at ERROR also fails its run (the checks are ``blocking``, Dagster's own way to make a failed check
fail its step): ERROR means the next run of a job will fail on that config (an active automation that cannot run, a
report that cannot be written), so ``dagster job execute -j config_checks_job`` exits non-zero and the run is red in
the UI, as an engineer checking a fix by hand expects. A WARN result (only inactive automations are invalid) leaves
the run green. The alert is not the run's, though: ``run_failure_alert_sensor`` passes over a run that failed only
through its checks, and ``check_failure_alert_sensor`` (``check_alerts.py``) tells a person once per new failure and
once when it is fixed, however many hourly runs stay red in between.
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from intervalprocessing_dagster.data_change.checks import automations_are_valid, automations_within_limits
from intervalprocessing_dagster.reports.checks import CONFIG_CHECKS
from intervalprocessing_dagster.runs.executor import with_run_summary

ALL_CONFIG_CHECKS = (automations_are_valid, automations_within_limits, *CONFIG_CHECKS)
CONFIG_CHECK_KEYS = frozenset(key for checks in ALL_CONFIG_CHECKS for key in checks.check_keys)

config_checks_job = define_asset_job(
    name="config_checks_job",
    selection=AssetSelection.checks(*ALL_CONFIG_CHECKS),
    description="Validates every automation, report process and stored query, and counts what each automation with "
    "a limit would match; writes no data.",
    # The four checks in the run worker's own process (docs/decisions/small-jobs-in-process.md).
    executor_def=with_run_summary(in_process_executor),
)
