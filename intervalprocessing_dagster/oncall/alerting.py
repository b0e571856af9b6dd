"""A failed run reaches a person: ``run_failure_alert_sensor`` sends one message per finally-failed run.

The message names the job, the run (with a link), each failed step or automation with its bounded error, and what to
do (fix, then **Re-execute → From failure**). Only unattended runs alert (:func:`unattended_by`: schedules, sensors,
backfills, run retries, ``processToRun``; a person's own runs with ``ALERT_ON_HAND_LAUNCHED_RUNS=on``), told apart by
their tags, and a run that run retries will retry is not reported, so a person hears once, about the final attempt.
Sent through the ``alerts`` resource (SNS, or the sensor's log locally). Which tags and why:
docs/decisions/failure-alerts.md.
"""

from __future__ import annotations

from dagster import DagsterEvent, DagsterRun, RunFailureSensorContext
from dagster._core.events import RunFailureReason
from dagster._core.execution.retries import auto_reexecution_should_retry_run

from intervalprocessing_dagster.oncall.resources import Alert, AlertChannel
from intervalprocessing_dagster.runs.console_log import failed_by_blocking_check
from intervalprocessing_dagster.runs.run_summary import AUTOMATION_ID, AUTOMATION_NAME
from intervalprocessing_dagster.runs.tags import (
    AUTO_MATERIALIZE_TAG,
    AUTOMATION_CONDITION_TAG,
    BACKFILL_ID_TAG,
    LAUNCHED_BY_PROCESS_TO_RUN,
    LAUNCHED_BY_TAG,
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    RUN_FAILURE_REASON_TAG,
    SCHEDULE_NAME_TAG,
    SENSOR_NAME_TAG,
    WILL_RETRY_TAG,
)

# SNS refuses a subject longer than 100 characters.
_MAX_SUBJECT = 100
# What one alert quotes at most: a cadence with hundreds of broken automations still makes a readable message (SNS
# accepts 256 KB), and the run's page has the rest.
MAX_FAILED_STEPS = 20
MAX_ERROR_LINES = 12
MAX_LINE = 300
# What run monitoring appends to a dead task's failure after the failure itself (dagster_aws's EcsRunLauncher): the
# task's last log lines, which belong in the UI, not in a message.
_WORKER_LOG_TAIL = "Run worker logs:"


def alert_subject(text: str) -> str:
    return f"IntervalProcessing: {text}"[:_MAX_SUBJECT]


def excerpt(text: str, max_lines: int = MAX_ERROR_LINES) -> list[str]:
    """``text``'s non-blank lines, at most ``max_lines`` of at most ``MAX_LINE`` characters, saying what was cut."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()] or ["no message"]
    kept = [line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…" for line in lines[:max_lines]]
    if len(lines) > max_lines:
        kept.append(f"… {len(lines) - max_lines} more line(s) in the run's logs")
    return kept


def build_failure_alert(
    context: RunFailureSensorContext, step_failures: list[DagsterEvent], alerts: AlertChannel
) -> Alert:
    """The message for the failed run in ``context``: job, run, link, origin, why the run failed, each failed step."""
    run = context.dagster_run
    lines = [f"Job: {run.job_name}", f"Run: {run.run_id}", alerts.link_line(run.run_id)]
    lines.extend(_origin_lines(run))
    lines.extend(_run_failure_lines(context.failure_event, bool(step_failures)))
    if step_failures:
        lines.append(f"Failed steps ({len(step_failures)}):")
        names = [_automation_name(event) for event in step_failures]
        for event, name in zip(step_failures[:MAX_FAILED_STEPS], names, strict=False):
            shared = name is not None and names.count(name) > 1
            lines.append(f"- {_step_title(event, name, with_id=shared)}:")
            lines.extend(f"    {line}" for line in excerpt(_step_error(event)))
        if len(step_failures) > MAX_FAILED_STEPS:
            lines.append(f"- … and {len(step_failures) - MAX_FAILED_STEPS} more failed step(s): see the run")
    lines.append(_what_to_do(any(name is not None for name in map(_automation_name, step_failures))))
    subject = alert_subject(f"{run.job_name} failed")
    return Alert(subject=subject, text="\n".join(lines), attributes={"job": run.job_name, "run_id": run.run_id})


def will_be_retried(context: RunFailureSensorContext) -> bool:
    """Whether run retries will start another attempt of this run (so this failure is not the final one)."""
    instance = context.instance
    if not instance.run_retries_enabled:
        return False
    # The run as stored now: the instance adds dagster/will_retry just after the failure event the sensor saw.
    run = instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    tagged = run.tags.get(WILL_RETRY_TAG)
    if tagged is not None:
        return tagged.lower() == "true"  # Dagster writes "true" or "false"
    reason = run.tags.get(RUN_FAILURE_REASON_TAG)
    return auto_reexecution_should_retry_run(instance, run, RunFailureReason(reason) if reason else None)


def unattended_by(run: DagsterRun) -> str | None:
    """What started ``run`` with nobody watching it (a schedule, a sensor, a backfill, a run retry, ``processToRun``);
    None for a run a person launched from the UI or the CLI, re-executions included."""
    tags = run.tags
    if tags.get(RETRY_NUMBER_TAG):  # the retry daemon's run, whoever started the first attempt
        return f"run retry {tags[RETRY_NUMBER_TAG]}"
    if tags.get(PARENT_RUN_ID_TAG):  # re-executed by a person: the parent's schedule or sensor tag is inherited
        return None
    for tag, what in ((SCHEDULE_NAME_TAG, "schedule"), (SENSOR_NAME_TAG, "sensor"), (BACKFILL_ID_TAG, "backfill")):
        if tags.get(tag):
            return f"{what} {tags[tag]}"
    if tags.get(AUTOMATION_CONDITION_TAG) or tags.get(AUTO_MATERIALIZE_TAG):
        return "automation condition"
    if tags.get(LAUNCHED_BY_TAG) == LAUNCHED_BY_PROCESS_TO_RUN:  # the old EventBridge task definitions
        return LAUNCHED_BY_PROCESS_TO_RUN
    return None


def _what_to_do(automations_failed: bool) -> str:
    """The next step, as docs/runbook.md's alert table gives it: what works for the failure at hand."""
    if automations_failed:
        return (
            "Do: fix each automation's document in dataupdateconfigs (or the data), then open the run and choose "
            "Re-execute → From failure: the failed automations run again as their documents are then (one "
            "deactivated or deleted meanwhile is withdrawn, saying so); those already applied are not applied "
            "again."
        )
    return (
        "Do: fix the cause (for a dead task, its log and size), then open the run and choose Re-execute → From "
        "failure: what did not finish runs again, under the run's stamp."
    )


