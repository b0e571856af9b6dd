"""The production path end to end, offline: schedule tick -> daemon -> EcsRunLauncher -> ECS RunTask -> the task's
command -> run state in Postgres, report in S3 (fixtures and the Fargate stand-in: ``conftest.py``).

Each test drives the daemon's own code (scheduler, run queue, run monitoring, run retries) one iteration at a time
instead of starting ``dagster-daemon``, so it can put time and task states exactly where it needs them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
import requests
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.events import DagsterEvent
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, RETRY_NUMBER_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.monitoring import run_monitoring
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value
from dagster._time import get_current_timestamp

from intervalprocessing_dagster import process_to_run
from intervalprocessing_dagster.instance.run_origin import CODE_LOCATION_NAME
from tests.local_project import free_port

pytestmark = pytest.mark.system

# The environment's own console scripts: CI runs `.venv/bin/python -m pytest` without the venv on PATH.
BIN = Path(sys.executable).parent

log = logging.getLogger(__name__)


def _monitor(context: WorkspaceProcessContext) -> None:
    """One run-monitoring iteration of the daemon."""
    list(run_monitoring.execute_run_monitoring_iteration(context, log))


def _retry_failed_runs(context: WorkspaceProcessContext) -> None:
    """What the daemon's event-log consumer does after a RUN_FAILURE: decide about, and submit, a retry."""
    records = context.instance.get_run_records()
    list(consume_new_runs_for_automatic_reexecution(context, records, log))


def _failure_message(context: WorkspaceProcessContext, run_id: str) -> str:
    (event,) = context.instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
    return event.message


def _tags(call: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in call["tags"]}


def test_scheduled_file_generation_runs_as_an_ecs_task_and_lands_its_report_in_s3(production_stack) -> None:
    stack = production_stack
    with stack.daemon() as context:
        stack.enable_only(context, "file_generation_schedule")
        tick = stack.tick(context, "file_generation_schedule")
        (run,) = stack.runs(context)
        assert run.status == DagsterRunStatus.QUEUED  # the QueuedRunCoordinator, not a direct launch
        stack.dequeue(context)

        # The RunTask the launcher sent: the pre-registered task definition, the network from the comma lists,
        # Fargate, the old task size, the run worker command, and the tags.
        (call,) = stack.run_task_calls
        assert call["taskDefinition"] == stack.run_task_definition_arn
        assert call["cluster"] == "intervalprocessing"
        assert call["networkConfiguration"] == {
            "awsvpcConfiguration": {
                "subnets": stack.subnets,
                "securityGroups": stack.security_groups,
                "assignPublicIp": "DISABLED",
            }
        }
        assert call["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1}]
        assert "launchType" not in call
        assert call["overrides"]["cpu"] == "1024" and call["overrides"]["memory"] == "3072"
        assert call["overrides"]["ephemeralStorage"] == {"sizeInGiB": 21}
        (container,) = call["overrides"]["containerOverrides"]
        assert container["name"] == "run"
        assert "environment" not in container and "secrets" not in container  # the task definition carries them
        assert container["command"][:3] == ["dagster", "api", "execute_run"]
        args = deserialize_value(container["command"][3], ExecuteRunArgs)
        assert args.run_id == run.run_id
        assert _tags(call) == {
            "dagster/run_id": run.run_id,
            "dagster/job_name": "file_generation_job",
            "application": "intervalprocessing",
            "managed-by": "dagster",
            "dagster/schedule_name": "file_generation_schedule",
        }
        run = context.instance.get_run_by_id(run.run_id)
        assert run.status == DagsterRunStatus.STARTING
        task_arn = run.tags["ecs/task_arn"]
        (task,) = boto3.client("ecs").describe_tasks(cluster="intervalprocessing", tasks=[task_arn])["tasks"]
        assert task["capacityProviderName"] == "FARGATE"

        assert stack.fargate.run(task_arn) == 0, stack.task_outputs[task_arn][-3000:]
        _monitor(context)  # the daemon sees the stopped task and leaves the finished run alone

        run = context.instance.get_run_by_id(run.run_id)
        assert run.status == DagsterRunStatus.SUCCESS
        s3 = boto3.client("s3")
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket="intervalprocessing")["Contents"]]
        stamp = tick.strftime("%m%d%Y_%H%M%S")
        assert f"GeneratedFiles/DailyAuditInventory_{stamp}.txt" in keys
        assert f"GeneratedFiles/DailyActiveMRRInventory_{stamp}.txt" in keys
        compute_logs = [key for key in keys if key.startswith(f"dagster/compute-logs/storage/{run.run_id}/")]
        assert compute_logs, keys  # stdout/stderr of the steps, for the UI

        # No secret value anywhere an operator (or an attacker with read access) would look.
        ecs = boto3.client("ecs")
        definition = ecs.describe_task_definition(taskDefinition=stack.run_task_definition_arn)["taskDefinition"]
        secret_refs = {s["name"] for s in definition["containerDefinitions"][0]["secrets"]}
        assert secret_refs == {"MONGODB_URI", "DAGSTER_PG_PASSWORD"}
        places = {
            "registered task definition": json.dumps(definition, default=str),
            "RunTask request": json.dumps(stack.run_task_calls),
            "run tags": json.dumps(dict(run.tags)),
            "Dagster event log": "\n".join(
                json.dumps(entry.message) + (entry.user_message or "")
                for entry in context.instance.all_logs(run.run_id)
            ),
            "CloudWatch log stream": "\n".join(
                event["message"]
                for event in boto3.client("logs").get_log_events(
                    logGroupName="/ecs/IntervalProcessing-Run",
                    logStreamName=f"run/run/{task_arn.split('/')[-1]}",
                    startFromHead=True,
                )["events"]
            ),
            "compute logs": "\n".join(
                s3.get_object(Bucket="intervalprocessing", Key=key)["Body"].read().decode() for key in compute_logs
            ),
            "container output": stack.task_outputs[task_arn],
        }
        for place, text in places.items():
            assert text, f"nothing to check in the {place}"
            for value in stack.secret_values:
                assert value not in text, f"a secret value appears in the {place}"


