"""A failed run reaches a person: ``run_failure_alert_sensor`` sends one message per finally-failed run.

The old app's failures were only visible to whoever read CloudWatch. Here the daemon evaluates this sensor (a
Dagster ``run_failure_sensor``) and publishes, for each failed run, which job failed, its run id, each failed step
(for a data-change job: each failed automation) with the first line of its error, and a link to the run in the UI.

Which runs: every run of this instance, whatever started it: schedules, the launchpad, and the ``processToRun``
entry point, whose runs execute in their own process (stored as this code location's by ``instance/run_origin.py``,
but an instance with Dagster's stock storage leaves them without an origin: hence ``monitor_all_code_locations``;
the deployment has this one location).

Reported once: a run that run retries (``deploy/dagster.yaml`` ``run_retries``) will retry is not reported; its
retry is a new run, reported if it fails in turn. "Will retry" is what the retry daemon acts on: the
``dagster/will_retry`` tag the instance sets when it stores the failure, or, if the sensor gets there before the tag
does, Dagster's own rule for it (``auto_reexecution_should_retry_run``: failure reason, ``max_retries``, the run
group's size); without run retries configured nothing is retried. (Should the daemon then fail to launch the retry,
it flips the tag to false after this sensor has passed the run: that rare failure shows in the run's log only.) So
the last attempt, the one that fails for good, is the one a person hears about, and its message says which attempt
it was.

Where to: ``SnsAlertChannel`` (``ALERTS_SNS_TOPIC_ARN`` set) or ``LogAlertChannel`` (local, ``dagster dev``: the
message goes to the sensor's log only), chosen in ``definitions.py`` under the resource key ``alerts``.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass

import boto3
from dagster import (
    ConfigurableResource,
    DagsterEvent,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)
from dagster._core.events import RunFailureReason
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.storage.tags import (
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    RUN_FAILURE_REASON_TAG,
    SCHEDULE_NAME_TAG,
    WILL_RETRY_TAG,
)
from dagster._utils.tags import get_boolean_tag_value
from pydantic import Field

# process_to_run.LAUNCHED_BY_TAG (runs/process_to_run.py imports the definitions, which import this module); a test keeps them equal.
LAUNCHED_BY_TAG = "intervalprocessing/launched_by"
# SNS refuses a subject longer than 100 characters.
_MAX_SUBJECT = 100


@dataclass(frozen=True)
class FailureAlert:
    """What a person is told about one failed run."""

    subject: str
    text: str
    job_name: str
    run_id: str


class AlertChannel(ConfigurableResource):
    """Where failure alerts go (resource key ``alerts``), and the UI they link into."""

    webserver_url: str | None = Field(
        default=None, description="Base URL of the Dagster UI (INTERVALPROCESSING_WEBSERVER_URL), for run links."
    )

    def run_url(self, run_id: str) -> str | None:
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}" if self.webserver_url else None

    @abstractmethod
    def send(self, alert: FailureAlert, log: logging.Logger | logging.LoggerAdapter) -> None:
        """Deliver ``alert``; raise if it could not be delivered, so the sensor tick shows the error."""


class LogAlertChannel(AlertChannel):
    """No topic configured (local development): the alert is written to the sensor's log, nothing else."""

    def send(self, alert: FailureAlert, log: logging.Logger | logging.LoggerAdapter) -> None:
        log.error(f"{alert.subject} (ALERTS_SNS_TOPIC_ARN is unset: logged only)\n{alert.text}")


class SnsAlertChannel(AlertChannel):
    """An SNS topic (production), reached with the default AWS credential chain (the daemon's task role)."""

    topic_arn: str = Field(description="The topic alerts are published to (ALERTS_SNS_TOPIC_ARN).")

    def send(self, alert: FailureAlert, log: logging.Logger | logging.LoggerAdapter) -> None:
        # Logged first, so the alert is in the daemon's log even if the publish fails.
        log.error(f"{alert.subject}\n{alert.text}")
        boto3.client("sns").publish(
            TopicArn=self.topic_arn,
            Subject=alert.subject,
            Message=alert.text,
            MessageAttributes={
                "job": {"DataType": "String", "StringValue": alert.job_name},
                "run_id": {"DataType": "String", "StringValue": alert.run_id},
            },
        )
        log.info(f"alert for run {alert.run_id} published to {self.topic_arn}")


def build_failure_alert(context: RunFailureSensorContext, alerts: AlertChannel) -> FailureAlert:
    """The message for the failed run in ``context``: job, run, failed steps with their first error line, link."""
    run = context.dagster_run
    lines = [f"Job: {run.job_name}", f"Run: {run.run_id}"]
    url = alerts.run_url(run.run_id)
    lines.append(f"Link: {url}" if url else "Link: (INTERVALPROCESSING_WEBSERVER_URL is unset)")
    lines.extend(_origin_lines(run))
    step_failures = context.get_step_failure_events()
    if step_failures:
        lines.append(f"Failed steps ({len(step_failures)}):")
        for event in step_failures:
            lines.append(f"- {event.step_key}: {_first_line(_step_error(event))}")
    else:  # the run failed outside its steps (task died, never started, ran too long)
        lines.append(f"Run failure: {_first_line(context.failure_event.message or 'no message')}")
    subject = f"IntervalProcessing: {run.job_name} failed"[:_MAX_SUBJECT]
    return FailureAlert(subject=subject, text="\n".join(lines), job_name=run.job_name, run_id=run.run_id)


def will_be_retried(context: RunFailureSensorContext) -> bool:
    """Whether run retries will start another attempt of this run (so this failure is not the final one)."""
    instance = context.instance
    if not instance.run_retries_enabled:
        return False
    # The run as stored now: the instance adds dagster/will_retry just after the failure event the sensor saw.
    run = instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    tagged = run.tags.get(WILL_RETRY_TAG)
    if tagged is not None:
        return get_boolean_tag_value(tagged, default_value=False)
    reason = run.tags.get(RUN_FAILURE_REASON_TAG)
    return auto_reexecution_should_retry_run(instance, run, RunFailureReason(reason) if reason else None)


@run_failure_sensor(
    name="run_failure_alert_sensor",
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    description="Sends one alert per failed run (after its last retry) to the alerts channel: ALERTS_SNS_TOPIC_ARN, "
    "or the sensor's log when unset.",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertChannel) -> None:
    run = context.dagster_run
    if will_be_retried(context):
        context.log.info(f"run {run.run_id} of {run.job_name} failed and will be retried; its retry reports")
        return
    alerts.send(build_failure_alert(context, alerts), context.log)


def _origin_lines(run: DagsterRun) -> list[str]:
    lines = []
    if run.tags.get(RETRY_NUMBER_TAG):
        lines.append(f"Attempt: retry {run.tags[RETRY_NUMBER_TAG]} of run {run.tags.get(PARENT_RUN_ID_TAG)}")
    started_by = run.tags.get(SCHEDULE_NAME_TAG) or run.tags.get(LAUNCHED_BY_TAG)
    lines.append(f"Started by: {started_by or 'hand (UI or CLI)'}")
    return lines


def _step_error(event: DagsterEvent) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    if data.error is not None:
        return data.error.message
    return event.message or "no message"


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else "no message"
