"""The audit trail of the operators' UI: its log group (kept six years, apart from the application logs, kept when
the stack goes), the webserver running inside the sign-on and audit wrapper, the container that carries its lines
into that group, and a webserver that only the load balancer can reach (so no request skips the sign-in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stacks.dagster_services import AUDIT_CONTAINER_NAME, AUDIT_FILE, AUDIT_FOLDER, AUDIT_LOG_GROUP_NAME
from tests.synthesis import Synthesized

OPERATOR_FAMILY = "IntervalProcessing-Webserver"


def _containers(synth: Synthesized, family: str) -> dict[str, dict[str, Any]]:
    (definition,) = [
        r["Properties"]
        for r in synth.of_type("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["Family"] == family
    ]
    return {c["Name"]: {**c, "Volumes": definition.get("Volumes", [])} for c in definition["ContainerDefinitions"]}


def _audit_group(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r)
        for lid, r in synth.of_type("AWS::Logs::LogGroup").items()
        if r["Properties"].get("LogGroupName") == AUDIT_LOG_GROUP_NAME
    ]
    return found


def test_the_audit_log_group_keeps_six_years_by_default_and_outlives_the_stack(default: Synthesized) -> None:
    _, group = _audit_group(default)
    assert group["Properties"]["RetentionInDays"] == 2192
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_the_audit_retention_comes_from_context(synth_with: Callable[..., Synthesized]) -> None:
    synth = synth_with(auditLogRetentionDays="3653", logRetentionDays="30")
    assert _audit_group(synth)[1]["Properties"]["RetentionInDays"] == 3653
    others = {
        r["Properties"]["RetentionInDays"]
        for r in synth.of_type("AWS::Logs::LogGroup").values()
        if r["Properties"].get("LogGroupName") != AUDIT_LOG_GROUP_NAME
    }
    assert others == {30}


@pytest.mark.parametrize("configuration", ["default", "variant", "oidc"])
def test_the_operators_webserver_runs_the_wrapper_and_its_lines_go_to_the_audit_group(
    configuration: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    containers = _containers(synth, OPERATOR_FAMILY)
    assert set(containers) == {"webserver", AUDIT_CONTAINER_NAME}
    webserver, printer = containers["webserver"], containers[AUDIT_CONTAINER_NAME]
    assert webserver["Command"][0] == "intervalprocessing-webserver"
    environment = {e["Name"]: e["Value"] for e in webserver["Environment"]}
    assert environment["WEBSERVER_AUDIT_LOG"] == AUDIT_FILE
    # One task volume: the webserver writes the file, the printer only reads it.
    assert [v["Name"] for v in webserver["Volumes"]] == ["audit"]
    assert webserver["MountPoints"] == [{"ContainerPath": AUDIT_FOLDER, "ReadOnly": False, "SourceVolume": "audit"}]
    assert printer["MountPoints"] == [{"ContainerPath": AUDIT_FOLDER, "ReadOnly": True, "SourceVolume": "audit"}]
    assert printer["Command"] == ["tail", "-n", "+1", "-F", AUDIT_FILE]
    assert printer["Essential"] is True  # no printer, no webserver: no change goes unrecorded
    assert printer["Image"] == webserver["Image"]
    assert not printer.get("Secrets") and not printer.get("Environment")
    group_lid, _ = _audit_group(synth)
    assert printer["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": group_lid}
    assert webserver["LogConfiguration"]["Options"]["awslogs-group"] != {"Ref": group_lid}
    # The viewers' read-only webserver changes nothing: plain dagster-webserver, no audit file.
    for family in ("IntervalProcessing-Viewer",) if configuration != "default" else ():
        (viewer,) = _containers(synth, family).values()
        assert viewer["Command"][0] == "dagster-webserver" and not viewer.get("MountPoints")


def test_with_the_load_balancer_the_webserver_requires_its_signed_token(
    variant: Synthesized, oidc: Synthesized
) -> None:
    for synth in (variant, oidc):
        balancer, _ = synth.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
        webserver = _containers(synth, OPERATOR_FAMILY)["webserver"]
        environment = {e["Name"]: e["Value"] for e in webserver["Environment"]}
        assert environment["WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN"] == {"Ref": balancer}
        if synth is oidc:  # the operators' OIDC client; with Cognito, the pool's operator client
            assert environment["WEBSERVER_SIGN_ON_CLIENT_ID"] == "operator-client-id"
        else:
            (operator_client,) = [
                lid
                for lid, r in synth.of_type("AWS::Cognito::UserPoolClient").items()
                if r["Properties"]["ClientName"] == "operator"
            ]
            assert environment["WEBSERVER_SIGN_ON_CLIENT_ID"] == {"Ref": operator_client}
        assert environment["WEBSERVER_SIGN_ON_KEY_ENDPOINT"] == {
            "Fn::Join": ["", ["https://public-keys.auth.elb.", {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}]]
        }


def test_without_the_load_balancer_there_is_no_sign_on_to_require(default: Synthesized) -> None:
    webserver = _containers(default, OPERATOR_FAMILY)["webserver"]
    assert not any(e["Name"].startswith("WEBSERVER_SIGN_ON_") for e in webserver["Environment"])


def _ingress_into(synth: Synthesized, group: dict[str, Any]) -> list[dict[str, Any]]:
    lid = group["Fn::GetAtt"][0]
    inline = synth.resources[lid]["Properties"].get("SecurityGroupIngress", [])
    separate = [
        r["Properties"]
        for r in synth.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == group
    ]
    return inline + separate


def test_the_operators_service_takes_traffic_only_from_the_load_balancer(
    variant: Synthesized, oidc: Synthesized, default: Synthesized
) -> None:
    for synth in (variant, oidc):
        (service,) = [
            r["Properties"]
            for r in synth.of_type("AWS::ECS::Service").values()
            if r["Properties"]["ServiceName"] == "dagster-webserver"
        ]
        network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
        (balancer_group,) = synth.one("AWS::ElasticLoadBalancingV2::LoadBalancer")[1]["Properties"]["SecurityGroups"]
        rules = [rule for group in network["SecurityGroups"] for rule in _ingress_into(synth, group)]
        assert rules and all(
            (rule["SourceSecurityGroupId"], rule["FromPort"], rule["ToPort"], rule["IpProtocol"])
            == (balancer_group, 3000, 3000, "tcp")
            for rule in rules
        ), rules
        # ... and the load balancer forwards to it only after the operator sign-in (test_web_access.py)
        assert service["LoadBalancers"] == [
            {
                "ContainerName": "webserver",
                "ContainerPort": 3000,
                "TargetGroupArn": service["LoadBalancers"][0]["TargetGroupArn"],
            }
        ]
    (service,) = [
        r["Properties"]
        for r in default.of_type("AWS::ECS::Service").values()
        if r["Properties"]["ServiceName"] == "dagster-webserver"
    ]
    groups = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    assert [rule for group in groups for rule in _ingress_into(default, group)] == []  # SSM port forwarding only
