"""The run-failure alert sensor against moto SNS (read back through an SQS subscription), evaluated tick by tick as
the daemon does, over runs of the real data-change job on SecantusDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context, instance_for_test
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, RETRY_NUMBER_TAG, ROOT_RUN_ID_TAG, WILL_RETRY_TAG
from pymongo.database import Database

from intervalprocessing_dagster.runs import process_to_run
from intervalprocessing_dagster.oncall.alerting import (
    LAUNCHED_BY_TAG,
    AlertChannel,
    LogAlertChannel,
    SnsAlertChannel,
    run_failure_alert_sensor,
)
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS
from intervalprocessing_dagster.mongo.resource import MongoResource
from intervalprocessing_dagster.runs.clock import RunClock
from tests.data_change.test_data_change_jobs import automation

RETRIES = {"run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}}


@pytest.fixture()
def topic(aws: str) -> Iterator[tuple[str, str]]:
    """An SNS topic with an SQS queue subscribed to it: (topic ARN, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name="intervalprocessing-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    yield topic_arn, queue_url


def received(queue_url: str) -> list[dict[str, Any]]:
    """Every SNS notification waiting in the queue (SNS's JSON envelope: Subject, Message, MessageAttributes)."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


class Daemon:
    """The sensor daemon's part: evaluate the sensor, keep its cursor between ticks."""

    def __init__(self, instance: DagsterInstance, alerts: AlertChannel) -> None:
        self.instance, self.alerts, self.cursor = instance, alerts, None

    def tick(self) -> None:
        context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"alerts": self.alerts})
        result = run_failure_alert_sensor.evaluate_tick(context)
        self.cursor = result.cursor


def run_hourly(instance: DagsterInstance, mongo: MongoResource, **tags: str) -> str:
    result = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
        instance=instance, resources={"mongo": mongo, "clock": RunClock(), "guard": AutomationGuard()},
        tags=tags or None, raise_on_error=False,
    )
    return result.run_id


def test_a_failed_run_is_one_message_naming_job_run_failed_automations_and_link(
    topic: tuple[str, str], mongo: MongoResource, mongo_db: Database
) -> None:
    topic_arn, queue_url = topic
    mongo_db.audits.insert_many([{"status": "Open", "notes": []}])
    mongo_db.dataupdateconfigs.insert_many([
        automation("Good Note"),
        automation("Broken Note", collectionName=None),
        automation("Unknown Update", singleFieldUpdateElements=[{"elementName": "x", "updateType": "Rename"}]),
    ])
    with instance_for_test(overrides=RETRIES) as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn, webserver_url="https://dagster.example.com/"))
        daemon.tick()  # the first tick only sets the cursor, as when the sensor is first turned on
        run_id = run_hourly(instance, mongo)
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        daemon.tick()
        daemon.tick()  # a later tick does not report the same run again

    (message,) = received(queue_url)
    assert message["Subject"] == "IntervalProcessing: hourly_data_change_job failed"
    text = message["Message"]
    assert "Job: hourly_data_change_job" in text
    assert f"Run: {run_id}" in text
    assert f"Link: https://dagster.example.com/runs/{run_id}" in text
    assert "Started by: hand (UI or CLI)" in text
    assert "Failed steps (2):" in text
    assert ("- apply_automation[broken_note]: automation 'Broken Note' in dataupdateconfigs is invalid (1 problem):"
            in text)
    assert "- apply_automation[unknown_update]: automation 'Unknown Update' in dataupdateconfigs is invalid" in text
    assert "good_note" not in text
    assert message["MessageAttributes"]["job"]["Value"] == "hourly_data_change_job"
    assert message["MessageAttributes"]["run_id"]["Value"] == run_id


def test_a_successful_run_sends_nothing(topic: tuple[str, str], mongo: MongoResource, mongo_db: Database) -> None:
    topic_arn, queue_url = topic
    mongo_db.dataupdateconfigs.insert_one(automation("Good Note"))
    with instance_for_test(overrides=RETRIES) as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        run_id = run_hourly(instance, mongo)
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
        daemon.tick()
    assert received(queue_url) == []


def test_a_retried_run_is_reported_once_when_its_last_retry_fails(topic: tuple[str, str]) -> None:
    """An infrastructure failure (no step failed) is retried by run retries: the first failure is not reported, the
    retry's failure (the last one allowed, max_retries 1) is, once, saying which attempt it was."""
    topic_arn, queue_url = topic
    with instance_for_test(overrides=RETRIES) as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        job = DATA_CHANGE_JOBS[Cadence.HOURLY]
        first = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED)
        instance.report_run_failed(first, message="Task arn:aws:ecs:task/1 failed. Container 'run' exit code 137.")
        assert instance.get_run_by_id(first.run_id).tags[WILL_RETRY_TAG] == "true"
        daemon.tick()
        assert received(queue_url) == []

        retry = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED, tags={
            PARENT_RUN_ID_TAG: first.run_id, ROOT_RUN_ID_TAG: first.run_id, RETRY_NUMBER_TAG: "1",
        }, parent_run_id=first.run_id, root_run_id=first.run_id)
        instance.report_run_failed(retry, message="Task arn:aws:ecs:task/2 failed. Container 'run' exit code 137.")
        assert instance.get_run_by_id(retry.run_id).tags[WILL_RETRY_TAG] == "false"
        daemon.tick()
        daemon.tick()

    (message,) = received(queue_url)
    assert f"Run: {retry.run_id}" in message["Message"]
    assert f"Attempt: retry 1 of run {first.run_id}" in message["Message"]
    assert "Run failure: Task arn:aws:ecs:task/2 failed. Container 'run' exit code 137." in message["Message"]


def test_process_to_run_runs_are_reported_too(topic: tuple[str, str], mongo: MongoResource, mongo_db: Database) -> None:
    """The entry point's runs execute in their own process (no code-location origin); they are alerted like others."""
    topic_arn, queue_url = topic
    mongo_db.dataupdateconfigs.insert_one(automation("Broken Note", collectionName=None))
    with instance_for_test(overrides=RETRIES) as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        run_id = run_hourly(instance, mongo, **{process_to_run.LAUNCHED_BY_TAG: process_to_run.PROCESS_TO_RUN_VARIABLE})
        assert instance.get_run_by_id(run_id).remote_job_origin is None
        daemon.tick()
    (message,) = received(queue_url)
    assert f"Run: {run_id}" in message["Message"] and "Started by: processToRun" in message["Message"]
    assert LAUNCHED_BY_TAG == process_to_run.LAUNCHED_BY_TAG


def test_without_a_topic_the_alert_is_logged(
    mongo: MongoResource, mongo_db: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    mongo_db.dataupdateconfigs.insert_one(automation("Broken Note", collectionName=None))
    with instance_for_test() as instance:  # like dagster dev: no run retries
        daemon = Daemon(instance, LogAlertChannel())
        daemon.tick()
        run_id = run_hourly(instance, mongo)
        daemon.tick()
    logged = capfd.readouterr().err  # the sensor's log (the daemon's output; the tick's log in the UI)
    assert "IntervalProcessing: hourly_data_change_job failed (ALERTS_SNS_TOPIC_ARN is unset: logged only)" in logged
    assert f"Run: {run_id}" in logged and "Link: (INTERVALPROCESSING_WEBSERVER_URL is unset)" in logged
