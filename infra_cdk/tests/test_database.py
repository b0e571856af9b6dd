"""Dagster's Postgres: encrypted, private, generated credentials, protected against deletion by default, and
alarms on the alerts topic before it runs out of storage or CPU credits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.synthesis import Synthesized

GIB = 1024**3


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


def _alarm(synth: Synthesized, name: str) -> dict[str, Any] | None:
    alarms = {r["Properties"]["AlarmName"]: r["Properties"] for r in synth.of_type("AWS::CloudWatch::Alarm").values()}
    return alarms.get(f"intervalprocessing-{name}")


def _notifies_the_alerts_topic(synth: Synthesized, alarm: dict[str, Any]) -> None:
    topic_lid, _ = synth.one("AWS::SNS::Topic")
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_lid}]
    assert alarm["ActionsEnabled"] is True
    instance_lid, _ = synth.one("AWS::RDS::DBInstance")
    assert alarm["Dimensions"] == [{"Name": "DBInstanceIdentifier", "Value": {"Ref": instance_lid}}]
    assert (alarm["Namespace"], alarm["Statistic"], alarm["Period"]) == ("AWS/RDS", "Minimum", 300)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert alarm["TreatMissingData"] == "missing"


@pytest.mark.parametrize(("context", "allocated_gib"), [({}, 20), ({"dbAllocatedStorageGib": "100"}, 100)])
def test_free_storage_alarm_fires_below_a_quarter_of_the_allocation(
    synth_with: Any, context: dict[str, str], allocated_gib: int
) -> None:
    synth: Synthesized = synth_with(**context)
    alarm = _alarm(synth, "DatabaseFreeStorageLow")
    assert alarm is not None
    _notifies_the_alerts_topic(synth, alarm)
    assert alarm["MetricName"] == "FreeStorageSpace"
    # Before RDS storage autoscaling (below 10% free) steps in.
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", allocated_gib * GIB // 4)
    assert f"{allocated_gib // 4:g} GiB free of the {allocated_gib} GiB" in alarm["AlarmDescription"]


def test_cpu_credit_alarm_watches_burstable_classes_only(default: Synthesized, synth_with: Any) -> None:
    alarm = _alarm(default, "DatabaseCpuCreditsLow")
    assert alarm is not None
    _notifies_the_alerts_topic(default, alarm)
    assert alarm["MetricName"] == "CPUCreditBalance"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 50)
    # A class without CPU credits has no such metric: no alarm that could never fire.
    assert _alarm(synth_with(dbInstanceType="m7g.large"), "DatabaseCpuCreditsLow") is None


def _task_containers(synth: Synthesized, family: str) -> dict[str, dict[str, Any]]:
    (definition,) = [
        r["Properties"]
        for r in synth.of_type("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["Family"] == family
    ]
    return {c["Name"]: c for c in definition["ContainerDefinitions"]}


def _secret_of(container: dict[str, Any], name: str) -> Any:
    (value,) = [s["ValueFrom"] for s in container["Secrets"] if s["Name"] == name]
    return value


def test_the_viewers_webserver_connects_as_its_own_read_only_role_with_its_own_secret(
    variant: Synthesized, oidc: Synthesized
) -> None:
    for synth in (variant, oidc):
        database = synth.stack.node.find_child("DagsterDatabase")
        viewer_secret = synth.logical_id(database.viewer_secret)
        generate = synth.resources[viewer_secret]["Properties"]["GenerateSecretString"]
        assert json.loads(generate["SecretStringTemplate"]) == {"username": "dagster_viewer"}
        assert generate["GenerateStringKey"] == "password" and "SecretString" not in synth.resources[viewer_secret]
        viewer_password = {"Fn::Join": ["", [{"Ref": viewer_secret}, ":password::"]]}
        (viewer,) = _task_containers(synth, "IntervalProcessing-Viewer").values()
        environment = {e["Name"]: e["Value"] for e in viewer["Environment"]}
        assert environment["DAGSTER_PG_USERNAME"] == "dagster_viewer"
        assert _secret_of(viewer, "DAGSTER_PG_PASSWORD") == viewer_password
        # Everyone else keeps the instance's own role and never sees the viewer's password.
        for family in ("IntervalProcessing-Webserver", "IntervalProcessing-Run"):
            for container in _task_containers(synth, family).values():
                assert "DAGSTER_VIEWER_PG_PASSWORD" not in str(container)
                if container.get("Secrets"):
                    assert _secret_of(container, "DAGSTER_PG_PASSWORD") != viewer_password


def test_the_daemon_task_makes_the_role_before_the_daemon_starts(variant: Synthesized) -> None:
    containers = _task_containers(variant, "IntervalProcessing-Daemon")
    assert list(containers) == ["daemon", "viewer-role"]
    daemon, viewer_role = containers["daemon"], containers["viewer-role"]
    assert viewer_role["Command"] == ["intervalprocessing-viewer-role"]
    assert viewer_role["Essential"] is False  # it exits when done
    assert daemon["DependsOn"] == [{"Condition": "SUCCESS", "ContainerName": "viewer-role"}]
    viewer_secret = variant.logical_id(variant.stack.node.find_child("DagsterDatabase").viewer_secret)
    assert _secret_of(viewer_role, "DAGSTER_VIEWER_PG_PASSWORD") == {
        "Fn::Join": ["", [{"Ref": viewer_secret}, ":password::"]]
    }
    # It connects as the instance's role (the one that owns Dagster's tables) through the same dagster.yaml.
    assert _secret_of(viewer_role, "DAGSTER_PG_PASSWORD") == _secret_of(daemon, "DAGSTER_PG_PASSWORD")
    assert "DAGSTER_VIEWER_PG_PASSWORD" not in str(daemon)


def test_without_the_load_balancer_there_is_no_viewer_role(default: Synthesized) -> None:
    assert default.stack.node.find_child("DagsterDatabase").viewer_secret is None
    assert list(_task_containers(default, "IntervalProcessing-Daemon")) == ["daemon"]
