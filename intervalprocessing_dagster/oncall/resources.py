"""Where alerts go (resource key ``alerts``): an SNS topic in production, the sensor's log locally, chosen in
``intervalprocessing_dagster/resources.py``.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import boto3
from dagster import ConfigurableResource
from pydantic import Field


@dataclass(frozen=True)
class Alert:
    """What a person is told: a subject line, the text, and attributes a subscriber can filter on (SNS message
    attributes: ``job`` and ``run_id`` for a failed run, ``check`` and ``run_id`` for a config check); ``level``, how
    the sensor logs it (a recovery is news, not an error)."""

    subject: str
    text: str
    attributes: Mapping[str, str]
    level: int = logging.ERROR


class AlertChannel(ConfigurableResource):
    """Where alerts go (resource key ``alerts``), and the UI they link into."""

    webserver_url: str | None = Field(
        default=None, description="Base URL of the Dagster UI (INTERVALPROCESSING_WEBSERVER_URL), for run links."
    )
    hand_launched_runs: bool = Field(
        default=False,
        description="Alert the failed runs a person launched from the UI or CLI too "
        "(ALERT_ON_HAND_LAUNCHED_RUNS); off: only unattended runs alert.",
    )

    def run_url(self, run_id: str) -> str | None:
        return f"{self.webserver_url.rstrip('/')}/runs/{run_id}" if self.webserver_url else None

    def link_line(self, run_id: str) -> str:
        url = self.run_url(run_id)
        return f"Link: {url}" if url else "Link: (INTERVALPROCESSING_WEBSERVER_URL is unset)"

    @abstractmethod
    def send(self, alert: Alert, log: logging.Logger | logging.LoggerAdapter) -> None:
        """Deliver ``alert``; raise if it could not be delivered, so the sensor tick shows the error."""


class LogAlertChannel(AlertChannel):
    """No topic configured (local development): the alert is written to the sensor's log, nothing else."""

    def send(self, alert: Alert, log: logging.Logger | logging.LoggerAdapter) -> None:
        log.log(alert.level, f"{alert.subject} (ALERTS_SNS_TOPIC_ARN is unset: logged only)\n{alert.text}")


class SnsAlertChannel(AlertChannel):
    """An SNS topic (production), reached with the default AWS credential chain (the daemon's task role)."""

    topic_arn: str = Field(description="The topic alerts are published to (ALERTS_SNS_TOPIC_ARN).")

    def send(self, alert: Alert, log: logging.Logger | logging.LoggerAdapter) -> None:
        # Logged first, so the alert is in the daemon's log even if the publish fails.
        log.log(alert.level, f"{alert.subject}\n{alert.text}")
        boto3.client("sns").publish(
            TopicArn=self.topic_arn,
            Subject=alert.subject,
            Message=alert.text,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in alert.attributes.items()
            },
        )
        log.info(f"alert '{alert.subject}' published to {self.topic_arn}")
