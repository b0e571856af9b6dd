"""``deploy/dagster.yaml`` against the CDK contract, and the run launcher subclass it names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy
import yaml
from dagster import DagsterInstance, execute_job, in_process_executor, job, op, reconstructable
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler import DagsterDaemonScheduler
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

from intervalprocessing_dagster import process_to_run
from intervalprocessing_dagster.instance import ecs_run_launcher
from intervalprocessing_dagster.instance.ecs_run_launcher import EnvNetworkEcsRunLauncher, split_ids

REPO = Path(__file__).resolve().parents[2]
DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"

#: The variables infra_cdk gives the webserver, daemon and run tasks for the instance (README / issue contract).
CONTRACT = {
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_RUN_TASK_DEFINITION_ARN",
    "DAGSTER_RUN_CONTAINER_NAME",
    "DAGSTER_ECS_CLUSTER",
    "DAGSTER_RUN_SUBNETS",
    "DAGSTER_RUN_SECURITY_GROUPS",
    "DAGSTER_COMPUTE_LOGS_BUCKET",
    "DAGSTER_COMPUTE_LOGS_PREFIX",
}


def _env_references(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(_env_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_references(value) for value in node))
    return set()


def test_the_instance_reads_exactly_the_contract_variables() -> None:
    assert _env_references(yaml.safe_load(DAGSTER_YAML.read_text())) == CONTRACT


def test_the_password_comes_from_the_environment_only() -> None:
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    assert config["storage"]["custom"]["config"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


def test_the_file_passes_dagsters_schema(tmp_path: Path) -> None:
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_retries"] == {"enabled": True, "max_retries": 3, "retry_on_asset_or_op_failure": False}
    assert config["run_monitoring"]["enabled"] is True
    assert config["scheduler"]["config"] == {"max_catchup_runs": 1}
    assert config["run_launcher"]["config"]["secrets_tag"] is None
    assert "env_vars" not in config["run_launcher"]["config"] and "secrets" not in config["run_launcher"]["config"]


@pytest.mark.system
def test_the_loaded_instance_has_the_production_parts(production_stack) -> None:
    """Loaded the way the daemon loads it, with the contract environment (Postgres + moto)."""
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "CodeLocationPostgresRunStorage"  # instance/run_origin.py
        assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert isinstance(instance.scheduler, DagsterDaemonScheduler) and instance.scheduler.max_catchup_runs == 1
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        launcher = instance.run_launcher
        assert isinstance(launcher, EnvNetworkEcsRunLauncher)
        assert launcher.task_definition == production_stack.run_task_definition_arn
        assert launcher.container_name == "run"
        assert launcher.use_current_ecs_task_config is False
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 3
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "intervalprocessing/cadence", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


@op
def three_logs(context) -> None:  # noqa: ANN001 - Dagster's op context
    for number in range(3):
        context.log.info(f"log {number}")


@job(executor_def=in_process_executor)  # every event written from this process, through the counted engine
def logging_job() -> None:
    three_logs()


@pytest.mark.system
def test_a_runs_events_share_one_postgres_connection(production_stack) -> None:
    """Stock dagster-postgres opens a connection per event (per TLS handshake on RDS); the pooled event log keeps one
    for the whole run, and everything it wrote is read back."""
    with DagsterInstance.get() as instance:
        opened = []
        sqlalchemy.event.listen(instance.event_log_storage._engine, "connect", lambda *_: opened.append(1))
        result = execute_job(reconstructable(logging_job), instance=instance)
        assert result.success
        events = instance.all_logs(result.run_id)
    assert [e.user_message for e in events if e.user_message.startswith("log ")] == ["log 0", "log 1", "log 2"]
    assert len(events) > 10
    assert len(opened) == 1


# --- the launcher subclass --------------------------------------------------------------------------------------


@pytest.fixture()
def run_task_definition(aws: str) -> str:
    """The launcher checks its task definition and container at start-up, so one must exist (in moto)."""
    return boto3.client("ecs").register_task_definition(
        family="IntervalProcessing-Run",
        containerDefinitions=[{"name": "run", "image": "intervalprocessing:latest", "memory": 3072}],
    )["taskDefinition"]["taskDefinitionArn"]


def test_comma_lists_become_the_awsvpc_configuration(run_task_definition: str) -> None:
    launcher = EnvNetworkEcsRunLauncher(
        task_definition=run_task_definition,
        subnets="subnet-a, subnet-b,",
        security_groups="sg-1",
        run_task_kwargs={"cluster": "intervalprocessing"},
    )
    assert launcher.run_task_kwargs == {
        "cluster": "intervalprocessing",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-a", "subnet-b"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "DISABLED",
            }
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subnets": " , "}, "subnets (DAGSTER_RUN_SUBNETS) is empty"),
        ({"security_groups": ""}, "security_groups (DAGSTER_RUN_SECURITY_GROUPS) is empty"),
        ({"assign_public_ip": "yes"}, "assign_public_ip must be one of"),
        ({"run_task_kwargs": {"networkConfiguration": {}}}, "networkConfiguration would be replaced"),
    ],
)
def test_a_bad_network_setting_stops_the_launcher_at_start_up(
    run_task_definition: str, kwargs: dict[str, Any], message: str
) -> None:
    settings = {"subnets": "subnet-a", "security_groups": "sg-1", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        EnvNetworkEcsRunLauncher(task_definition=run_task_definition, **settings)


def test_the_launcher_knows_the_entry_points_tag() -> None:
    """The launcher and the entry point read one definition of the tag (runs/tags.py): the launcher cannot import the
    entry point (process_to_run.py), which would load every definition in the daemon."""
    assert ecs_run_launcher.LAUNCHED_BY_TAG == process_to_run.LAUNCHED_BY_TAG
    assert ecs_run_launcher.LAUNCHED_BY_PROCESS_TO_RUN == process_to_run.PROCESS_TO_RUN_VARIABLE


def test_split_ids_keeps_order_and_drops_blanks() -> None:
    assert split_ids(" a,b ,, c ", "x") == ["a", "b", "c"]
