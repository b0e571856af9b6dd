"""The outputs are a contract with the operator and the Dagster deployment: exact names, right values."""

from __future__ import annotations

from tests.synthesis import Synthesized

CONTRACT_OUTPUTS = {
    "NatElasticIp",
    "ReportsBucketName",
    "EcrRepositoryUri",
    "EcsClusterName",
    "RunTaskDefinitionArn",
    "RunSubnetIds",
    "RunSecurityGroupIds",
    "MongoUriSecretArn",
    "DagsterDbSecretArn",
    "DagsterDbEndpoint",
    "AlertsTopicArn",
}


def test_outputs_are_exactly_the_contract(default: Synthesized, variant: Synthesized, oidc: Synthesized) -> None:
    assert set(default.outputs) == CONTRACT_OUTPUTS
    ui = {"ViewerUrl", "OperatorUrl", "LoadBalancerDnsName"}
    assert set(variant.outputs) == CONTRACT_OUTPUTS | ui | {"UserPoolId"}  # Cognito: where people are added
    assert set(oidc.outputs) == CONTRACT_OUTPUTS | ui
    assert variant.outputs["OperatorUrl"]["Value"] == "https://dagster-ops.example.com"
    assert variant.outputs["ViewerUrl"]["Value"] == "https://dagster.example.com"
    balancer, _ = variant.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert variant.outputs["LoadBalancerDnsName"]["Value"] == {"Fn::GetAtt": [balancer, "DNSName"]}
    pool, _ = variant.one("AWS::Cognito::UserPool")
    assert variant.outputs["UserPoolId"]["Value"] == {"Ref": pool}


def test_outputs_point_at_the_resources_the_tasks_use(default: Synthesized) -> None:
    services = default.stack.node.find_child("DagsterServices")
    run_environment = {
        e["Name"]: e["Value"]
        for e in default.resources[default.logical_id(services.run_task_definition)]["Properties"][
            "ContainerDefinitions"
        ][0]["Environment"]
    }
    value = {name: output["Value"] for name, output in default.outputs.items()}
    assert value["RunTaskDefinitionArn"] == {"Ref": default.logical_id(services.run_task_definition)}
    assert (
        value["EcsClusterName"]
        == {"Ref": default.logical_id(services.cluster)}
        == run_environment["DAGSTER_ECS_CLUSTER"]
    )
    assert value["RunSubnetIds"] == run_environment["DAGSTER_RUN_SUBNETS"]
    assert value["RunSecurityGroupIds"] == run_environment["DAGSTER_RUN_SECURITY_GROUPS"]
    assert value["ReportsBucketName"] == run_environment["REPORTS_S3_BUCKET"]
    assert value["DagsterDbEndpoint"] == run_environment["DAGSTER_PG_HOST"]
    assert value["MongoUriSecretArn"] == {"Ref": default.logical_id(default.stack.mongo_uri_secret)}
    attachment, _ = default.one("AWS::SecretsManager::SecretTargetAttachment")
    assert value["DagsterDbSecretArn"] == {"Ref": attachment}
    repo, _ = default.one("AWS::ECR::Repository")
    assert repo in str(value["EcrRepositoryUri"])
    topic, _ = default.one("AWS::SNS::Topic")
    daemon_environment = {
        e["Name"]: e["Value"]
        for e in default.resources[default.logical_id(services.daemon_service.task_definition)]["Properties"][
            "ContainerDefinitions"
        ][0]["Environment"]
    }
    assert value["AlertsTopicArn"] == {"Ref": topic} == daemon_environment["ALERTS_SNS_TOPIC_ARN"]


def test_run_subnets_are_the_two_private_subnets_comma_separated(default: Synthesized) -> None:
    separator, (first, comma, second) = default.outputs["RunSubnetIds"]["Value"]["Fn::Join"]
    assert (separator, comma) == ("", ",")
    subnets = [first["Ref"], second["Ref"]]
    assert all("PrivateSubnet" in s for s in subnets) and subnets[0] != subnets[1]