def test_a_task_that_exits_non_zero_fails_the_run_with_exit_code_and_log_tail_and_is_retried(
    production_stack,
) -> None:
    stack = production_stack
    with stack.daemon() as context:
        instance = context.instance
        run, task_arn = stack.launch_first_run(context, "hourly_data_change_schedule")

        assert stack.fargate.run_killed_once_started(task_arn, run.run_id, instance) == 137
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # nobody told Dagster yet

        _monitor(context)

        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        message = _failure_message(context, run.run_id)
        assert f"Task {task_arn} failed." in message
        assert "Container 'run' failed - exit code 137." in message
        last_line = stack.task_outputs[task_arn].splitlines()[-1]
        assert "Run worker logs:" in message and last_line in message
        # (Read from the task's CloudWatch stream, with calls the daemon's role allows: checked for every test.)
        assert {"ecs:DescribeTasks", "ecs:DescribeTaskDefinition", "logs:GetLogEvents"} <= stack.launcher_api_calls

        # An infrastructure failure: retried as a new run, launched as a new task.
        _retry_failed_runs(context)
        stack.dequeue(context)
        retry = stack.runs(context)[-1]
        assert retry.run_id != run.run_id
        assert retry.tags[PARENT_RUN_ID_TAG] == run.run_id and retry.tags[RETRY_NUMBER_TAG] == "1"
        assert retry.tags["intervalprocessing/cadence"] == "hourly"
        assert retry.status == DagsterRunStatus.STARTING
        assert len(stack.run_task_calls) == 2
        assert retry.tags["ecs/task_arn"] != task_arn  # monitoring now watches the new task


def test_a_task_stuck_in_provisioning_is_failed_by_run_monitoring_and_retried(
    production_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = production_stack
    with stack.daemon() as context:
        instance = context.instance
        run, task_arn = stack.launch_first_run(context, "quarter_hourly_data_change_schedule")
        stack.fargate.set_status(task_arn, "PROVISIONING")  # no Fargate capacity, say; it never starts
        launched_at = get_current_timestamp()
        assert instance.run_monitoring_start_timeout_seconds == 300

        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: launched_at + 290)
        _monitor(context)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTING

        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: launched_at + 310)
        _monitor(context)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert "taking longer than 300 seconds to start" in _failure_message(context, run.run_id)

        _retry_failed_runs(context)
        stack.dequeue(context)
        retry = stack.runs(context)[-1]
        assert retry.tags[PARENT_RUN_ID_TAG] == run.run_id and retry.tags[RETRY_NUMBER_TAG] == "1"
        assert retry.status == DagsterRunStatus.STARTING
        assert len(stack.run_task_calls) == 2


