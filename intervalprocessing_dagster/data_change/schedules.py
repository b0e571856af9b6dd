"""The four data-change schedules: the old EventBridge crons, in ``INTERVALPROCESSING_TIMEZONE``.

Two rules the old deployment lacked (spec §5.7, §5.10). A tick is skipped while a run of the same job is still
queued or going, so a cadence never runs twice at once (the production run queue also limits the ``CADENCE_TAG``
value to one run; the skip keeps the queue from filling up behind a slow run). And each requested run carries its
tick as the run stamp (``run_stamp_tags``), so the dates it writes, and those of any retry, are the tick's, not a
``DateTime.Now`` taken somewhere along the way.

Ticks missed while the daemon was down make one run, for the latest missed tick (the daemon's scheduler does that
for schedules without partitions; the instances' ``max_catchup_runs: 1`` says the same): an automation applies to
the data as it is now, so one run does what the missed ones would have, and no note is pushed once per missed tick
with a stamp of its own. A dead run does not hold the next tick back for long: run monitoring fails it (within its
poll interval), and from then on it is no longer "queued or going" here nor holding the run queue's slot for its
cadence; its retry, if run retries start one, is that cadence's run until it ends.
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
