"""Read a deployed IntervalProcessing stack back with boto3, the way an operator would check a real account.

`deploy-local.sh` runs this after `cdk deploy` against the local emulator; the deploy test asserts on what it prints.
It reports what the services say exists, never what the template asked for, so a resource the emulator accepted in
the stack but did not create shows up as missing instead of passing silently (moto skips resource types its
CloudFormation does not implement and still reports CREATE_COMPLETE: see README.md, "Local deploy").

Usage: `python local_readback.py deployed` (JSON of the deployed stack) or `python local_readback.py leftovers`
(JSON of what the stack owned that still exists after `cdk destroy`). The endpoint, region and credentials come from
the standard AWS_* variables that deploy-local.sh sets.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError

STACK_NAME = "IntervalProcessing"


def _client(service: str) -> Any:
    return boto3.client(service)


def _physical_ids() -> dict[str, list[str]]:
    """Resource type -> physical ids of the stack's resources (what CloudFormation says it created)."""
    by_type: dict[str, list[str]] = {}
    paginator = _client("cloudformation").get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=STACK_NAME):
        for resource in page["StackResourceSummaries"]:
            by_type.setdefault(resource["ResourceType"], []).append(resource.get("PhysicalResourceId") or "")
    return by_type


def _s3_setting(call: Any, key: str, **kwargs: Any) -> Any:
    """One bucket setting, or None where S3 answers that it is not configured."""
    try:
        return call(**kwargs).get(key)
    except ClientError as error:
        if error.response["Error"]["Code"].startswith("NoSuch"):
            return None
        raise


def _bucket(name: str) -> dict[str, Any]:
    s3 = _client("s3")
    encryption = _s3_setting(s3.get_bucket_encryption, "ServerSideEncryptionConfiguration", Bucket=name) or {}
    return {
        "name": name,
        "encryption": [
            rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in encryption.get("Rules", [])
        ],
        "versioning": _s3_setting(s3.get_bucket_versioning, "Status", Bucket=name),
        "public_access_block": _s3_setting(s3.get_public_access_block, "PublicAccessBlockConfiguration", Bucket=name),
        "policy": _s3_setting(s3.get_bucket_policy, "Policy", Bucket=name),
        "lifecycle_rules": [
            rule["ID"] for rule in _s3_setting(s3.get_bucket_lifecycle_configuration, "Rules", Bucket=name) or []
        ],
    }


def _task_definition(family: str) -> dict[str, Any]:
    definition = _client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]
    # The Dagster container comes first; the operators' webserver task also has the audit-log printer.
    container = definition["containerDefinitions"][0]
    return {
        "family": definition["family"],
        "cpu": definition.get("cpu"),
        "memory": definition.get("memory"),
        "ephemeral_storage_gib": definition.get("ephemeralStorage", {}).get("sizeInGiB"),
        "execution_role_arn": definition.get("executionRoleArn"),
        "task_role_arn": definition.get("taskRoleArn"),
        "container": container["name"],
        "containers": [c["name"] for c in definition["containerDefinitions"]],
        "image": container["image"],
        "command": container.get("command"),
        "secrets": {secret["name"]: secret.get("valueFrom") for secret in container.get("secrets", [])},
        "environment": {variable["name"]: variable["value"] for variable in container.get("environment", [])},
        "log_group": container.get("logConfiguration", {}).get("options", {}).get("awslogs-group"),
    }


def _roles(role_names: list[str]) -> dict[str, dict[str, Any]]:
    """Role name -> its trust principals and its inline policies' statements (CDK puts grants in inline policies)."""
    iam = _client("iam")
    roles = {}
    for name in role_names:
        role = iam.get_role(RoleName=name)["Role"]
        statements = []
        for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
            if isinstance(document, str):
                document = json.loads(document)
            statements.extend(document["Statement"])
        roles[name] = {
            "trusted_services": [
                statement["Principal"].get("Service") for statement in role["AssumeRolePolicyDocument"]["Statement"]
            ],
            "statements": statements,
        }
    return roles