def test_a_cadence_never_has_two_runs_in_flight(production_stack) -> None:
    stack = production_stack
    with stack.daemon() as context:
        instance = context.instance
        stack.enable_only(context, "quarter_hourly_data_change_schedule")
        stack.tick(context, "quarter_hourly_data_change_schedule")
        stack.dequeue(context)
        (first,) = stack.runs(context)
        assert instance.get_run_by_id(first.run_id).status == DagsterRunStatus.STARTING

        # The next tick while the first run is in flight starts nothing (the schedule skips it).
        stack.tick(context, "quarter_hourly_data_change_schedule")
        stack.dequeue(context)
        schedule = stack.schedule(context, "quarter_hourly_data_change_schedule")
        latest_tick = instance.get_ticks(schedule.get_remote_origin_id(), schedule.selector_id, limit=1)[0]
        assert latest_tick.status == TickStatus.SKIPPED
        assert len(stack.run_task_calls) == 1

        # A run of the same cadence launched by hand waits in the queue (the instance's tag concurrency limit) ...
        # (It also asks for a bigger task, the way a job can through Dagster's ecs/* tags.)
        bigger = {"ecs/cpu": "2048", "ecs/memory": "8192", "ecs/ephemeral_storage": "50"}
        subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-w",
                "workspace.yaml",
                "-j",
                "quarter_hourly_data_change_job",
                "--tags",
                json.dumps(bigger),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        manual = stack.runs(context)[-1]
        assert manual.tags["intervalprocessing/cadence"] == "quarter_hourly"
        # ... while another cadence's tick is launched at once.
        stack.start(context, "hourly_data_change_schedule")
        stack.tick(context, "hourly_data_change_schedule")
        stack.dequeue(context)
        assert instance.get_run_by_id(manual.run_id).status == DagsterRunStatus.QUEUED
        assert [_tags(call)["dagster/job_name"] for call in stack.run_task_calls] == [
            "quarter_hourly_data_change_job",
            "hourly_data_change_job",
        ]

        # Once the first run is over, the waiting one goes.
        instance.report_run_canceled(instance.get_run_by_id(first.run_id))
        stack.dequeue(context)
        assert instance.get_run_by_id(manual.run_id).status == DagsterRunStatus.STARTING
        assert len(stack.run_task_calls) == 3
        overrides = stack.run_task_calls[-1]["overrides"]
        assert (overrides["cpu"], overrides["memory"], overrides["ephemeralStorage"]) == (
            "2048",
            "8192",
            {"sizeInGiB": 50},
        )


def test_a_run_over_its_max_runtime_is_stopped_in_ecs_and_failed(
    production_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data-change jobs' ``dagster/max_runtime`` tag (90% of the interval): the daemon stops the ECS task."""
    stack = production_stack
    with stack.daemon() as context:
        instance = context.instance
        run, task_arn = stack.launch_first_run(context, "half_hourly_data_change_schedule")
        assert run.tags["dagster/max_runtime"] == "1620"
        stack.fargate.set_status(task_arn, "RUNNING")
        # What the run worker reports first; from here on the run is "going" (and stays so: nothing executes it).
        instance.report_dagster_event(
            DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run_id=run.run_id
        )
        started_at = instance.get_run_record_by_id(run.run_id).start_time

        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: started_at + 1600)
        _monitor(context)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: started_at + 1630)
        _monitor(context)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert "Exceeded maximum runtime of 1620 seconds" in _failure_message(context, run.run_id)
        (task,) = boto3.client("ecs").describe_tasks(cluster="intervalprocessing", tasks=[task_arn])["tasks"]
        assert task["desiredStatus"] == "STOPPED"
        assert "ecs:StopTask" in stack.launcher_api_calls


