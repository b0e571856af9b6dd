"""ECS cluster, the run task definition's contract with Dagster, the daemon and webserver services, log groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stacks.dagster_services import AUDIT_CONTAINER_NAME, VIEWER_ROLE_CONTAINER_NAME
from tests.conftest import CERTIFICATE_ARN
from tests.synthesis import Synthesized

#: What the Dagster code and deploy/dagster.yaml read from the plain environment (names agreed with issues 4 and 5).
CONTRACT_ENVIRONMENT = {
    "MONGODB_DATABASE",
    "INTERVALPROCESSING_TIMEZONE",
    "REPORTS_S3_BUCKET",
    "REPORTS_S3_PREFIX",
    "DAGSTER_HOME",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "PGSSLMODE",
    "DAGSTER_RUN_TASK_DEFINITION_ARN",
    "DAGSTER_RUN_CONTAINER_NAME",
    "DAGSTER_ECS_CLUSTER",
    "DAGSTER_RUN_SUBNETS",
    "DAGSTER_RUN_SECURITY_GROUPS",
    "DAGSTER_COMPUTE_LOGS_BUCKET",
    "DAGSTER_COMPUTE_LOGS_PREFIX",
    "STEP_OUTPUTS_S3_BUCKET",
    "STEP_OUTPUTS_S3_PREFIX",
    "ALERTS_SNS_TOPIC_ARN",
}
#: Only when the UI's address is known (context webserverUrl, or the load balancer's operator host name).
OPTIONAL_ENVIRONMENT = {"INTERVALPROCESSING_WEBSERVER_URL"}
#: The operators' webserver only: its audit file, and with the load balancer its sign-on (tests/test_audit.py).
OPERATOR_ENVIRONMENT = {"WEBSERVER_AUDIT_LOG"}
SIGN_ON_ENVIRONMENT = {
    "WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN",
    "WEBSERVER_SIGN_ON_KEY_ENDPOINT",
    "WEBSERVER_SIGN_ON_CLIENT_ID",
}
FAMILIES = ("IntervalProcessing-Run", "IntervalProcessing-Daemon", "IntervalProcessing-Webserver")
CONTRACT_SECRETS = {"MONGODB_URI", "DAGSTER_PG_PASSWORD"}
WORKSPACE = "/opt/dagster/app/workspace.yaml"


def _task_definition(synth: Synthesized, family: str) -> dict[str, Any]:
    found = [
        r["Properties"]
        for r in synth.of_type("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["Family"] == family
    ]
    assert len(found) == 1, f"task definition family {family}: {len(found)} found"
    return found[0]


def _container(synth: Synthesized, family: str) -> dict[str, Any]:
    """The task's Dagster container (the operators' webserver task also has the audit-log printer, test_audit.py;
    with the load balancer the daemon task also has the viewer-role container, test_database.py)."""
    (container,) = [
        c
        for c in _task_definition(synth, family)["ContainerDefinitions"]
        if c["Name"] not in (AUDIT_CONTAINER_NAME, VIEWER_ROLE_CONTAINER_NAME)
    ]
    return container


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def _service(synth: Synthesized, name: str) -> dict[str, Any]:
    (service,) = [
        r["Properties"] for r in synth.of_type("AWS::ECS::Service").values() if r["Properties"]["ServiceName"] == name
    ]
    return service


def test_cluster_has_container_insights(default: Synthesized) -> None:
    _, cluster = default.one("AWS::ECS::Cluster")
    assert cluster["Properties"]["ClusterName"] == "intervalprocessing"
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]
    # deploy/dagster.yaml launches runs with the FARGATE capacity provider, which the cluster must have.
    _, association = default.one("AWS::ECS::ClusterCapacityProviderAssociations")
    assert "FARGATE" in association["Properties"]["CapacityProviders"]


def test_run_task_has_the_old_size_and_a_run_container_without_command(default: Synthesized) -> None:
    task = _task_definition(default, "IntervalProcessing-Run")
    assert (task["Cpu"], task["Memory"]) == ("1024", "3072")
    assert task["EphemeralStorage"] == {"SizeInGiB": 21}
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    container = _container(default, "IntervalProcessing-Run")
    assert container["Name"] == "run"
    assert "Command" not in container  # EcsRunLauncher sets the command per run
    assert container["Essential"] is True


@pytest.mark.parametrize(
    ("family", "process"),
    [
        ("IntervalProcessing-Run", "Run"),
        ("IntervalProcessing-Daemon", "Daemon"),
        ("IntervalProcessing-Webserver", "Webserver"),
    ],
)
def test_containers_log_to_the_old_style_log_groups_with_retention(
    default: Synthesized, family: str, process: str
) -> None:
    options = _container(default, family)["LogConfiguration"]
    assert options["LogDriver"] == "awslogs"
    log_group_lid = options["Options"]["awslogs-group"]["Ref"]
    log_group = default.resources[log_group_lid]["Properties"]
    assert log_group == {"LogGroupName": f"/ecs/IntervalProcessing-{process}", "RetentionInDays": 90}


def test_every_log_group_has_retention_from_context(variant: Synthesized) -> None:
    groups = variant.of_type("AWS::Logs::LogGroup").values()
    # four ECS (with the viewer), VPC flow logs, two RDS exports, WAF, the Cognito trigger; and the audit log
    assert len(groups) == 10
    audit = [g for g in groups if g["Properties"].get("LogGroupName") == "/ecs/IntervalProcessing-Audit"]
    assert [g["Properties"]["RetentionInDays"] for g in audit] == [2192]  # auditLogRetentionDays, not logRetentionDays
    assert {g["Properties"]["RetentionInDays"] for g in groups if g not in audit} == {30}


def test_run_task_carries_the_whole_contract_environment_and_both_secrets(default: Synthesized) -> None:
    container = _container(default, "IntervalProcessing-Run")
    environment = _environment(container)
    assert set(environment) == CONTRACT_ENVIRONMENT
    assert {s["Name"] for s in container["Secrets"]} == CONTRACT_SECRETS
    assert environment["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    assert environment["MONGODB_DATABASE"] == "intervalprocessing"
    assert environment["INTERVALPROCESSING_TIMEZONE"] == "UTC"
    assert environment["REPORTS_S3_PREFIX"] == "GeneratedFiles/"
    assert environment["DAGSTER_COMPUTE_LOGS_PREFIX"] == "dagster/compute-logs"
    assert environment["DAGSTER_RUN_CONTAINER_NAME"] == "run"
    assert environment["DAGSTER_PG_DB"] == "dagster" and environment["DAGSTER_PG_USERNAME"] == "dagster"
    assert environment["PGSSLMODE"] == "require"  # libpq (psycopg2) refuses a connection to Postgres without TLS
    # The run task cannot name its own ARN (a cycle); the family resolves to the latest revision.
    assert environment["DAGSTER_RUN_TASK_DEFINITION_ARN"] == "IntervalProcessing-Run"
    # Step outputs go to the report bucket, under their own prefix (agreed default, with its '/').
    assert environment["STEP_OUTPUTS_S3_BUCKET"] == environment["REPORTS_S3_BUCKET"]
    assert environment["STEP_OUTPUTS_S3_BUCKET"] == {"Ref": default.logical_id(_reports_bucket(default))}
    assert environment["STEP_OUTPUTS_S3_PREFIX"] == "dagster/step-outputs/"
    topic, _ = default.one("AWS::SNS::Topic")
    assert environment["ALERTS_SNS_TOPIC_ARN"] == {"Ref": topic}


def _reports_bucket(synth: Synthesized) -> Any:
    return synth.stack.node.find_child("Storage").node.find_child("ReportsBucket")


def test_no_webserver_url_unless_it_is_known(default: Synthesized) -> None:
    for family in FAMILIES:
        assert not OPTIONAL_ENVIRONMENT & set(_environment(_container(default, family)))


def test_alerts_link_to_the_operator_ui_when_there_is_a_load_balancer(variant: Synthesized) -> None:
    for family in (*FAMILIES, "IntervalProcessing-Viewer"):
        environment = _environment(_container(variant, family))
        operator = OPERATOR_ENVIRONMENT | SIGN_ON_ENVIRONMENT if family == "IntervalProcessing-Webserver" else set()
        assert set(environment) == CONTRACT_ENVIRONMENT | OPTIONAL_ENVIRONMENT | operator
        if family == "IntervalProcessing-Viewer":  # its own read-only Postgres role (test_database.py)
            assert environment["DAGSTER_PG_USERNAME"] == "dagster_viewer"
        assert environment["INTERVALPROCESSING_WEBSERVER_URL"] == "https://dagster-ops.example.com"


def test_history_windows_from_context_reach_every_task(synth_with: Callable[..., Synthesized]) -> None:
    """The daemon runs the retention schedule and the runs ensure the TTL indexes: all read the same windows."""
    synth = synth_with(runHistorySuccessDays="45", automationHistoryDays="30")
    for family in FAMILIES:
        environment = _environment(_container(synth, family))
        assert (environment["RUN_HISTORY_SUCCESS_DAYS"], environment["AUTOMATION_HISTORY_DAYS"]) == ("45", "30")
        assert "RUN_HISTORY_FAILURE_DAYS" not in environment  # not given: the application's default


def test_webserver_url_from_context_wins_without_its_trailing_slash(synth_with: Callable[..., Synthesized]) -> None:
    load_balancer = {
        "webserverLoadBalancer": "internal",
        "viewerHostName": "a.example.com",
        "operatorHostName": "b.example.com",
        "certificateArn": CERTIFICATE_ARN,
    }
    for context in ({}, load_balancer):
        synth = synth_with(webserverUrl="https://dagster.example.com/", **context)
        for family in FAMILIES:
            url = _environment(_container(synth, family))["INTERVALPROCESSING_WEBSERVER_URL"]
            assert url == "https://dagster.example.com"


def test_secrets_come_from_secrets_manager_not_from_plain_environment(default: Synthesized) -> None:
    mongo_secret = default.logical_id(default.stack.mongo_uri_secret)
    (db_secret,) = default.of_type("AWS::SecretsManager::Secret").keys() - {mongo_secret}
    attachment_lid, attachment = default.one("AWS::SecretsManager::SecretTargetAttachment")
    assert attachment["Properties"]["SecretId"] == {"Ref": db_secret}
    for family in FAMILIES:
        container = _container(default, family)
        secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
        assert secrets["MONGODB_URI"] == {"Ref": mongo_secret}
        assert secrets["DAGSTER_PG_PASSWORD"] == {"Fn::Join": ["", [{"Ref": attachment_lid}, ":password::"]]}
        environment = _environment(container)
        assert not CONTRACT_SECRETS & set(environment)
        assert not any("PASSWORD" in name or "SECRET" in name or name.endswith("_URI") for name in environment)
        assert "mongodb://" not in str(environment) and "mongodb+srv://" not in str(environment)


def test_mongo_secret_is_a_generated_placeholder_with_the_documented_name(default: Synthesized) -> None:
    secret = default.resources[default.logical_id(default.stack.mongo_uri_secret)]["Properties"]
    assert secret["Name"] == "intervalprocessing/mongodb-uri"
    assert "SecretString" not in secret  # no value in the template; CloudFormation generates a placeholder


def test_daemon_and_webserver_share_the_environment_and_launch_the_deployed_revision(default: Synthesized) -> None:
    run_task_lid = default.logical_id(default.stack.node.find_child("DagsterServices").run_task_definition)
    run_env = _environment(_container(default, "IntervalProcessing-Run"))
    for family in ("IntervalProcessing-Daemon", "IntervalProcessing-Webserver"):
        environment = _environment(_container(default, family))
        assert environment["DAGSTER_RUN_TASK_DEFINITION_ARN"] == {"Ref": run_task_lid}
        # The operators' webserver adds only its own settings (its audit file; sign-on with the load balancer).
        own = OPERATOR_ENVIRONMENT if family == "IntervalProcessing-Webserver" else set()
        assert {k: v for k, v in environment.items() if k != "DAGSTER_RUN_TASK_DEFINITION_ARN" and k not in own} == {
            k: v for k, v in run_env.items() if k != "DAGSTER_RUN_TASK_DEFINITION_ARN"
        }
        assert own <= set(environment)


def test_commands_of_daemon_and_webserver(default: Synthesized) -> None:
    assert _container(default, "IntervalProcessing-Daemon")["Command"] == ["dagster-daemon", "run", "-w", WORKSPACE]
    webserver = _container(default, "IntervalProcessing-Webserver")
    # dagster-webserver inside the sign-on and audit wrapper, with the same options (tests/test_audit.py)
    assert webserver["Command"] == ["intervalprocessing-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", WORKSPACE]
    assert webserver["PortMappings"] == [{"ContainerPort": 3000, "Protocol": "tcp"}]


def test_all_containers_run_the_project_image_at_the_context_tag(default: Synthesized, variant: Synthesized) -> None:
    for synth, tag in ((default, "latest"), (variant, "v1.2.3")):
        repo_lid, _ = synth.one("AWS::ECR::Repository")
        for family in ("IntervalProcessing-Run", "IntervalProcessing-Daemon", "IntervalProcessing-Webserver"):
            *_, repository, image_tag = _container(synth, family)["Image"]["Fn::Join"][1]
            assert (repository, image_tag) == ({"Ref": repo_lid}, f":{tag}")


def test_exactly_one_daemon_and_never_two_during_a_deployment(default: Synthesized) -> None:
    daemon = _service(default, "dagster-daemon")
    assert daemon["DesiredCount"] == 1
    assert daemon["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert daemon["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert daemon["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_services_run_in_private_subnets_without_public_ip(default: Synthesized, variant: Synthesized) -> None:
    for synth in (default, variant):
        for name in ("dagster-daemon", "dagster-webserver", *(["dagster-viewer"] if synth is variant else [])):
            network = _service(synth, name)["NetworkConfiguration"]["AwsvpcConfiguration"]
            assert network["AssignPublicIp"] == "DISABLED"
            subnets = {s["Ref"] for s in network["Subnets"]}
            assert subnets and all("PrivateSubnet" in s for s in subnets)


def test_webserver_is_reachable_through_ecs_exec_unless_switched_off(
    default: Synthesized, variant: Synthesized
) -> None:
    assert _service(default, "dagster-webserver")["EnableExecuteCommand"] is True
    assert not _service(variant, "dagster-webserver").get("EnableExecuteCommand")
    assert not _service(default, "dagster-webserver").get("LoadBalancers")


def test_no_eventbridge_schedules(default: Synthesized) -> None:
    for resource_type in ("AWS::Scheduler::Schedule", "AWS::Events::Rule"):
        default.template.resource_count_is(resource_type, 0)


def test_first_deploy_can_leave_the_services_stopped(synth_with: Callable[..., Synthesized]) -> None:
    stopped = synth_with(startServices="false")
    for name in ("dagster-daemon", "dagster-webserver"):
        assert _service(stopped, name)["DesiredCount"] == 0
    assert stopped.nag_violations == []
