"""Dagster's Postgres: encrypted, private, generated credentials, protected against deletion by default."""

from __future__ import annotations

from typing import Any

from tests.synthesis import Synthesized


def _instance(synth: Synthesized) -> dict[str, Any]:
    _, instance = synth.one("AWS::RDS::DBInstance")
    return instance


def test_postgres_is_encrypted_private_and_backed_up(default: Synthesized) -> None:
    props = _instance(default)["Properties"]
    assert props["Engine"] == "postgres"
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert props["BackupRetentionPeriod"] == 7
    assert props["DBName"] == "dagster"
    assert props["DBInstanceClass"] == "db.t4g.micro"
    assert props["MultiAZ"] is False
    assert props["DeletionProtection"] is True
    assert _instance(default)["DeletionPolicy"] == "Snapshot"


def test_postgres_lives_in_the_isolated_subnets(default: Synthesized) -> None:
    _, subnet_group = default.one("AWS::RDS::DBSubnetGroup")
    subnets = {s["Ref"] for s in subnet_group["Properties"]["SubnetIds"]}
    assert len(subnets) == 2 and all("DatabaseSubnet" in s for s in subnets)
    for subnet in subnets:
        assert default.resources[subnet]["Properties"]["MapPublicIpOnLaunch"] is False


def test_credentials_are_generated_into_secrets_manager(default: Synthesized) -> None:
    attachment_lid, attachment = default.one("AWS::SecretsManager::SecretTargetAttachment")
    secret = default.resources[attachment["Properties"]["SecretId"]["Ref"]]["Properties"]
    assert secret["Name"] == "intervalprocessing/dagster-postgres"
    generate = secret["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "password"
    assert '"username":"dagster"' in generate["SecretStringTemplate"]
    props = _instance(default)["Properties"]
    assert "{{resolve:secretsmanager:" in str(props["MasterUserPassword"])
    assert "MasterUserPassword" not in str(default.outputs)


def test_multi_az_and_deletion_protection_follow_context(variant: Synthesized) -> None:
    props = _instance(variant)["Properties"]
    assert props["MultiAZ"] is True
    assert props["DeletionProtection"] is False


def test_exported_postgres_logs_land_in_log_groups_with_retention(default: Synthesized) -> None:
    instance_lid, instance = default.one("AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert props["DBInstanceIdentifier"] == "intervalprocessing-dagster"
    groups = {
        g["Properties"]["LogGroupName"]: (lid, g["Properties"]["RetentionInDays"])
        for lid, g in default.of_type("AWS::Logs::LogGroup").items()
    }
    for export in props["EnableCloudwatchLogsExports"]:
        lid, retention = groups[f"/aws/rds/instance/intervalprocessing-dagster/{export}"]
        assert retention == 90
        assert lid in instance["DependsOn"]  # exists before RDS would create it without retention
