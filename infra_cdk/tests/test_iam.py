"""Least privilege: no wildcard actions, no managed policies, each role exactly what its caller needs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.synthesis import Synthesized


def _services(synth: Synthesized) -> Any:
    return synth.stack.node.find_child("DagsterServices")


def _role_lid(synth: Synthesized, name: str) -> str:
    return synth.logical_id(_services(synth).node.find_child(name))


def _statements_of(synth: Synthesized, role_lid: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synth.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_lid} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _all_statements(synth: Synthesized) -> list[dict[str, Any]]:
    return [
        statement
        for policy in synth.of_type("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.mark.parametrize("configuration", ["default", "variant"])
def test_no_action_wildcards_and_no_managed_policies(configuration: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    statements = _all_statements(synth)
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _actions(statement):
            assert "*" not in action, statement
    for role in synth.of_type("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"], role
        assert "Policies" not in role["Properties"]  # every grant is in a policy resource these tests read
    assert "AmazonS3FullAccess" not in str(synth.resources)


def test_resource_star_only_for_actions_without_resource_level_permissions(default: Synthesized) -> None:
    allowed = {
        "ecr:GetAuthorizationToken",
        "ecs:DescribeTaskDefinition",
        "ec2:DescribeNetworkInterfaces",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
    for statement in _all_statements(default):
        if statement["Resource"] == "*":
            assert set(_actions(statement)) <= allowed, statement


def test_pass_role_only_for_the_run_roles_and_only_to_ecs_tasks(default: Synthesized) -> None:
    pass_role = [s for s in _all_statements(default) if "iam:PassRole" in _actions(s)]
    assert len(pass_role) == 1
    (statement,) = pass_role
    assert _actions(statement) == ["iam:PassRole"]
    assert sorted(r["Fn::GetAtt"][0] for r in statement["Resource"]) == sorted(
        [_role_lid(default, "TaskExecutionRole"), _role_lid(default, "RunTaskRole")]
    )
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert pass_role[0] in _statements_of(default, _role_lid(default, "DaemonTaskRole"))


def _object_grants(synth: Synthesized, role_lid: str) -> dict[str, list[str]]:
    """Object-prefix pattern ('/GeneratedFiles/*') -> actions, for the role's statements on bucket objects."""
    return {
        statement["Resource"]["Fn::Join"][1][1]: sorted(_actions(statement))
        for statement in _statements_of(synth, role_lid)
        if "Fn::Join" in statement["Resource"]
    }


def test_run_role_writes_reports_and_compute_logs_and_reads_step_outputs_and_nothing_else(
    default: Synthesized,
) -> None:
    bucket = default.logical_id(default.stack.node.find_child("Storage").node.find_child("ReportsBucket"))
    statements = _statements_of(default, _role_lid(default, "RunTaskRole"))
    assert _object_grants(default, _role_lid(default, "RunTaskRole")) == {
        "/GeneratedFiles/*": ["s3:AbortMultipartUpload", "s3:PutObject"],
        # deletes: the history retention job (a run) removes the logs and outputs of the runs it deletes
        "/dagster/compute-logs/*": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
        # the S3 pickle IO manager: a re-executed run reads its parent's outputs
        "/dagster/step-outputs/*": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
    }
    object_statements = [s for s in statements if "Fn::Join" in s["Resource"]]
    for statement in object_statements:
        assert statement["Resource"]["Fn::Join"][1][0] == {"Fn::GetAtt": [bucket, "Arn"]}
    # The one statement on the bucket itself: listing the step-output and compute-log prefixes only (the IO
    # manager's start-up check, the retention job's per-run listings).
    (listing,) = [s for s in statements if s not in object_statements]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["dagster/step-outputs/*", "dagster/step-outputs", "dagster/compute-logs/*"]}
    }


def test_only_the_run_role_touches_step_outputs(default: Synthesized) -> None:
    run_role = _role_lid(default, "RunTaskRole")
    for policy in default.of_type("AWS::IAM::Policy").values():
        if {"Ref": run_role} in policy["Properties"].get("Roles", []):
            continue
        assert "step-outputs" not in str(policy["Properties"]["PolicyDocument"]), policy


