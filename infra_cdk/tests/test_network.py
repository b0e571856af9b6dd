"""VPC, NAT gateway and its Elastic IP, flow logs, and who may talk to whom."""

from __future__ import annotations

from typing import Any

import pytest

from tests.synthesis import Synthesized


def _group_id(synth: Synthesized, name: str) -> str:
    return synth.logical_id(synth.stack.node.find_child("Network").node.find_child(name))


def _ingress_rules(synth: Synthesized, group_lid: str) -> list[dict[str, Any]]:
    """Every ingress rule of a group, inline or as a separate resource."""
    inline = synth.resources[group_lid]["Properties"].get("SecurityGroupIngress", [])
    separate = [
        r["Properties"]
        for r in synth.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_lid, "GroupId"]}
    ]
    return inline + separate


def _egress_rules(synth: Synthesized, group_lid: str) -> list[dict[str, Any]]:
    inline = synth.resources[group_lid]["Properties"].get("SecurityGroupEgress", [])
    separate = [
        r["Properties"]
        for r in synth.of_type("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_lid, "GroupId"]}
    ]
    return inline + separate


def test_vpc_spans_two_azs_with_public_private_and_isolated_subnets(default: Synthesized) -> None:
    default.template.resource_count_is("AWS::EC2::VPC", 1)
    default.template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.40.0.0/16"})
    subnets = default.of_type("AWS::EC2::Subnet").values()
    assert len(subnets) == 6
    kinds = sorted(
        next(t["Value"] for t in s["Properties"]["Tags"] if t["Key"] == "aws-cdk:subnet-name") for s in subnets
    )
    assert kinds == ["Database", "Database", "Private", "Private", "Public", "Public"]
    assert {str(s["Properties"]["AvailabilityZone"]) for s in subnets} == {
        str({"Fn::Select": [i, {"Fn::GetAZs": ""}]}) for i in (0, 1)
    }  # environment-agnostic: AZs resolved at deploy time, no lookup


def test_one_nat_gateway_uses_the_one_elastic_ip_and_the_ip_is_an_output(default: Synthesized) -> None:
    eip_lid, _ = default.one("AWS::EC2::EIP")
    _, nat = default.one("AWS::EC2::NatGateway")
    assert nat["Properties"]["AllocationId"] == {"Fn::GetAtt": [eip_lid, "AllocationId"]}
    assert default.outputs["NatElasticIp"]["Value"] == {"Fn::GetAtt": [eip_lid, "PublicIp"]}


def test_private_subnets_route_out_through_the_nat_and_isolated_ones_not_at_all(default: Synthesized) -> None:
    nat_lid, _ = default.one("AWS::EC2::NatGateway")
    routes = default.of_type("AWS::EC2::Route").values()
    nat_routes = [r for r in routes if r["Properties"].get("NatGatewayId") == {"Ref": nat_lid}]
    assert len(nat_routes) == 2  # one per private subnet
    default_routes = [r for r in routes if r["Properties"]["DestinationCidrBlock"] == "0.0.0.0/0"]
    assert len(default_routes) == 4  # 2 public via the IGW + 2 private via the NAT; the database tier has none


def test_vpc_flow_logs_go_to_a_log_group_with_retention(default: Synthesized) -> None:
    default.template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL", "ResourceType": "VPC"})
    default.template.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/vpc/IntervalProcessing-FlowLogs", "RetentionInDays": 90}
    )


def test_postgres_is_reachable_only_from_the_dagster_tasks_on_5432(default: Synthesized) -> None:
    db = _group_id(default, "DagsterDatabaseSecurityGroup")
    tasks = _group_id(default, "DagsterTasksSecurityGroup")
    webserver = _group_id(default, "DagsterWebserverSecurityGroup")
    rules = _ingress_rules(default, db)
    assert {(r["FromPort"], r["ToPort"], r["IpProtocol"]) for r in rules} == {(5432, 5432, "tcp")}
    assert {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules} == {tasks, webserver}
    assert not any("CidrIp" in r for r in rules)
    db_instance = next(iter(default.of_type("AWS::RDS::DBInstance").values()))
    assert db_instance["Properties"]["VPCSecurityGroups"] == [{"Fn::GetAtt": [db, "GroupId"]}]


def test_dagster_task_groups_accept_nothing_and_send_only_https_mongo_and_postgres(default: Synthesized) -> None:
    db = _group_id(default, "DagsterDatabaseSecurityGroup")
    for name in ("DagsterTasksSecurityGroup", "DagsterWebserverSecurityGroup"):
        group = _group_id(default, name)
        assert _ingress_rules(default, group) == []
        egress = {
            (r["FromPort"], r["ToPort"], r.get("CidrIp") or r["DestinationSecurityGroupId"]["Fn::GetAtt"][0])
            for r in _egress_rules(default, group)
        }
        assert egress == {(443, 443, "0.0.0.0/0"), (27015, 27017, "0.0.0.0/0"), (5432, 5432, db)}


def test_only_an_internet_facing_load_balancer_is_open_to_the_internet(
    default: Synthesized, variant: Synthesized, oidc: Synthesized
) -> None:
    for synth in (default, variant, oidc):
        for group_lid in synth.of_type("AWS::EC2::SecurityGroup"):
            for rule in _ingress_rules(synth, group_lid):
                if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
                    assert synth is variant and group_lid == _group_id(variant, "WebserverLoadBalancerSecurityGroup")
                    assert rule["FromPort"] in (80, 443)


@pytest.mark.parametrize(("configuration", "allowed"), [("variant", "0.0.0.0/0"), ("oidc", "10.99.0.0/16")])
def test_the_load_balancer_admits_only_the_allowed_network_and_reaches_only_the_webservers_and_the_idp(
    configuration: str, allowed: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    _, alb = synth.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
    (alb_sg,) = [ref["Fn::GetAtt"][0] for ref in alb["Properties"]["SecurityGroups"]]
    assert alb_sg == _group_id(synth, "WebserverLoadBalancerSecurityGroup")
    assert sorted((r["CidrIp"], r["FromPort"]) for r in _ingress_rules(synth, alb_sg)) == [
        (allowed, 80),
        (allowed, 443),
    ]
    egress = {
        (r["FromPort"], r.get("CidrIp") or r["DestinationSecurityGroupId"]["Fn::GetAtt"][0])
        for r in _egress_rules(synth, alb_sg)
    }
    # The two webservers (one group) on 3000, and HTTPS out to the identity provider's token and user-info endpoints.
    assert egress == {(3000, _group_id(synth, "DagsterWebserverSecurityGroup")), (443, "0.0.0.0/0")}
    webserver_in = _ingress_rules(synth, _group_id(synth, "DagsterWebserverSecurityGroup"))
    assert [(r["SourceSecurityGroupId"]["Fn::GetAtt"][0], r["FromPort"]) for r in webserver_in] == [(alb_sg, 3000)]
    assert _ingress_rules(synth, _group_id(synth, "DagsterTasksSecurityGroup")) == []
    for target_group in synth.of_type("AWS::ElasticLoadBalancingV2::TargetGroup").values():
        assert (target_group["Properties"]["Port"], target_group["Properties"]["HealthCheckPath"]) == (
            3000,
            "/server_info",
        )


def test_no_load_balancer_by_default(default: Synthesized) -> None:
    default.template.resource_count_is("AWS::ElasticLoadBalancingV2::LoadBalancer", 0)
    assert not {"ViewerUrl", "OperatorUrl", "LoadBalancerDnsName"} & set(default.outputs)