def test_run_monitoring_leaves_the_runs_of_the_process_to_run_entry_point_alone(production_stack) -> None:
    """During the migration the old EventBridge tasks run jobs through ``intervalprocessing`` against the same
    Postgres. Those runs have no ECS task of the launcher's; the daemon must not fail them while they go (a run
    without a task that does not carry their tag is failed, as before)."""
    with production_stack.daemon() as context:
        instance = context.instance
        job = process_to_run.load_job("hourly_data_change_job")
        entry_point_run = instance.create_run_for_job(
            job, tags={process_to_run.LAUNCHED_BY_TAG: process_to_run.PROCESS_TO_RUN_VARIABLE}
        )
        other_run = instance.create_run_for_job(job)
        for run in (entry_point_run, other_run):  # both going, as far as Dagster knows
            instance.report_dagster_event(
                DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run_id=run.run_id
            )

        _monitor(context)

        assert instance.get_run_by_id(entry_point_run.run_id).status == DagsterRunStatus.STARTED
        assert instance.get_run_by_id(other_run.run_id).status == DagsterRunStatus.FAILURE


def test_an_old_eventbridge_target_runs_its_process_on_the_new_run_task_definition(production_stack) -> None:
    """The migration recipe (deploy/README.md): the old schedule's ECS target now names the new run task definition,
    with ``processToRun`` and the ``intervalprocessing`` command as container overrides."""
    stack = production_stack
    task = boto3.client("ecs").run_task(
        cluster="intervalprocessing",
        taskDefinition=stack.run_task_definition_arn,
        capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": stack.subnets, "securityGroups": stack.security_groups}
        },
        overrides={
            "containerOverrides": [
                {
                    "name": "run",
                    "command": ["intervalprocessing"],
                    "environment": [{"name": "processToRun", "value": "FileGenerationProcesses"}],
                }
            ]
        },
    )["tasks"][0]

    assert stack.fargate.run(task["taskArn"]) == 0, stack.task_outputs[task["taskArn"]][-3000:]

    output = stack.task_outputs[task["taskArn"]]
    assert "processToRun: FileGenerationProcesses" in output and "IntervalProcessing Complete..." in output
    with DagsterInstance.get() as instance:  # the deployment's Postgres: the run shows in the UI
        (run,) = instance.get_runs()
        assert run.job_name == "file_generation_job" and run.status == DagsterRunStatus.SUCCESS
        assert run.tags[process_to_run.LAUNCHED_BY_TAG] == "processToRun"
        # ... on its job's page too: the Postgres run storage stores it as a run of the code location.
        assert run.remote_job_origin.location_name == CODE_LOCATION_NAME
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket="intervalprocessing")["Contents"]]
    assert any(key.startswith("GeneratedFiles/DailyAuditInventory_") for key in keys)


