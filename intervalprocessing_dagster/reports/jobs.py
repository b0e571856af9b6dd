"""The file-generation job: what the old ``processToRun=FileGenerationProcesses`` ran, the report assets in one run.

Its run config's one switch, ``{include_weekly: true}``, runs the weekly reports whatever the day. Every step runs in
the run worker's own process (docs/decisions/small-jobs-in-process.md).
"""

from __future__ import annotations

from typing import Any

from dagster import AssetSelection, ConfigMapping, define_asset_job, in_process_executor
from dagster import Field as ConfigField

from intervalprocessing_dagster.reports.assets import BUILT_IN_REPORT_ASSETS, configured_reports
from intervalprocessing_dagster.runs.executor import with_run_summary

#: The old ECS task's ``processToRun`` value for this job (``process_to_run.py``).
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
