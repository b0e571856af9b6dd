"""The run-failure alert sensor against moto SNS (read back through an SQS subscription), evaluated tick by tick as
the daemon does, over runs of the real data-change job on SecantusDB."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.execution.plan.objects import StepFailureData, UserFailureData
from dagster._core.storage.tags import (
    BACKFILL_ID_TAG,
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    ROOT_RUN_ID_TAG,
    SCHEDULE_NAME_TAG,
    SENSOR_NAME_TAG,
    WILL_RETRY_TAG,
)
from pymongo.database import Database

from intervalprocessing_dagster import process_to_run
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.oncall.alerting import (
    LAUNCHED_BY_PROCESS_TO_RUN,
    LAUNCHED_BY_TAG,
    MAX_ERROR_LINES,
    MAX_LINE,
)
from intervalprocessing_dagster.oncall.resources import AlertChannel, LogAlertChannel, SnsAlertChannel
from intervalprocessing_dagster.oncall.sensors import run_failure_alert_sensor
from intervalprocessing_dagster.resources import build_resources
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.settings import Settings, SettingsError
from tests.data_change.test_data_change_jobs import automation

RETRIES = {"run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}}
SCHEDULED = {SCHEDULE_NAME_TAG: "hourly_data_change_schedule"}


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
        assert not [reaction.error for reaction in result.dagster_run_reactions if reaction.error]
        self.cursor = result.cursor


def run_hourly(instance: DagsterInstance, mongo: MongoResource, **tags: str) -> str:
    result = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
        instance=instance,
        resources={"mongo": mongo, "clock": RunClock(), "guard": AutomationGuard()},
        tags=tags or None,
        raise_on_error=False,
    )
    return result.run_id


def test_a_failed_run_is_one_message_naming_job_run_failed_automations_and_link(
    topic: tuple[str, str], mongo: MongoResource, mongo_db: Database
) -> None:
    topic_arn, queue_url = topic
    mongo_db.audits.insert_many([{"status": "Open", "notes": []}])
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("Good Note"),
            automation("Broken Note", collectionName=None),
            automation("Unknown Update", singleFieldUpdateElements=[{"elementName": "x", "updateType": "Rename"}]),
        ]
    )
    with instance_for_test(overrides=RETRIES) as instance:
        daemon = Daemon(
            instance,
            SnsAlertChannel(topic_arn=topic_arn, webserver_url="https://dagster.example.com/", hand_launched_runs=True),
        )  # ALERT_ON_HAND_LAUNCHED_RUNS=on
        daemon.tick()  # the first tick only sets the cursor, as when the sensor is first turned on
        run_id = run_hourly(instance, mongo)
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        daemon.tick()
        daemon.tick()  # a later tick does not report the same run again

    (message,) = received(queue_url)
    assert message["Subject"] == "IntervalProcessing: hourly_data_change_job failed"
    text = message["Message"]
    assert text.startswith(
        "\n".join(
            [
                "Job: hourly_data_change_job",
                f"Run: {run_id}",
                f"Link: https://dagster.example.com/runs/{run_id}",
                "Started by: hand (UI or CLI)",
                "Failed steps (2):",
            ]
        )
    )
    # Each failed automation by its document name, with its actual problems (not just the error's header line).
    assert (
        "\n".join(
            [
                "- automation 'Broken Note' (step apply_automation[broken_note]):",
                "    automation 'Broken Note' in dataupdateconfigs is invalid (1 problem):",
                "    - collectionName: must be a non-empty string, got None",
            ]
        )
        in text
    )
    assert (
        "\n".join(
            [
                "- automation 'Unknown Update' (step apply_automation[unknown_update]):",
                "    automation 'Unknown Update' in dataupdateconfigs is invalid (1 problem):",
                "    - singleFieldUpdateElements[0].updateType: must be Add, Change, Remove or Delete (or 0-3), "
                "got 'Rename'",
            ]
        )
        in text
    )
    assert "good_note" not in text and "Good Note" not in text
    assert "Run failure" not in text  # Dagster's "Steps failed: [...]" says nothing the list does not
    # What to do, last: it works, a re-executed automation reads its document again (test_data_change_fixed_document)
    assert text.splitlines()[-1] == (
        "Do: fix each automation's document in dataupdateconfigs (or the data), then open the run and choose "
        "Re-execute → From failure: the failed automations run again as their documents are then (one deactivated "
        "or deleted meanwhile is withdrawn, saying so); those already applied are not applied again."
    )
    assert message["MessageAttributes"]["job"]["Value"] == "hourly_data_change_job"
    assert message["MessageAttributes"]["run_id"]["Value"] == run_id


def test_automations_sharing_a_name_are_told_apart_by_id_and_long_errors_are_bounded(
    topic: tuple[str, str], mongo: MongoResource, mongo_db: Database
) -> None:
    topic_arn, queue_url = topic
    twins = mongo_db.dataupdateconfigs.insert_many(
        [
            automation("Twin", collectionName=None),
            automation("Twin", query="{ status: "),
        ]
    ).inserted_ids
    # More problems than an alert quotes (one per update element), one of them quoting a very long name.
    elements = [{"elementName": f"field{i}", "updateType": "Rename", "newValue": "x"} for i in range(30)]
    mongo_db.dataupdateconfigs.insert_one(
        automation("Many Problems", singleFieldUpdateElements=elements, collectionName="$" + "c" * 500)
    )
    with instance_for_test(overrides=RETRIES) as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        run_hourly(instance, mongo, **SCHEDULED)
        daemon.tick()

    (message,) = received(queue_url)
    text = message["Message"]
    assert f"- automation 'Twin' (_id {twins[0]}, step apply_automation[twin]):" in text
    assert f"- automation 'Twin' (_id {twins[1]}, step apply_automation[twin_2]):" in text
    assert "- automation 'Many Problems' (step apply_automation[many_problems]):" in text
    block = text.split("- automation 'Many Problems' (step apply_automation[many_problems]):\n", 1)[1]
    quoted = block.split("\n- ", 1)[0].splitlines()
    assert len(quoted) == MAX_ERROR_LINES + 1
    assert re.fullmatch(r"    … \d+ more line\(s\) in the run's logs", quoted[-1]), quoted[-1]
    assert quoted[0] == "    automation 'Many Problems' in dataupdateconfigs is invalid (31 problems):"
    assert "    - collectionName: '$ccc" in block and "ccc…\n" in block  # the long name, cut
    assert all(len(line) <= MAX_LINE + 4 for line in text.splitlines())


def test_a_run_that_failed_outside_its_steps_says_why_without_the_workers_log_tail(topic: tuple[str, str]) -> None:
    """A task that died after one automation had failed: run monitoring's message (without the task's last log lines,
    which stay in the UI) and the automation's failure, both."""
    topic_arn, queue_url = topic
    with instance_for_test() as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        job = DATA_CHANGE_JOBS[Cadence.HOURLY]
        run = instance.create_run_for_job(job, status=DagsterRunStatus.STARTED, tags=SCHEDULED)
        # What the worker had logged before it died: one automation's failure, as apply_automation raises it.
        failure = StepFailureData(
            error=None,
            user_failure_data=UserFailureData(
                label="intentional-failure",
                description="automation 'Notes' failed: connection closed",
                metadata={"automation": "Notes"},
            ),
        )
        instance.report_dagster_event(
            DagsterEvent(
                DagsterEventType.STEP_FAILURE.value,
                job_name=job.name,
                step_key="apply_automation[notes]",
                event_specific_data=failure,
            ),
            run_id=run.run_id,
        )
        instance.report_run_failed(
            run,
            message=(
                "Task arn:aws:ecs:task/3 failed.\nStop code: EssentialContainerExited.\n"
                "Stop reason: Essential container in task exited.\nContainer 'run' failed - exit code 137.\n"
                "Run worker logs:\n2026-03-06 02:00:01 - INFO - apply_automation[other] - matched 12 of audits"
            ),
        )
        daemon.tick()
    (message,) = received(queue_url)
    assert (
        "\n".join(
            [
                "Run failure: Task arn:aws:ecs:task/3 failed.",
                "    Stop code: EssentialContainerExited.",
                "    Stop reason: Essential container in task exited.",
                "    Container 'run' failed - exit code 137.",
                "Failed steps (1):",
                "- automation 'Notes' (step apply_automation[notes]):",
                "    automation 'Notes' failed: connection closed",
            ]
        )
        in message["Message"]
    )
    assert "Run worker logs" not in message["Message"] and "matched 12" not in message["Message"]


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
    retry's failure (the last one allowed, max_retries 1) is, once, saying which attempt it was. The retry alerts
    although a person launched the first attempt: nobody watches the retry daemon's run."""
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

        retry = instance.create_run_for_job(
            job,
            status=DagsterRunStatus.STARTED,
            tags={
                PARENT_RUN_ID_TAG: first.run_id,
                ROOT_RUN_ID_TAG: first.run_id,
                RETRY_NUMBER_TAG: "1",
            },
            parent_run_id=first.run_id,
            root_run_id=first.run_id,
        )
        instance.report_run_failed(retry, message="Task arn:aws:ecs:task/2 failed. Container 'run' exit code 137.")
        assert instance.get_run_by_id(retry.run_id).tags[WILL_RETRY_TAG] == "false"
        daemon.tick()
        daemon.tick()

    (message,) = received(queue_url)
    assert f"Run: {retry.run_id}" in message["Message"]
    assert f"Attempt: retry 1 of run {first.run_id}" in message["Message"]
    assert "Run failure: Task arn:aws:ecs:task/2 failed. Container 'run' exit code 137." in message["Message"]
    assert message["Message"].splitlines()[-1] == (
        "Do: fix the cause (for a dead task, its log and size), then open the run and choose Re-execute → From "
        "failure: what did not finish runs again, under the run's stamp."
    )


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
    assert LAUNCHED_BY_PROCESS_TO_RUN == process_to_run.PROCESS_TO_RUN_VARIABLE


