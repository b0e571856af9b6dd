"""A failed run's console output (``dagster job execute``, the ECS run task's log) states each error once.

Dagster prints a step's error and stack trace with its ``STEP_FAILURE`` line, then again with the run's
``RUN_FAILURE`` line: the run-failure event carries the first failed step's error (``JobFailureData.error``, set
from ``first_step_failure_event`` in ``dagster/_core/events/__init__.py``, ``DagsterEvent.job_failure``), and the
console formatter appends the error of any event that has one (``_error_str_for_event`` in
``dagster/_core/log_manager.py``). A plain Dagster job with one failing op shows it too. The event itself is right
to keep the error (the UI's run page and ``run_failure_alert_sensor`` read it); only the console line repeats it.

So :func:`say_each_error_once` puts a filter on the run's console loggers that ends the ``RUN_FAILURE`` line at its
message (``... failed. Steps failed: [...]``) when its error is a step's error already printed above it. A run that
failed outside its steps (an exception in orchestration, an interrupted run) keeps its error: it was printed
nowhere else. The executor wrapper (``run_summary.py``) installs it, as it is the one piece every launch path runs
in the orchestrating process, the process that logs ``RUN_FAILURE``.

One upstream caveat: a step's lines reach the console through Dagster's ``tail -F`` mirror of the process's
captured output, which is stopped when the capture ends and can then drop the last lines under heavy load
(dagster-io/dagster#23336; ``DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH`` delays the stop). The error is always in
the run's event log (the UI), its compute logs and the alert.
"""

from __future__ import annotations

import logging

from dagster import DagsterEventType
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR, DagsterLogManager


class RepeatedStepErrorFilter(logging.Filter):
    """Drops a step's error (printed with its ``STEP_FAILURE``) from the ``RUN_FAILURE`` line that repeats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        metadata = getattr(record, LOG_RECORD_METADATA_ATTR, None)
        event = metadata.get("dagster_event") if metadata else None
        if event is not None and event.event_type == DagsterEventType.RUN_FAILURE:
            failure = event.job_failure_data
            if failure.first_step_failure_event is not None and failure.error is not None:
                record.msg = str(record.msg).removesuffix(f"\n\n{failure.error.to_string()}")
        return True


def say_each_error_once(log: DagsterLogManager) -> None:
    """Filter the console loggers of ``log`` (a run's log manager) with :class:`RepeatedStepErrorFilter`.

    Dagster keeps a run's loggers (the ``@logger`` instances: the colored console one unless a job sets its own) on
    the log manager's handler and exposes no accessor; the CLI test (``tests/oncall/test_console_log.py``) fails if
    that ever moves."""
    for handler in log.handlers:
        for logger in getattr(handler, "_loggers", ()):
            if not any(isinstance(existing, RepeatedStepErrorFilter) for existing in logger.filters):
                logger.addFilter(RepeatedStepErrorFilter())
