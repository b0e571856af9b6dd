"""A data-change run worker that dies with SIGKILL at a chosen point, for the recovery tests.

It is a real run worker: the hourly job as the code location builds it, Dagster's own execution (``execute_job``, its
in-process executor), the instance's own SQLite files and SecantusDB. The one addition is where it dies, a
:class:`KillPoint` watched from inside the process, so a test can stop it exactly between two events or with an update
in flight, which a kill from outside can only hit by chance:

* ``KillingSqliteStorage`` (the worker instance's ``storage:``) kills the process just before or just after the Nth
  event of a type (and step) is written to the event log;
* a pymongo command listener kills it when the Nth command of a name on a collection is sent (``started``) or has been
  answered (``succeeded``: the server applied it, the step never heard).

:func:`start_worker` forks it from a server process that has imported Dagster and the code location once (Python's
``forkserver``), instead of paying for those imports again in every worker (about 2 s each here). As
``dagster job execute`` and ``dagster api execute_run`` do, the worker turns SIGTERM and SIGINT into Dagster's
interrupt, so a termination (the UI's, or ECS stopping the task) reaches the run as in production.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pymongo.monitoring
from dagster import DagsterEventType, DagsterInstance, JobDefinition, ReexecutionOptions, execute_job, reconstructable
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.sqlite_storage import _event_logs_directory
from dagster._serdes import ConfigurableClassData
from dagster._utils.interrupts import capture_interrupts

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.instance.storage import PooledSqliteEventLogStorage, PooledSqliteStorage
from intervalprocessing_dagster.runs.clock import run_stamp_tags
from intervalprocessing_dagster.settings import Settings


def hourly_data_change_job() -> JobDefinition:
    """The job as the code location builds it from the environment; at module level, so it is reconstructable."""
    return build_definitions(Settings.from_env()).get_job_def(Cadence.HOURLY.job_name)


@dataclass(frozen=True)
class KillPoint:
    """Where the worker dies: at the ``nth`` (1-based) occurrence of ``what``.

    ``what`` is ``before_event`` / ``after_event`` (``event_type``, and ``step_key`` if given) or ``mongo_started`` /
    ``mongo_succeeded`` (``command`` on ``collection``); ``label`` says in words where that is, for messages. With
    ``sends=SIGSTOP`` the worker stops there instead, for a test to signal it at that exact point."""

    label: str
    what: str
    nth: int = 1
    event_type: str | None = None
    step_key: str | None = None
    command: str | None = None
    collection: str | None = None
    sends: signal.Signals = signal.SIGKILL


_KILL_POINT: KillPoint | None = None  # this worker's, set by _work before anything runs
_seen = [0]


def _count_and_maybe_die() -> None:
    _seen[0] += 1
    if _KILL_POINT is not None and _seen[0] == _KILL_POINT.nth:
        os.kill(os.getpid(), _KILL_POINT.sends)


def _matches_event(entry: EventLogEntry, what: str) -> bool:
    point = _KILL_POINT
    if point is None or point.what != what or entry.dagster_event is None:
        return False
    event_type = DagsterEventType[point.event_type]
    return entry.dagster_event.event_type == event_type and point.step_key in (None, entry.step_key)


class KillingEventLogStorage(PooledSqliteEventLogStorage):
    def store_event(self, event: EventLogEntry) -> None:
        if _matches_event(event, "before_event"):
            _count_and_maybe_die()
        super().store_event(event)
        if _matches_event(event, "after_event"):
            _count_and_maybe_die()


class KillingSqliteStorage(PooledSqliteStorage):
    """The project's local storage, with the event log that dies at the kill point."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = KillingEventLogStorage(_event_logs_directory(base_dir))


class _KillOnCommand(pymongo.monitoring.CommandListener):
    def __init__(self, point: KillPoint) -> None:
        self._point = point
        self._watched: set[int] = set()

    def _is_watched(self, event: pymongo.monitoring.CommandStartedEvent) -> bool:
        point = self._point
        return event.command_name == point.command and event.command.get(event.command_name) == point.collection

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        if self._is_watched(event):
            if self._point.what == "mongo_started":
                _count_and_maybe_die()
            else:
                self._watched.add(event.request_id)

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self._watched:
            self._watched.discard(event.request_id)
            _count_and_maybe_die()

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        self._watched.discard(event.request_id)


def start_worker(
    env: dict[str, str],
    log_path: Path,
    kill: KillPoint | None,
    *,
    stamp: datetime | None = None,
    reexecute_from: str | None = None,
) -> BaseProcess:
    """The run worker in its own process, with ``env`` as its environment and its output in ``log_path``: a new run
    of ``stamp`` (tagged as the schedule tags it), or a re-execution from failure of ``reexecute_from``."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    worker = context.Process(target=_work, args=(env, str(log_path), kill, stamp, reexecute_from))
    worker.start()
    return worker


def _work(
    env: dict[str, str], log_path: str, kill: KillPoint | None, stamp: datetime | None, reexecute_from: str | None
) -> None:
    global _KILL_POINT
    os.environ.clear()
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(log, stream.fileno())
    _KILL_POINT = kill
    if kill is not None and kill.what.startswith("mongo_"):
        pymongo.monitoring.register(_KillOnCommand(kill))  # before the job's first client is created
    job = reconstructable(hourly_data_change_job)
    options: dict[str, Any] = {}
    with capture_interrupts(), DagsterInstance.get() as instance:
        if reexecute_from:
            options["reexecution_options"] = ReexecutionOptions.from_failure(reexecute_from, instance)
        else:
            options["tags"] = run_stamp_tags(stamp)
        with execute_job(job, instance=instance, **options) as result:
            print(f"run {result.run_id} success={result.success}", flush=True)