def test_without_a_topic_the_alert_is_logged(
    mongo: MongoResource, mongo_db: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    mongo_db.dataupdateconfigs.insert_one(automation("Broken Note", collectionName=None))
    with instance_for_test() as instance:  # like dagster dev: no run retries
        daemon = Daemon(instance, LogAlertChannel())
        daemon.tick()
        run_id = run_hourly(instance, mongo, **SCHEDULED)
        daemon.tick()
    logged = capfd.readouterr().err  # the sensor's log (the daemon's output; the tick's log in the UI)
    assert "IntervalProcessing: hourly_data_change_job failed (ALERTS_SNS_TOPIC_ARN is unset: logged only)" in logged
    assert f"Run: {run_id}" in logged and "Link: (INTERVALPROCESSING_WEBSERVER_URL is unset)" in logged


def test_a_run_a_person_launched_does_not_alert_unless_the_setting_says_so(
    topic: tuple[str, str], mongo: MongoResource, mongo_db: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    """``dagster job execute`` or the launchpad (no tags), and a person's re-execution of a scheduled run from the UI
    (which inherits the parent's dagster/schedule_name): no alert; ALERT_ON_HAND_LAUNCHED_RUNS=on alerts both."""
    topic_arn, queue_url = topic
    mongo_db.dataupdateconfigs.insert_one(automation("Broken Note", collectionName=None))
    with instance_for_test() as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        by_hand = run_hourly(instance, mongo)
        scheduled = run_hourly(instance, mongo, **SCHEDULED)
        re_executed = run_hourly(
            instance, mongo, **SCHEDULED, **{PARENT_RUN_ID_TAG: scheduled, ROOT_RUN_ID_TAG: scheduled}
        )
        daemon.tick()
        (message,) = received(queue_url)
        assert f"Run: {scheduled}" in message["Message"]
        assert "Started by: hourly_data_change_schedule" in message["Message"]
        logged = capfd.readouterr().err
        for run_id in (by_hand, re_executed):
            assert (
                f"run {run_id} of hourly_data_change_job failed; a person launched it (UI or CLI) and sees it: "
                "no alert (ALERT_ON_HAND_LAUNCHED_RUNS=on alerts these too)"
            ) in logged

        resources = build_resources(
            Settings.from_env({"ALERT_ON_HAND_LAUNCHED_RUNS": "on", "ALERTS_SNS_TOPIC_ARN": topic_arn})
        )
        watching_all = Daemon(instance, resources["alerts"])
        watching_all.tick()
        by_hand_again = run_hourly(instance, mongo)
        watching_all.tick()
    (message,) = received(queue_url)
    assert f"Run: {by_hand_again}" in message["Message"] and "Started by: hand (UI or CLI)" in message["Message"]
    assert build_resources(Settings.from_env({}))["alerts"].hand_launched_runs is False
    with pytest.raises(SettingsError, match="ALERT_ON_HAND_LAUNCHED_RUNS='sometimes' must be on or off"):
        Settings.from_env({"ALERT_ON_HAND_LAUNCHED_RUNS": "sometimes"})


@pytest.mark.parametrize(
    ("tags", "started_by"),
    [
        (SCHEDULED, "hourly_data_change_schedule"),
        ({SENSOR_NAME_TAG: "some_sensor"}, "some_sensor"),
        ({BACKFILL_ID_TAG: "qwertyui"}, "backfill qwertyui"),
    ],
)
def test_schedules_sensors_and_backfills_runs_alert(
    topic: tuple[str, str], tags: dict[str, str], started_by: str
) -> None:
    topic_arn, queue_url = topic
    with instance_for_test() as instance:
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn))
        daemon.tick()
        run = instance.create_run_for_job(DATA_CHANGE_JOBS[Cadence.HOURLY], status=DagsterRunStatus.STARTED, tags=tags)
        instance.report_run_failed(run, message="Task arn:aws:ecs:task/1 failed. Container 'run' exit code 137.")
        daemon.tick()
    (message,) = received(queue_url)
    assert f"Run: {run.run_id}" in message["Message"] and f"Started by: {started_by}" in message["Message"]
