"""The alerts topic: encrypted with a key CloudWatch may use, TLS-only, published to by the daemon and the alarms."""

from __future__ import annotations

from typing import Any

import pytest

from tests.synthesis import Synthesized


def _topic(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    lid, topic = synth.one("AWS::SNS::Topic")
    return lid, topic["Properties"]


def _topic_statements(synth: Synthesized) -> list[dict[str, Any]]:
    topic_lid, _ = _topic(synth)
    _, policy = synth.one("AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_lid}]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _role_lid(synth: Synthesized, name: str) -> str:
    return synth.logical_id(synth.stack.node.find_child("DagsterServices").node.find_child(name))


def _alarms(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Alarm name -> properties."""
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in synth.of_type("AWS::CloudWatch::Alarm").values()}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_topic_is_encrypted_with_a_rotated_customer_managed_key(default: Synthesized) -> None:
    _, topic = _topic(default)
    key_lid, key = default.one("AWS::KMS::Key")
    # Not alias/aws/sns: CloudWatch alarms cannot use the AWS-managed key, and its policy cannot be changed.
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_lid, "Arn"]}
    assert topic["TopicName"] == "intervalprocessing-alerts"
    assert key["Properties"]["EnableKeyRotation"] is True


def test_key_lets_cloudwatch_of_this_account_encrypt_alarm_messages(default: Synthesized) -> None:
    _, key = default.one("AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow"
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # Every other statement is CDK's default account-root statement (IAM policies decide, as for other keys).
    others = [s for s in statements if s is not cloudwatch]
    assert [s["Principal"]["AWS"]["Fn::Join"][1][-1] for s in others] == [":root"]


def test_topic_policy_denies_publishing_without_tls(default: Synthesized) -> None:
    topic_lid, _ = _topic(default)
    denies = [s for s in _topic_statements(default) if s["Effect"] == "Deny"]
    assert denies == [
        {
            "Sid": "AllowPublishThroughSSLOnly",
            "Action": "sns:Publish",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": "*",
            "Resource": {"Ref": topic_lid},
        }
    ]


def test_topic_policy_allows_only_this_stacks_alarms_besides_iam(default: Synthesized) -> None:
    topic_lid, _ = _topic(default)
    (allow,) = [s for s in _topic_statements(default) if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish" and allow["Resource"] == {"Ref": topic_lid}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    *_, alarm_pattern = allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert alarm_pattern == ":alarm:intervalprocessing-*"
    # ... and that pattern covers every alarm: a renamed alarm could no longer publish.
    assert all(name.startswith("intervalprocessing-") for name in _alarms(default))


def test_only_the_daemon_role_may_publish_and_only_through_sns(default: Synthesized) -> None:
    topic_lid, _ = _topic(default)
    key_lid, _ = default.one("AWS::KMS::Key")
    publishers: dict[str, list[dict[str, Any]]] = {}
    key_users: dict[str, list[dict[str, Any]]] = {}
    for policy in default.of_type("AWS::IAM::Policy").values():
        attached = [r["Ref"] for r in policy["Properties"].get("Roles", []) + policy["Properties"].get("Groups", [])]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = _as_list(statement["Action"])
            resources = _as_list(statement["Resource"])
            if any(action.startswith("sns:") for action in actions) or {"Ref": topic_lid} in resources:
                for principal in attached:
                    publishers.setdefault(principal, []).append(statement)
            if {"Fn::GetAtt": [key_lid, "Arn"]} in resources or any(a.startswith("kms:") for a in actions):
                for principal in attached:
                    key_users.setdefault(principal, []).append(statement)
    daemon = _role_lid(default, "DaemonTaskRole")
    assert set(publishers) == {daemon} and set(key_users) == {daemon}
    (publish,) = publishers[daemon]
    assert (publish["Action"], publish["Resource"]) == ("sns:Publish", {"Ref": topic_lid})
    (encrypt,) = key_users[daemon]
    assert sorted(encrypt["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert encrypt["Resource"] == {"Fn::GetAtt": [key_lid, "Arn"]}
    assert encrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Join": ["", ["sns.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    }


def test_no_subscription_without_alert_email(default: Synthesized) -> None:
    default.template.resource_count_is("AWS::SNS::Subscription", 0)


def test_alert_email_subscribes_that_address(variant: Synthesized) -> None:
    topic_lid, _ = _topic(variant)
    _, subscription = variant.one("AWS::SNS::Subscription")
    assert subscription["Properties"] == {
        "Endpoint": "oncall@example.com",
        "Protocol": "email",
        "TopicArn": {"Ref": topic_lid},
    }


@pytest.mark.parametrize(
    ("alarm_name", "service_construct"),
    [
        ("intervalprocessing-DaemonNoRunningTask", "DaemonService"),
        ("intervalprocessing-WebserverNoRunningTask", "WebserverService"),
    ],
)
def test_alarm_fires_when_the_service_has_had_no_running_task_for_five_minutes(
    default: Synthesized, alarm_name: str, service_construct: str
) -> None:
    services = default.stack.node.find_child("DagsterServices")
    topic_lid, _ = _topic(default)
    alarm = _alarms(default)[alarm_name]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("ECS/ContainerInsights", "RunningTaskCount")
    assert alarm["Dimensions"] == [
        {"Name": "ClusterName", "Value": {"Ref": default.logical_id(services.cluster)}},
        {
            "Name": "ServiceName",
            "Value": {"Fn::GetAtt": [default.logical_id(services.node.find_child(service_construct)), "Name"]},
        },
    ]
    assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 60)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 5)
    assert alarm["TreatMissingData"] == "breaching"  # no metric at all also means no task
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_lid}]
    assert alarm["ActionsEnabled"] is True
    assert "InsufficientDataActions" not in alarm


ALARMS = ("DaemonNoRunningTask", "WebserverNoRunningTask", "DatabaseFreeStorageLow", "DatabaseCpuCreditsLow")


def test_exactly_these_alarms(default: Synthesized) -> None:
    assert set(_alarms(default)) == {f"intervalprocessing-{name}" for name in ALARMS}


def test_task_alarms_stay_quiet_while_the_services_are_stopped_on_purpose(synth_with: Any) -> None:
    stopped: Synthesized = synth_with(startServices="false")
    enabled = {name: alarm["ActionsEnabled"] for name, alarm in _alarms(stopped).items()}
    assert enabled == {
        "intervalprocessing-DaemonNoRunningTask": False,
        "intervalprocessing-WebserverNoRunningTask": False,
        "intervalprocessing-DatabaseFreeStorageLow": True,  # the database runs either way
        "intervalprocessing-DatabaseCpuCreditsLow": True,
    }


def test_alarm_names_follow_the_cluster_name(synth_with: Any) -> None:
    renamed: Synthesized = synth_with(clusterName="acme")
    assert set(_alarms(renamed)) == {f"acme-{name}" for name in ALARMS}
    (allow,) = [s for s in _topic_statements(renamed) if s["Effect"] == "Allow"]
    assert allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1][-1] == ":alarm:acme-*"
    assert renamed.nag_violations == []