def test_prefix_context_moves_the_grants_and_the_environment_together(variant: Synthesized) -> None:
    assert set(_object_grants(variant, _role_lid(variant, "RunTaskRole"))) == {
        "/Reports/*",
        "/logs/dagster/*",
        "/outputs/*",
    }
    (listing,) = [
        s for s in _statements_of(variant, _role_lid(variant, "RunTaskRole")) if s["Action"] == "s3:ListBucket"
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["outputs/*", "outputs", "logs/dagster/*"]}}
    run = variant.resources[variant.logical_id(_services(variant).run_task_definition)]["Properties"]
    environment = {e["Name"]: e["Value"] for e in run["ContainerDefinitions"][0]["Environment"]}
    assert environment["REPORTS_S3_PREFIX"] == "Reports/"
    assert environment["DAGSTER_COMPUTE_LOGS_PREFIX"] == "logs/dagster"  # the log manager adds the '/' itself
    assert environment["STEP_OUTPUTS_S3_PREFIX"] == "outputs/"


def test_daemon_launches_only_the_run_task_definition_in_the_cluster(default: Synthesized) -> None:
    services = _services(default)
    cluster_arn = {"Fn::GetAtt": [default.logical_id(services.cluster), "Arn"]}
    statements = _statements_of(default, _role_lid(default, "DaemonTaskRole"))
    by_action = {action: s for s in statements for action in _actions(s)}
    assert by_action["ecs:RunTask"]["Resource"] == {"Ref": default.logical_id(services.run_task_definition)}
    assert by_action["ecs:RunTask"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    for action in ("ecs:DescribeTasks", "ecs:StopTask"):
        assert by_action[action]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    assert by_action["ecs:TagResource"]["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}
    run_log_group = default.logical_id(services.node.find_child("RunLogGroup"))
    assert by_action["logs:GetLogEvents"]["Resource"] == {"Fn::GetAtt": [run_log_group, "Arn"]}
    assert set(by_action) == {
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:TagResource",
        "ecs:DescribeTaskDefinition",
        "ec2:DescribeNetworkInterfaces",
        "iam:PassRole",
        "logs:GetLogEvents",
        "sns:Publish",  # the run-failure sensor (tests/test_alerting.py checks the grant)
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }


def test_webserver_reads_compute_logs_and_stops_runs_but_cannot_launch(default: Synthesized) -> None:
    actions = {a for s in _statements_of(default, _role_lid(default, "WebserverTaskRole")) for a in _actions(s)}
    assert {"s3:GetObject", "s3:ListBucket", "ecs:StopTask", "ecs:DescribeTasks"} <= actions
    assert not {"ecs:RunTask", "iam:PassRole", "s3:PutObject"} & actions
    list_bucket = next(
        s for s in _statements_of(default, _role_lid(default, "WebserverTaskRole")) if s["Action"] == "s3:ListBucket"
    )
    assert list_bucket["Condition"] == {"StringLike": {"s3:prefix": ["dagster/compute-logs/*"]}}


def test_execution_role_reads_exactly_the_two_secrets(default: Synthesized) -> None:
    statements = _statements_of(default, _role_lid(default, "TaskExecutionRole"))
    secret_reads = [s for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    resources = [
        r for s in secret_reads for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    mongo = default.logical_id(default.stack.mongo_uri_secret)
    attachment, _ = default.one("AWS::SecretsManager::SecretTargetAttachment")
    assert sorted(map(str, resources)) == sorted(map(str, [{"Ref": mongo}, {"Ref": attachment}]))


def test_task_roles_can_only_be_assumed_by_ecs_tasks_of_this_account(default: Synthesized) -> None:
    for name in ("TaskExecutionRole", "RunTaskRole", "DaemonTaskRole", "WebserverTaskRole"):
        (statement,) = default.resources[_role_lid(default, name)]["Properties"]["AssumeRolePolicyDocument"][
            "Statement"
        ]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