def _load_balancers(arns: list[str]) -> list[dict[str, Any]]:
    """Each load balancer with its attributes, listeners and their rules, as Elastic Load Balancing reports them."""
    elb = _client("elbv2")
    target_ports = {group["TargetGroupArn"]: group["Port"] for group in elb.describe_target_groups()["TargetGroups"]}

    def actions(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shown = []
        for action in sorted(listed, key=lambda a: a.get("Order", 0)):
            entry: dict[str, Any] = {"type": action["Type"]}
            if "AuthenticateOidcConfig" in action:
                entry.update(action["AuthenticateOidcConfig"])
            for key in ("RedirectConfig", "FixedResponseConfig"):
                entry.update(action.get(key, {}))
            if "TargetGroupArn" in action:
                entry["target_group_port"] = target_ports.get(action["TargetGroupArn"])
            shown.append(entry)
        return shown

    found = []
    for balancer in elb.describe_load_balancers(LoadBalancerArns=arns)["LoadBalancers"] if arns else []:
        arn = balancer["LoadBalancerArn"]
        listeners = {}
        for listener in elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]:
            rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
            listeners[str(listener["Port"])] = {
                "protocol": listener["Protocol"],
                "ssl_policy": listener.get("SslPolicy"),
                "certificates": [c["CertificateArn"] for c in listener.get("Certificates", [])],
                "default_actions": actions(listener["DefaultActions"]),
                "rules": {
                    ",".join(
                        host for c in rule["Conditions"] for host in c.get("HostHeaderConfig", {}).get("Values", [])
                    ): {
                        "priority": rule["Priority"],
                        "actions": actions(rule["Actions"]),
                    }
                    for rule in rules
                    if not rule["IsDefault"]
                },
            }
        found.append(
            {
                "name": balancer["LoadBalancerName"],
                "scheme": balancer["Scheme"],
                "attributes": {
                    attribute["Key"]: attribute["Value"]
                    for attribute in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
                },
                "listeners": listeners,
            }
        )
    return found


def deployed() -> dict[str, Any]:
    """Everything the deploy test checks, as the services report it."""
    ids = _physical_ids()
    stack = _client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    ec2 = _client("ec2")
    (vpc_id,) = ids["AWS::EC2::VPC"]
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    nat_gateways = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
    addresses = ec2.describe_addresses()["Addresses"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
    ecs = _client("ecs")
    clusters = ecs.describe_clusters(clusters=ids.get("AWS::ECS::Cluster", []))["clusters"]
    services = (
        ecs.describe_services(cluster=clusters[0]["clusterName"], services=ids.get("AWS::ECS::Service", []))["services"]
        if clusters
        else []
    )
    rds = _client("rds")
    databases = [
        rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        for identifier in ids.get("AWS::RDS::DBInstance", [])
    ]
    log_groups = _client("logs").describe_log_groups()["logGroups"]
    sns = _client("sns")
    topics = {arn: sns.get_topic_attributes(TopicArn=arn)["Attributes"] for arn in ids.get("AWS::SNS::Topic", [])}
    return {
        "stack_status": stack["StackStatus"],
        "outputs": {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])},
        "resource_types": sorted(ids),
        "buckets": [_bucket(name) for name in ids.get("AWS::S3::Bucket", [])],
        "ecr_repositories": [
            {
                "name": repository["repositoryName"],
                "scan_on_push": repository.get("imageScanningConfiguration", {}).get("scanOnPush"),
                "tag_mutability": repository.get("imageTagMutability"),
            }
            for repository in _client("ecr").describe_repositories(repositoryNames=ids["AWS::ECR::Repository"])[
                "repositories"
            ]
        ],
        "clusters": [cluster["clusterName"] for cluster in clusters],
        "services": {service["serviceName"]: service["desiredCount"] for service in services},
        "service_load_balancers": {service["serviceName"]: service.get("loadBalancers", []) for service in services},
        "load_balancers": _load_balancers(ids.get("AWS::ElasticLoadBalancingV2::LoadBalancer", [])),
        "target_groups": {
            group["TargetGroupName"]: [group["Port"], group["Protocol"], group.get("HealthCheckPath")]
            for group in _client("elbv2").describe_target_groups()["TargetGroups"]
        },
        "task_definitions": {
            arn.split("/")[-1].split(":")[0]: _task_definition(arn) for arn in ids.get("AWS::ECS::TaskDefinition", [])
        },
        "log_groups": {group["logGroupName"]: group.get("retentionInDays") for group in log_groups},
        "roles": _roles(ids.get("AWS::IAM::Role", [])),
        "vpc": {"cidr": vpc["CidrBlock"], "subnet_ids": sorted(subnet["SubnetId"] for subnet in subnets)},
        "nat_gateways": [
            [address.get("AllocationId") for address in gateway["NatGatewayAddresses"]] for gateway in nat_gateways
        ],
        "elastic_ips": {address["AllocationId"]: address["PublicIp"] for address in addresses},
        "security_groups": {
            group["GroupId"]: {
                "name": group["GroupName"],
                "ingress": len(group["IpPermissions"]),
                "egress": group["IpPermissionsEgress"],
            }
            for group in groups
        },
        "databases": [
            {"identifier": db["DBInstanceIdentifier"], "encrypted": db.get("StorageEncrypted")} for db in databases
        ],
        "secrets": [secret["Name"] for secret in _client("secretsmanager").list_secrets()["SecretList"]],
        "kms_keys": ids.get("AWS::KMS::Key", []),
        "topics": {
            arn.split(":")[-1]: {
                "kms_master_key_id": attributes.get("KmsMasterKeyId"),
                "policy": json.loads(attributes["Policy"]) if attributes.get("Policy") else None,
            }
            for arn, attributes in topics.items()
        },
        "alarms": [alarm["AlarmName"] for alarm in _client("cloudwatch").describe_alarms()["MetricAlarms"]],
    }


