"""The four data-change schedules: the old EventBridge crons, in ``INTERVALPROCESSING_TIMEZONE``.

Two rules the old deployment lacked (spec §5.7, §5.10): a tick is skipped while a run of the same job is still queued
or going, so a cadence never runs twice at once; and each run carries its tick as the run stamp
(``run_stamp_tags``), so the dates it and its retries write are the tick's. Ticks missed while the daemon was down
make one run, for the latest tick. Why: docs/decisions/one-run-per-cadence.md.
"""

from dagster import (
    DagsterRunStatus,
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.runs.clock import run_stamp_tags

# A run in any of these states would overlap the next one.
ACTIVE_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def build_data_change_schedule(cadence: Cadence, job: JobDefinition, timezone: str) -> ScheduleDefinition:
    """The schedule for ``cadence``; off until an operator starts it (the old guide created its rules disabled too),
    so a fresh deployment or ``dagster dev`` never changes data before someone has checked what it points at."""

    @schedule(
        name=cadence.schedule_name,
        cron_schedule=cadence.cron,
        job=job,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"{cadence.value} automations at '{cadence.cron}' ({timezone}); skips a tick while the previous "
        "run is still queued or running.",
    )
    def data_change_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        active = context.instance.get_runs(RunsFilter(job_name=job.name, statuses=ACTIVE_RUN_STATUSES), limit=1)
        if active:
            run = active[0]
            return SkipReason(f"{job.name} run {run.run_id} is still {run.status.value}; a cadence never overlaps")
        tick = context.scheduled_execution_time
        return RunRequest(run_key=tick.isoformat(), tags=run_stamp_tags(tick))

    return data_change_schedule
