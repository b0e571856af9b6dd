"""The production path on this machine: a real PostgreSQL, moto's ECS/S3/Logs/Secrets Manager, the real
``deploy/dagster.yaml``, and a stand-in for Fargate that runs a launched task's command as a local process.

What is real: the instance config file, Dagster's Postgres storage, the run launcher (talking to moto's ECS API over
HTTP), the daemon's scheduler/queue/monitoring/retry code, the code location loaded from ``workspace.yaml`` in its own
gRPC process, and the run worker command executed with the task definition's environment and secrets. What is not:
Fargate itself (``FakeFargate`` below plays it: it resolves the secrets, runs the command, writes the container's
output to the task's CloudWatch stream and records the exit code, like the ECS agent), and IAM (moto allows all).

moto's ECS needs three dodges, all in ``ProductionStack._create_aws``: a container ``memory`` (without it moto's
``RunTask`` fails with a 500), a VPC with DNS hostnames (the task's ENI), and manual task state transitions, so a
task stays where a test puts it instead of moto marching it to STOPPED on every ``DescribeTasks``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
import requests
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.remote_representation.external import RemoteRepository, RemoteSchedule
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._scheduler.scheduler import launch_scheduled_runs
from dagster._utils.error import SerializableErrorInfo
from dagster._utils.schedules import cron_string_iterator
from dagster_graphql.test.utils import execute_dagster_graphql
from moto.backends import get_backend

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from tests.pacing import Pacing
from tests.postgres_cluster import PostgresServer

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO / "deploy"

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
CLUSTER = "intervalprocessing"
RUN_CONTAINER = "run"
RUN_FAMILY = "IntervalProcessing-Run"
RUN_LOG_GROUP = "/ecs/IntervalProcessing-Run"
PIPE_PAGE = 4096  # the smallest pipe Linux makes
REPORTS_BUCKET = "intervalprocessing"
REPORTS_PREFIX = "GeneratedFiles/"
COMPUTE_LOGS_PREFIX = "dagster/compute-logs"
STEP_OUTPUTS_PREFIX = "dagster/step-outputs/"
LOCATION_NAME = "intervalprocessing"
REEXECUTE = """
mutation ($params: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
#: The AWS actions infra_cdk's daemon task role allows the launcher (stacks/dagster_services.py, _grant_launcher).
DAEMON_ROLE_ACTIONS = {
    "ecs:RunTask",
    "ecs:DescribeTasks",
    "ecs:StopTask",
    "ecs:DescribeTaskDefinition",
    "logs:GetLogEvents",
}

# --- Fargate stand-in -------------------------------------------------------------------------------------------


@dataclass
class FakeFargate:
    """Plays the ECS agent for tasks moto accepted: start the container's command, stream its output, stop it."""

    stack: ProductionStack

    def _moto_task(self, task_arn: str) -> Any:
        tasks = get_backend("ecs")[ACCOUNT_ID][REGION].tasks[CLUSTER]
        return tasks[task_arn]

    def set_status(self, task_arn: str, status: str, *, exit_code: int | None = None) -> None:
        """Put a task in ``status`` (moto never moves it by itself here: transitions are manual)."""
        task = self._moto_task(task_arn)
        task.last_status = status
        if status == "STOPPED":
            task.desired_status = "STOPPED"
            task.stopped_reason = "Essential container in task exited"
            for container in task.containers:
                container.last_status = "STOPPED"
                container.exitCode = exit_code

    def container_environment(self, task_arn: str) -> dict[str, str]:
        """What the container sees: the task definition's environment, the RunTask override's, and the secrets,
        resolved like ECS does."""
        ecs = boto3.client("ecs")
        task = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        container = next(c for c in definition["containerDefinitions"] if c["name"] == RUN_CONTAINER)
        overridden = container.get("environment", []) + self._override(task).get("environment", [])
        environment = {item["name"]: item["value"] for item in overridden}
        secretsmanager = boto3.client("secretsmanager")
        for secret in container.get("secrets", []):
            environment[secret["name"]] = _resolve_secret(secretsmanager, secret["valueFrom"])
        return environment

    def command(self, task_arn: str) -> list[str]:
        task = boto3.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
        return self._override(task)["command"]

    @staticmethod
    def _override(task: dict[str, Any]) -> dict[str, Any]:
        return next(o for o in task["overrides"]["containerOverrides"] if o["name"] == RUN_CONTAINER)

    def run(self, task_arn: str, *, kill_when: Callable[[str], bool] | None = None, timeout: float = 180) -> int:
        """Run the task to its end and return the container's exit code; 137 (SIGKILL) once ``kill_when``, asked
        with the output so far, says so.

        The worker cannot get ahead of ``kill_when``, however slow the test process is: what it prints outside its
        steps comes through a one-page pipe read a little at a time (it blocks on a full pipe), and whatever it sends
        to MongoDB or AWS waits until ``kill_when`` has been asked since (:class:`Pacing`)."""
        self.set_status(task_arn, "RUNNING")
        env = {
            **self.stack.host_environment(),
            **self.container_environment(task_arn),
        }
        with Pacing() as pacing:
            if kill_when is not None:
                env = pacing.environment(env)
                pacing.hold()
            return self._run(task_arn, env, kill_when, pacing, timeout)

    def _run(
        self,
        task_arn: str,
        env: dict[str, str],
        kill_when: Callable[[str], bool] | None,
        pacing: Pacing,
        timeout: float,
    ) -> int:
        reader, writer = os.pipe()
        fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, PIPE_PAGE)
        try:
            process = subprocess.Popen(
                self.command(task_arn),
                env=env,
                cwd=REPO,
                stdout=writer,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(writer)
        output = bytearray()
        killed = False
        deadline = time.monotonic() + timeout
        with os.fdopen(reader, "rb", buffering=0) as console:
            while True:
                readable, _, _ = select.select([console, pacing], [], [], 0.05)  # output, or a call held
                pacing.woken()
                chunk = console.read(PIPE_PAGE // 8) if console in readable else b""
                output += chunk
                if console in readable and not chunk:
                    break  # end of output: the worker and every process it started have exited
                if kill_when is not None and not killed and pacing.ask(kill_when, output.decode(errors="replace")):
                    os.killpg(process.pid, signal.SIGKILL)  # the whole worker: run process and step processes
                    killed = True
                    pacing.release()  # what it was sending to MongoDB or AWS is never delivered
                if time.monotonic() > deadline:
                    os.killpg(process.pid, signal.SIGKILL)
                    raise AssertionError(f"task {task_arn} ran longer than {timeout}s")
        process.wait()
        exit_code = 137 if killed else process.returncode
        text = output.decode(errors="replace")
        self.stack.task_outputs[task_arn] = text
        self.write_logs(task_arn, text.splitlines() or ["(no output)"])
        self.set_status(task_arn, "STOPPED", exit_code=exit_code)
        return exit_code

    def run_killed_once_started(self, task_arn: str, run_id: str, instance: DagsterInstance) -> int:
        """Run the task and kill it (SIGKILL: an out-of-memory kill, say) once its run worker has started the run
        and said so; the exit code (137)."""

        def started(output: str) -> bool:
            return "RUN_START" in output and instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED

        return self.run(task_arn, kill_when=started)

    def write_logs(self, task_arn: str, lines: list[str]) -> None:
        """The awslogs driver: one event per non-empty line in ``<prefix>/<container>/<task id>`` (CloudWatch refuses
        empty messages; a failed run's traceback has blank lines)."""
        lines = [line for line in lines if line.strip()] or ["(no output)"]
        logs = boto3.client("logs")
        stream = f"{RUN_CONTAINER}/{RUN_CONTAINER}/{task_arn.split('/')[-1]}"
        logs.create_log_stream(logGroupName=RUN_LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=RUN_LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )


def _resolve_secret(secretsmanager: Any, value_from: str) -> str:
    """ECS ``valueFrom``: a secret ARN, or ``<arn>:<json key>:<version stage>:<version id>`` for one JSON field."""
    parts = value_from.split(":")
    arn, json_key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
    value = secretsmanager.get_secret_value(SecretId=arn)["SecretString"]
    return json.loads(value)[json_key] if json_key else value


# --- the stack ----------------------------------------------------------------------------------------------------


@dataclass
class ProductionStack:
    """What the CDK stack would have created, in moto and Postgres, plus the tasks' environment contract."""

    postgres: PostgresServer
    mongo_uri: str
    mongo_database: str
    dagster_home: Path
    monkeypatch: pytest.MonkeyPatch
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    run_task_definition_arn: str = ""
    secret_values: list[str] = field(default_factory=list)
    run_task_calls: list[dict[str, Any]] = field(default_factory=list)
    task_outputs: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    secret_arns: dict[str, str] = field(default_factory=dict)
    last_tick_time: dict[str, datetime] = field(default_factory=dict)
    launcher_api_calls: set[str] = field(default_factory=set)

    @property
    def fargate(self) -> FakeFargate:
        return FakeFargate(self)

    def host_environment(self) -> dict[str, str]:
        """What a container gets besides its task definition: the image's ENV (PATH, unbuffered output)
        and the task role's credentials (here: moto's), which ECS serves from the metadata endpoint instead."""
        return {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.dagster_home),
            "PYTHONUNBUFFERED": "1",
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def create(self) -> None:
        """The AWS side (moto) and the environment every Dagster process of the deployment gets."""
        pg_database = self.postgres.create_database()
        self._create_aws()
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY_DIR / "dagster.yaml", self.dagster_home / "dagster.yaml")
        pg_password_secret = self.secret_arns["dagster-postgres"] + ":password::"
        self.environment = {
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_PG_HOST": self.postgres.host,
            "DAGSTER_PG_PORT": str(self.postgres.port),
            "DAGSTER_PG_DB": pg_database,
            "DAGSTER_PG_USERNAME": self.postgres.username,
            "DAGSTER_RUN_CONTAINER_NAME": RUN_CONTAINER,
            "DAGSTER_ECS_CLUSTER": CLUSTER,
            "DAGSTER_RUN_SUBNETS": ",".join(self.subnets),
            "DAGSTER_RUN_SECURITY_GROUPS": ",".join(self.security_groups),
            "DAGSTER_COMPUTE_LOGS_BUCKET": REPORTS_BUCKET,
            "DAGSTER_COMPUTE_LOGS_PREFIX": COMPUTE_LOGS_PREFIX,
            "MONGODB_DATABASE": self.mongo_database,
            "INTERVALPROCESSING_TIMEZONE": "UTC",
            "REPORTS_S3_BUCKET": REPORTS_BUCKET,
            "REPORTS_S3_PREFIX": REPORTS_PREFIX,
            "STEP_OUTPUTS_S3_BUCKET": REPORTS_BUCKET,
            "STEP_OUTPUTS_S3_PREFIX": STEP_OUTPUTS_PREFIX,
        }
        secrets_ = {"MONGODB_URI": self.secret_arns["mongodb-uri"], "DAGSTER_PG_PASSWORD": pg_password_secret}
        self.run_task_definition_arn = self._register_run_task_definition(
            {**self.environment, "DAGSTER_RUN_TASK_DEFINITION_ARN": RUN_FAMILY}, secrets_
        )
        # The daemon's own task: same environment, secrets resolved by ECS, and the run task definition's ARN.
        daemon_env = {
            **self.environment,
            "DAGSTER_RUN_TASK_DEFINITION_ARN": self.run_task_definition_arn,
            "DAGSTER_PG_PASSWORD": self.postgres.password,
            "MONGODB_URI": self.mongo_uri,
        }
        for name, value in daemon_env.items():
            self.monkeypatch.setenv(name, value)

    def _create_aws(self) -> None:
        requests.post(
            f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/state-manager/set-transition",
            json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
            timeout=10,
        ).raise_for_status()
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
            for cidr, zone in (("10.40.1.0/24", "us-east-1a"), ("10.40.2.0/24", "us-east-1b"))
        ]
        self.security_groups = [
            ec2.create_security_group(GroupName="dagster-tasks", Description="run tasks", VpcId=vpc)["GroupId"]
        ]
        boto3.client("ecs").create_cluster(clusterName=CLUSTER, capacityProviders=["FARGATE", "FARGATE_SPOT"])
        boto3.client("logs").create_log_group(logGroupName=RUN_LOG_GROUP)
        boto3.client("s3").create_bucket(Bucket=REPORTS_BUCKET)
        secretsmanager = boto3.client("secretsmanager")
        self.secret_arns = {
            "mongodb-uri": secretsmanager.create_secret(
                Name="intervalprocessing/mongodb-uri", SecretString=self.mongo_uri
            )["ARN"],
            "dagster-postgres": secretsmanager.create_secret(
                Name="intervalprocessing/dagster-postgres",
                SecretString=json.dumps({"username": self.postgres.username, "password": self.postgres.password}),
            )["ARN"],
        }
        self.secret_values = [self.postgres.password, self.mongo_uri]

    def _register_run_task_definition(self, environment: dict[str, str], secrets_: dict[str, str]) -> str:
        """The run task definition as infra_cdk registers it (size, awslogs, environment and secrets)."""
        response = boto3.client("ecs").register_task_definition(
            family=RUN_FAMILY,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="1024",
            memory="3072",
            ephemeralStorage={"sizeInGiB": 21},
            executionRoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/TaskExecutionRole",
            taskRoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/RunTaskRole",
            containerDefinitions=[
                {
                    "name": RUN_CONTAINER,
                    "image": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/intervalprocessing:latest",
                    "essential": True,
                    "memory": 3072,  # moto's RunTask fails (500) without a container-level memory
                    "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
                    "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets_.items())],
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": RUN_LOG_GROUP,
                            "awslogs-region": REGION,
                            "awslogs-stream-prefix": RUN_CONTAINER,
                        },
                    },
                }
            ],
        )
        return response["taskDefinition"]["taskDefinitionArn"]

    # --- the daemon's side ---

    @contextmanager
    def daemon(self) -> Iterator[WorkspaceProcessContext]:
        """The instance from $DAGSTER_HOME/dagster.yaml and the code location from workspace.yaml, as
        ``dagster-daemon run -w workspace.yaml`` loads them; every RunTask the launcher sends is recorded."""
        instance = DagsterInstance.get()
        launcher = instance.run_launcher
        launcher.ecs.meta.events.register("provide-client-params.ecs.RunTask", self._record_run_task)
        for client in (launcher.ecs, launcher.secrets_manager, launcher.logs):
            client.meta.events.register("before-call", self._record_api_call)
        with (
            instance,
            WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])) as context,
        ):
            yield context

    def _record_run_task(self, params: dict[str, Any], **_: Any) -> None:
        self.run_task_calls.append(json.loads(json.dumps(params)))

    def _record_api_call(self, model: Any, **_: Any) -> None:
        self.launcher_api_calls.add(f"{model.metadata['endpointPrefix']}:{model.name}")

    def _repository(self, context: WorkspaceProcessContext) -> RemoteRepository:
        location = context.create_request_context().get_code_location(LOCATION_NAME)
        (repository,) = location.get_repositories().values()
        return repository

    def schedule(self, context: WorkspaceProcessContext, name: str) -> RemoteSchedule:
        return self._repository(context).get_schedule(name)

    def enable_only(self, context: WorkspaceProcessContext, *schedule_names: str) -> None:
        """The schedules as an operator leaves them after checking the deployment: ``schedule_names`` started now,
        every other one stopped. (Every scheduler iteration evaluates every running schedule, as the daemon does.)"""
        instance = context.instance
        for schedule in self._repository(context).get_schedules():
            stored = instance.get_instigator_state(schedule.get_remote_origin_id(), schedule.selector_id)
            running = schedule.get_current_instigator_state(stored).is_running
            if schedule.name in schedule_names and not running:
                self.start(context, schedule.name)
            elif schedule.name not in schedule_names and running:
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)

    def start(self, context: WorkspaceProcessContext, schedule_name: str) -> None:
        """Start one schedule now (UI: Automation -> Start); its ticks count from now."""
        context.instance.start_schedule(self.schedule(context, schedule_name))
        self.last_tick_time[schedule_name] = datetime.now(UTC).replace(microsecond=0)

    def tick(self, context: WorkspaceProcessContext, schedule_name: str) -> datetime:
        """A scheduler iteration just after ``schedule_name``'s next tick (time is simulated, the code path is the
        daemon's); returns the tick's time."""
        schedule = self.schedule(context, schedule_name)
        times = cron_string_iterator(
            self.last_tick_time[schedule_name].timestamp() + 1,
            schedule.cron_schedule,
            schedule.execution_timezone or "UTC",
        )
        due = next(times)
        self.last_tick_time[schedule_name] = due
        self._scheduler_iteration(context, due + timedelta(seconds=1))
        return due

    def _scheduler_iteration(self, context: WorkspaceProcessContext, now: datetime) -> None:
        errors = [
            item
            for item in launch_scheduled_runs(
                context, logging.getLogger("scheduler"), end_datetime_utc=now, iteration_times={}
            )
            if isinstance(item, SerializableErrorInfo)
        ]
        assert not errors, errors

    def dequeue(self, context: WorkspaceProcessContext) -> None:
        """One iteration of the run queue daemon: launch what the concurrency limits allow."""
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(context))

    def runs(self, context: WorkspaceProcessContext) -> list[DagsterRun]:
        """Every run of the deployment, oldest first."""
        return list(reversed(context.instance.get_runs()))

    def reexecute_from_failure_as_the_ui_does(self, context: WorkspaceProcessContext, run_id: str) -> DagsterRun:
        """The UI's **Re-execute → From failure**: GraphQL ``launchPipelineReexecution`` with strategy
        ``FROM_FAILURE``, as the button sends it, to this instance; then one run-queue iteration launches it."""
        response = execute_dagster_graphql(
            context.create_request_context(),
            REEXECUTE,
            variables={"params": {"parentRunId": run_id, "strategy": "FROM_FAILURE"}},
        )
        launched = response.data["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        self.dequeue(context)
        return context.instance.get_run_by_id(launched["run"]["runId"])

    def launch_first_run(self, context: WorkspaceProcessContext, schedule_name: str) -> tuple[DagsterRun, str]:
        """Start only ``schedule_name``, let it tick once and the queue launch the run: the run and its ECS task."""
        self.enable_only(context, schedule_name)
        self.tick(context, schedule_name)
        self.dequeue(context)
        (run,) = self.runs(context)
        return run, context.instance.get_run_by_id(run.run_id).tags["ecs/task_arn"]


@pytest.fixture()
def production_stack(
    postgres_server: PostgresServer,
    secantus_uri: str,
    aws: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ProductionStack]:
    """A deployed stack: moto resources, a fresh Dagster database, a seeded MongoDB database, and the daemon's
    environment set in this process (so Dagster code under test reads it exactly as in the daemon task)."""
    database = f"deploy_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(secantus_uri, tz_aware=True)
    seed_demo_data(client[database])
    # A distinctive (and harmless) option makes the connection string greppable in the no-secrets checks.
    mongo_uri = f"{secantus_uri.rstrip('/')}/?appname=mongo-secret-{secrets.token_hex(6)}"
    stack = ProductionStack(
        postgres=postgres_server,
        mongo_uri=mongo_uri,
        mongo_database=database,
        dagster_home=tmp_path / "dagster_home",
        monkeypatch=monkeypatch,
    )
    stack.create()
    yield stack
    # Whatever the test did, the launcher called only what infra_cdk grants the daemon's task role.
    assert stack.launcher_api_calls <= DAEMON_ROLE_ACTIONS, stack.launcher_api_calls - DAEMON_ROLE_ACTIONS
    requests.post(f"{aws}/moto-api/state-manager/unset-transition", json={"model_name": "ecs::task"}, timeout=10)
    client.drop_database(database)
    client.close()