def leftovers(owned: dict[str, Any]) -> dict[str, Any]:
    """What of `owned` (a `deployed()` result from before `cdk destroy`) still exists afterwards."""
    stacks = [
        stack["StackName"]
        for stack in _client("cloudformation").list_stacks()["StackSummaries"]
        if stack["StackName"] == STACK_NAME and stack["StackStatus"] != "DELETE_COMPLETE"
    ]
    buckets = {bucket["Name"] for bucket in _client("s3").list_buckets()["Buckets"]}
    repositories = {repo["repositoryName"] for repo in _client("ecr").describe_repositories()["repositories"]}
    families = set(_client("ecs").list_task_definition_families(status="ACTIVE")["families"])
    clusters = {
        cluster["clusterName"]
        for cluster in _client("ecs").describe_clusters(clusters=owned["clusters"])["clusters"]
        if cluster["status"] == "ACTIVE"
    }
    log_groups = {group["logGroupName"] for group in _client("logs").describe_log_groups()["logGroups"]}
    roles = {role["RoleName"] for role in _client("iam").list_roles()["Roles"]}
    ec2 = _client("ec2")
    vpcs = {vpc["CidrBlock"] for vpc in ec2.describe_vpcs()["Vpcs"]}
    subnets = {subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"]}
    stack_groups = {group_id for group_id, group in owned["security_groups"].items() if group["name"] != "default"}
    groups = {group["GroupId"] for group in ec2.describe_security_groups()["SecurityGroups"]}
    databases = {db["DBInstanceIdentifier"] for db in _client("rds").describe_db_instances()["DBInstances"]}
    topics = {topic["TopicArn"].split(":")[-1] for topic in _client("sns").list_topics()["Topics"]}
    elb = _client("elbv2")
    balancers = {balancer["LoadBalancerName"] for balancer in elb.describe_load_balancers()["LoadBalancers"]}
    target_groups = {group["TargetGroupName"] for group in elb.describe_target_groups()["TargetGroups"]}
    return {
        "load_balancers": sorted(balancers & {balancer["name"] for balancer in owned["load_balancers"]}),
        "target_groups": sorted(target_groups & set(owned["target_groups"])),
        "stacks": stacks,
        "topics": sorted(topics & set(owned["topics"])),
        "buckets": sorted(buckets & {bucket["name"] for bucket in owned["buckets"]}),
        "ecr_repositories": sorted(repositories & {repo["name"] for repo in owned["ecr_repositories"]}),
        "clusters": sorted(clusters),
        "task_definition_families": sorted(families & set(owned["task_definitions"])),
        "log_groups": sorted(log_groups & set(owned["log_groups"])),
        "roles": sorted(roles & set(owned["roles"])),
        "vpcs": sorted(vpcs & {owned["vpc"]["cidr"]}),
        "subnets": sorted(subnets & set(owned["vpc"]["subnet_ids"])),
        "security_groups": sorted(groups & stack_groups),
        "databases": sorted(databases & {db["identifier"] for db in owned["databases"]}),
        "elastic_ips": sorted(
            address["AllocationId"]
            for address in ec2.describe_addresses()["Addresses"]
            if address["AllocationId"] in owned["elastic_ips"]
        ),
    }


def main(argv: list[str]) -> int:
    if argv[1:] == ["deployed"]:
        print(json.dumps(deployed(), indent=2, sort_keys=True, default=str))
        return 0
    if len(argv) == 3 and argv[1] == "leftovers":
        with open(argv[2]) as owned:
            print(json.dumps(leftovers(json.load(owned)), indent=2, sort_keys=True))
        return 0
    print("usage: local_readback.py deployed | leftovers DEPLOYED_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
