"""A run's console output (``dagster job execute``, the ECS run task's log, ``dagster dev``'s terminal): each error
once, an expected failure as its message alone, and the run's summary as its last line.

Each error once. Dagster prints a step's error with its ``STEP_FAILURE`` line, then again with the run's
``RUN_FAILURE`` line: the run-failure event carries the first failed step's error (``JobFailureData.error``, set
from ``first_step_failure_event`` in ``dagster/_core/events/__init__.py``, ``DagsterEvent.job_failure``), and the
console formatter appends the error of any event that has one (``_error_str_for_event`` in
``dagster/_core/log_manager.py``). A plain Dagster job with one failing op shows it too. The event itself is right
to keep the error (the UI's run page and ``run_failure_alert_sensor`` read it); only the console line repeats it, so
the ``RUN_FAILURE`` line ends at its message (``... failed. Steps failed: [...]``) when its error is a step's error
already printed above it. A run that failed outside its steps (an exception in orchestration, an interrupted run)
keeps its error: it was printed nowhere else.

Expected failures without a stack trace. The console formatter prints a failed step's whole error, stack trace
included, even for a ``dagster.Failure`` (Dagster's public way to fail a step on purpose: the UI shows its
description and keeps the trace one click away; the console has no such click). An invalid automation, a guard's
refusal, documents the server refused, a revert that cannot start, a config check failed at ERROR: these are
findings, said in full by their message, and their 25 lines of Dagster frames read as a crash. So a step that failed
with a ``Failure`` raised on purpose (not chained to another exception: ``raise Failure(...)`` or ``raise ... from
None``), or through a blocking check, prints its message alone. A ``Failure`` that wraps an unexpected error
(``raise Failure(...) from exc``) and any other exception keep their stack trace. The UI and the event log keep every
error whole either way.

The run summary last. A person reads the bottom of the output, but Dagster logs the run's end (``RUN_SUCCESS`` /
``RUN_FAILURE``) after the summary (the executor that writes it runs before), and ``dagster job execute`` then
initializes the job's resources once more for its result object (``RESOURCE_INIT_*`` lines, and on failure its own
``Error: Run … resulted in failure.``). So the console holds the ``Run summary:`` line back and prints it when the
process exits, or when the process starts another run first (a test, a Python session running several): it is the
last line of a CLI run, and each run's line comes after that run's own output and before the next run's. Only the
console is reordered: the event log (the UI) keeps the line where it was logged. A process killed outright (SIGKILL)
exits without printing it; the line is in the UI.

The executor wrapper (``executor.py``) installs this on the run's console loggers, as it is the one piece every
launch path runs in the orchestrating process, the process that logs ``RUN_FAILURE`` and the summary. Dagster's
in-process executor runs the steps in a context of its own, made in its ``execute`` with loggers of its own, which
log the steps' lines: ``execute_steps_in_process`` is that ``execute`` with the filter on those loggers too.
The steps of a job run by the multiprocess executor log in their own processes, with their own loggers, so their
failures keep Dagster's rendering (of this project's jobs, only Dagster's implicit asset job, the UI's
**Materialize**, runs that way).

One upstream caveat: in a multiprocess run, a step's lines reach the console through Dagster's ``tail -F`` mirror of
the process's captured output, which is stopped when the capture ends and can then drop the last lines under heavy
load (dagster-io/dagster#23336; ``DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH`` delays the stop). The error is always
in the run's event log (the UI), its compute logs and the alert.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import threading
from typing import TYPE_CHECKING

from dagster import DagsterEvent, DagsterEventType

if TYPE_CHECKING:
    from dagster._core.log_manager import DagsterLogManager

RUN_SUMMARY_PREFIX = "Run summary: "
# Names Dagster gives these but does not export (dagster._core.errors, dagster._core.log_manager);
# tests/runs/test_dagster_internals.py fails if a Dagster version changes them.
BLOCKING_CHECK_ERROR = "DagsterAssetCheckFailedError"  # the error a blocking check fails its step with
LOG_RECORD_METADATA_ATTR = "dagster_meta"  # the attribute of a run's log record that holds its event

# Summary lines held back, with the logger that prints them, in the order logged.
_held: list[tuple[logging.Logger, logging.LogRecord]] = []
_held_lock = threading.Lock()
_exit_hook_registered = False


def failed_by_blocking_check(event: DagsterEvent) -> bool:
    """Whether a step failed only because its blocking check failed at ERROR (the config checks are blocking)."""
    error = event.step_failure_data.error
    return error is not None and error.cls_name == BLOCKING_CHECK_ERROR


def expected_failure(event: DagsterEvent) -> str | None:
    """The message of a step that failed as expected (a ``Failure`` raised on purpose, or a blocking check); None
    for an unexpected error, whose stack trace the console keeps."""
    data = event.step_failure_data
    error = data.error
    if error is None:
        return None
    message = error.message.strip()
    head, colon, rest = message.partition(": ")  # "dagster._core.errors.DagsterAssetCheckFailedError: 1 blocking ..."
    message = rest if colon and head.endswith(error.cls_name) else message
    if failed_by_blocking_check(event):
        return message
    if data.user_failure_data is None or error.cause is not None or error.context is not None:
        return None
    return data.user_failure_data.description or message


class ConsoleFilter(logging.Filter):
    """On one console logger of a run: shortens the lines described above and holds the summary line back."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        metadata = getattr(record, LOG_RECORD_METADATA_ATTR, None)
        if not metadata:
            return True
        event = metadata.get("dagster_event")
        if event is None:
            if str(metadata.get("orig_message", "")).startswith(RUN_SUMMARY_PREFIX):
                _hold(self._logger, record)
                return False
            return True
        if event.event_type == DagsterEventType.STEP_FAILURE:
            reason = expected_failure(event)
            if reason is not None:
                error = event.step_failure_data.error_display_string
                record.msg = str(record.msg).removesuffix(f"\n\n{error}") + f"\n\n{reason}"
        elif event.event_type == DagsterEventType.RUN_FAILURE:
            failure = event.job_failure_data
            if failure.first_step_failure_event is not None and failure.error is not None:
                record.msg = str(record.msg).removesuffix(f"\n\n{failure.error.to_string()}")
        return True


def _hold(logger: logging.Logger, record: logging.LogRecord) -> None:
    global _exit_hook_registered  # noqa: PLW0603 - one exit hook per process
    with _held_lock:
        _held.append((logger, record))
        if not _exit_hook_registered:
            # At exit: multiprocessing's exit function runs its finalizers both at a normal interpreter exit (it is
            # itself an atexit hook) and at the end of a multiprocessing child, which skips atexit hooks. That child
            # is the run worker under `dagster dev` (the code server starts each run as a spawned Process).
            multiprocessing.util.Finalize(None, print_held_summaries, exitpriority=100)
            _exit_hook_registered = True


def print_held_summaries() -> None:
    """Print the summary lines held back (through their loggers' handlers, as they would have been)."""
    with _held_lock:
        held = list(_held)
        _held.clear()
    for logger, record in held:
        logger.callHandlers(record)


def install_console_filter(log: DagsterLogManager) -> None:
    """Put a :class:`ConsoleFilter` on each console logger of ``log`` (a run's log manager).

    Dagster keeps a run's loggers (the ``@logger`` instances: the colored console one unless a job sets its own) on
    the log manager's handler and exposes no accessor; the CLI tests (``tests/oncall/test_console_log.py``) fail if
    that ever moves. An earlier run's summary still held is printed first, before this run's output."""
    print_held_summaries()
    for handler in log.handlers:
        for logger in getattr(handler, "_loggers", ()):
            if not any(isinstance(existing, ConsoleFilter) for existing in logger.filters):
                logger.addFilter(ConsoleFilter(logger))