def test_the_daemon_service_command_runs_every_daemon_the_instance_needs(production_stack, tmp_path) -> None:
    """The daemon task's own command (infra_cdk: ``dagster-daemon run -w .../workspace.yaml``) with this instance:
    the scheduler, the run queue, run monitoring and the retry consumer all start and report healthy."""
    needed = {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"}
    with open(tmp_path / "daemon.log", "wb") as log_file:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not needed <= set(instance.get_daemon_heartbeats()):
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(1)
            heartbeats = instance.get_daemon_heartbeats()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    output = (tmp_path / "daemon.log").read_text()
    assert needed <= set(heartbeats), output[-3000:]
    assert all(not heartbeats[name].errors for name in needed), {n: heartbeats[n].errors for n in needed}
    assert "Instance is configured with the following daemons" in output


@pytest.mark.parametrize(
    "command",
    [["intervalprocessing-webserver"], ["dagster-webserver", "--read-only"]],
    ids=["operators", "viewers"],
)
def test_the_webserver_service_command_serves_this_instance(production_stack, tmp_path, command, monkeypatch) -> None:
    """The webservers' commands (infra_cdk: the operators' wrapped one; the viewers' read-only one, on the read-only
    role the daemon task's viewer-role container makes first) with this instance: the UI's API answers and names the
    launcher."""
    monkeypatch.setenv("WEBSERVER_AUDIT_LOG", str(tmp_path / "audit.jsonl"))  # the task's volume, in production
    if "--read-only" in command:
        viewer_password = secrets.token_hex(16)
        made = subprocess.run(
            [str(BIN / "intervalprocessing-viewer-role")],
            capture_output=True,
            text=True,
            env={**os.environ, "DAGSTER_VIEWER_PG_PASSWORD": viewer_password},
            timeout=120,
        )
        assert made.returncode == 0, made.stderr[-3000:]
        monkeypatch.setenv("DAGSTER_PG_USERNAME", "dagster_viewer")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", viewer_password)
    port = free_port()
    with open(tmp_path / "webserver.log", "wb") as log_file:
        webserver = subprocess.Popen(
            [str(BIN / command[0]), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml", *command[1:]],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    query = "{ instance { runLauncher { name } daemonHealth { id } } }"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert webserver.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                response = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "webserver.log").read_text()[-3000:]
                time.sleep(0.5)
    finally:
        os.killpg(webserver.pid, signal.SIGTERM)
        webserver.wait(timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["instance"]["runLauncher"]["name"] == "EnvNetworkEcsRunLauncher"


def _started_steps(instance: DagsterInstance, run_id: str) -> set[str]:
    return {event.step_key for event in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)}


def test_a_failed_automation_is_re_executed_from_failure_in_a_new_task_reading_its_input_from_s3(
    production_stack,
) -> None:
    """The UI's "Re-execute from failure" in production: a new ECS task with nothing of the first task's disk runs
    only the failed automation, loading the automation the first run's loader read from the S3 step outputs; the
    automations that succeeded are not applied again."""
    stack = production_stack
    db = pymongo.MongoClient(stack.mongo_uri, tz_aware=True)[stack.mongo_database]
    # Bad data, not a bad config: one audit's notes is a string, so MongoDB refuses the push there (and only there).
    db.audits.insert_many(
        [
            {"auditId": 99998, "status": "Needs Flag", "notes": []},
            {"auditId": 99999, "status": "Needs Flag", "notes": "typed by hand"},
        ]
    )
    db.dataupdateconfigs.insert_one(
        {
            "name": "Flag Audits",
            "runCadence": "Hourly",
            "collectionName": "audits",
            "isActive": True,
            "query": "{ status: 'Needs Flag' }",
            "singleFieldUpdateElements": [],
            "arrayObjectFieldUpdateElements": [
                {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "Flagged"},
            ],
        }
    )
    with stack.daemon() as context:
        instance = context.instance
        run, task_arn = stack.launch_first_run(context, "hourly_data_change_schedule")
        stack.fargate.run(task_arn)
        first_output = stack.task_outputs[task_arn]
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE, first_output[-3000:]
        failed = {e.step_key for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)}
        assert failed == {"apply_automation[flag_audits]"}
        succeeded = _started_steps(instance, run.run_id) - failed
        assert {"load_hourly_automations", "apply_automation[escalate_pending_review_audits]"} <= succeeded

        # The step outputs are in S3 under the agreed prefix; nothing of them is on the first task's disk.
        prefix = f"dagster/step-outputs/storage/{run.run_id}/"
        listing = boto3.client("s3").list_objects_v2(Bucket="intervalprocessing", Prefix=prefix)
        keys = {item["Key"] for item in listing.get("Contents", [])}
        loader_output = f"{prefix}load_hourly_automations/result/flag_audits"
        assert loader_output in keys, keys
        assert not (stack.dagster_home / "storage" / run.run_id).exists()

        db.audits.update_one({"auditId": 99999}, {"$set": {"notes": []}})  # the operator fixes the data

        reexecution = stack.reexecute_from_failure_as_the_ui_does(context, run.run_id)
        assert reexecution.parent_run_id == run.run_id and reexecution.root_run_id == run.run_id
        new_task = reexecution.tags["ecs/task_arn"]
        assert new_task != task_arn and len(stack.run_task_calls) == 2

        assert stack.fargate.run(new_task) == 0, stack.task_outputs[new_task][-3000:]
        assert instance.get_run_by_id(reexecution.run_id).status == DagsterRunStatus.SUCCESS
        assert _started_steps(instance, reexecution.run_id) == {"apply_automation[flag_audits]"}
        log_text = "\n".join(entry.user_message for entry in instance.all_logs(reexecution.run_id))
        assert f"Loading S3 object from: s3://intervalprocessing/{loader_output}" in log_text

    # Applied once each: the re-execution shares the run's stamp, and the automations that had succeeded did not run.
    for audit_id in (99998, 99999):
        notes = db.audits.find_one({"auditId": audit_id})["notes"]
        assert [note["text"] for note in notes] == ["Flagged"], notes
    escalated = db.audits.find_one({"auditId": 10000})["notes"]
    assert [note["text"] for note in escalated].count("Escalated: high-value audit pending review") == 1
