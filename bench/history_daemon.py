"""The daemon's scheduler and run-queue iterations, timed on the measured instance.

Both are Dagster's own daemon code (``launch_scheduled_runs``, ``QueuedRunCoordinatorDaemon.run_iteration``), on a
workspace process context that loads the code location from the repo's ``workspace.yaml`` in its own gRPC server,
as ``dagster-daemon`` does. Every schedule is started, and each scheduler iteration is given a "now" just after the
next quarter hour, so every iteration has ticks due: the quarter-hourly one always, the half-hourly one every other
time, the hourly and config-check ones once an hour. A due data-change tick runs its schedule function in the code
server, which asks the run storage whether a run of the job is still active (the query a long history slows), and
the scheduler creates and queues the run. The run-queue iteration then reads the in-progress and queued runs and
dequeues them; the measured instance's run launcher only records launches (Dagster's ``MockedRunLauncher``), so
what is timed is the daemon's own storage work, not ECS. The runs an iteration created are deleted afterwards, so
the next one sees the history, not a queue of its predecessors.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._scheduler.scheduler import launch_scheduled_runs

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCATION = "intervalprocessing"


def measure(instance: DagsterInstance, iterations: int) -> dict[str, Any]:
    """Seconds per scheduler iteration and per run-queue iteration over ``iterations`` quarter hours."""
    logger = logging.getLogger("bench.history.daemon")
    logger.setLevel(logging.WARNING)
    before = {record.dagster_run.run_id for record in instance.get_run_records(limit=50)}
    scheduler_seconds: list[float] = []
    queue_seconds: list[float] = []
    created_runs = 0
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO_ROOT / "workspace.yaml")])) as context:
        location = context.create_request_context().get_code_location(LOCATION)
        (repository,) = location.get_repositories().values()
        for schedule in repository.get_schedules():
            instance.start_schedule(schedule)
        now = datetime.now(UTC)
        first = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0) + timedelta(minutes=15)
        try:
            with QueuedRunCoordinatorDaemon(interval_seconds=5) as queue_daemon:
                for number in range(iterations):
                    end = first + timedelta(minutes=15 * number, seconds=5)
                    started = time.perf_counter()
                    list(launch_scheduled_runs(context, logger, end, iteration_times={}))
                    scheduler_seconds.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    list(queue_daemon.run_iteration(context, fixed_iteration_time=end.timestamp()))
                    queue_seconds.append(time.perf_counter() - started)
                    created = [
                        record.dagster_run.run_id
                        for record in instance.get_run_records(limit=50)
                        if record.dagster_run.run_id not in before
                    ]
                    created_runs += len(created)
                    for run_id in created:
                        instance.delete_run(run_id)
        finally:
            for schedule in repository.get_schedules():
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
    return {
        "iterations": iterations,
        "runs_created": created_runs,
        "scheduler_seconds": _summary(scheduler_seconds),
        "run_queue_seconds": _summary(queue_seconds),
    }


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }
