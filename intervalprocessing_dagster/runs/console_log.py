"""A run's console output (``dagster job execute``, the ECS run task's log, ``dagster dev``'s terminal): each error
once, an expected failure as its message alone, and the run's summary as its last line.

Dagster's console repeats a step's error on the ``RUN_FAILURE`` line and prints 25 lines of frames for a ``Failure``
raised on purpose, and the summary line would come before the run's end; only the console is changed, the event log
(the UI) and alerts keep every error whole. Installed by the executor wrapper (``executor.py``) on the run's console
loggers and, through ``execute_steps_in_process``, on the in-process executor's step loggers. The Dagster
internals it follows and the rules: docs/decisions/console-output.md.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import threading

from dagster import DagsterEvent, DagsterEventType, DagsterLogManager

RUN_SUMMARY_PREFIX = "Run summary: "
# Names Dagster gives these but does not export (dagster._core.errors, dagster._core.log_manager);
# tests/test_dagster_internals.py fails if a Dagster version changes them.
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