def _origin_lines(run: DagsterRun) -> list[str]:
    lines = []
    if run.tags.get(RETRY_NUMBER_TAG):
        lines.append(f"Attempt: retry {run.tags[RETRY_NUMBER_TAG]} of run {run.tags.get(PARENT_RUN_ID_TAG)}")
    started_by = next(
        (run.tags[tag] for tag in (SCHEDULE_NAME_TAG, SENSOR_NAME_TAG, LAUNCHED_BY_TAG) if run.tags.get(tag)), None
    )
    if started_by is None and run.tags.get(BACKFILL_ID_TAG):
        started_by = f"backfill {run.tags[BACKFILL_ID_TAG]}"
    lines.append(f"Started by: {started_by or 'hand (UI or CLI)'}")
    return lines


def failed_only_through_checks(failure_event: DagsterEvent, step_failures: list[DagsterEvent]) -> bool:
    """A run whose every failed step is a blocking check that failed at ERROR (a config check run finding a broken
    document): the check is red every hour until the document is fixed, the run with it."""
    data = failure_event.event_specific_data  # None for a failure reported from outside the run (run monitoring)
    return (
        data is not None
        and data.failure_reason == RunFailureReason.STEP_FAILURE
        and bool(step_failures)
        and all(failed_by_blocking_check(event) for event in step_failures)
    )


def _run_failure_lines(failure_event: DagsterEvent, has_step_failures: bool) -> list[str]:
    """Why the run failed, unless that is only Dagster's "Steps failed: [...]" (the steps are listed below): the
    message of a run that failed outside its steps (a dead or stuck task, a run over its time, a run found
    incomplete), with its error, if any, and without the worker's log tail."""
    data = failure_event.event_specific_data  # None for a failure reported from outside the run (run monitoring)
    if data is not None and data.failure_reason == RunFailureReason.STEP_FAILURE and has_step_failures:
        return []
    text = (failure_event.message or "").split(_WORKER_LOG_TAIL, 1)[0]
    if data is not None and data.error is not None and data.first_step_failure_event is None:
        text += "\n" + data.error.message
    first, *rest = excerpt(text)
    return [f"Run failure: {first}", *(f"    {line}" for line in rest)]


def _automation_name(event: DagsterEvent) -> str | None:
    """The document name of a failed automation step (its Failure's metadata), None for any other step."""
    data = event.step_failure_data.user_failure_data
    name = data.metadata.get(AUTOMATION_NAME) if data is not None else None
    return str(name.value) if name is not None else None


def _step_title(event: DagsterEvent, name: str | None, *, with_id: bool) -> str:
    """``automation 'Name' (step key)``, with the document's ``_id`` when ``with_id``; the step key otherwise."""
    if name is None:
        return str(event.step_key)
    document_id = event.step_failure_data.user_failure_data.metadata.get(AUTOMATION_ID)
    where = f"_id {document_id.value}, " if with_id and document_id is not None else ""
    return f"automation {name!r} ({where}step {event.step_key})"


def _step_error(event: DagsterEvent) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    if data.error is not None:
        return data.error.message
    return event.message or "no message"
