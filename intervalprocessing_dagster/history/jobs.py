"""The history retention job: deletes runs past their window with their events, logs and step outputs, keeping what
the UI still reads (docs/decisions/history-retention.md).
"""

import time

from dagster import Config, MetadataValue, Nothing, OpExecutionContext, Out, Output, in_process_executor, job, op
from pydantic import Field

from intervalprocessing_dagster.history.resources import RunRetention
from intervalprocessing_dagster.history.retention import purge_history
from intervalprocessing_dagster.runs.executor import with_run_summary
from intervalprocessing_dagster.runs.run_summary import SUMMARY_METADATA_KEY
from intervalprocessing_dagster.runs.step_outputs import StepOutputStore


class HistoryRetentionConfig(Config):
    """Run config of ``delete_old_runs`` (``ops: {delete_old_runs: {config: {dry_run: true}}}``)."""

    dry_run: bool = Field(default=False, description="Count what would be deleted; delete nothing.")
    batch_size: int = Field(default=100, ge=1, description="Runs read per query, oldest first.")
    max_minutes: float = Field(
        default=60, gt=0, description="Stop starting deletions after this long; the next run goes on."
    )


@op(
    description="Deletes the runs past their retention window with their events, logs and stored step outputs.",
    out=Out(Nothing),
)
def delete_old_runs(
    context: OpExecutionContext,
    config: HistoryRetentionConfig,
    retention: RunRetention,
    step_output_store: StepOutputStore,
) -> Output[None]:
    started = time.monotonic()
    report = purge_history(
        context.instance,
        retention,
        step_output_store,
        now=time.time(),
        batch_size=config.batch_size,
        stop_at=started + config.max_minutes * 60,
        dry_run=config.dry_run,
        log=context.log.info,
    )
    return Output(
        None,
        metadata={
            "deleted_runs": sum(report.deleted_runs.values()),
            **{f"deleted_{status.lower()}": count for status, count in sorted(report.deleted_runs.items())},
            "deleted_step_outputs": report.deleted_step_outputs,
            "kept_latest_events": len(report.kept_latest),
            "kept_for_re_execution_group": len(report.kept_for_group),
            "complete": report.complete,
            "dry_run": report.dry_run,
            "vacuum_seconds": report.vacuum_seconds if report.vacuum_seconds is not None else MetadataValue.null(),
            "seconds": round(time.monotonic() - started, 1),
            SUMMARY_METADATA_KEY: report.summary(),  # the run's closing "Run summary" line
        },
    )


@job(
    description="Deletes Dagster's run history past its retention window (RUN_HISTORY_* settings); keeps every "
    "asset's and check's latest events.",
    executor_def=with_run_summary(in_process_executor),  # one step: no process of its own needed
)
def history_retention_job() -> None:
    delete_old_runs()
