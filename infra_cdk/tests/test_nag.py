"""cdk-nag's AwsSolutions pack: no finding left unacknowledged, and every acknowledgment says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from stacks.intervalprocessing_stack import IntervalProcessingStack
from tests.synthesis import Synthesized, synthesize


@pytest.mark.parametrize("configuration", ["default", "variant", "oidc"])
def test_no_unacknowledged_awssolutions_finding(configuration: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    assert synth.nag_violations == []


@pytest.mark.parametrize("configuration", ["default", "variant", "oidc"])
def test_every_acknowledgment_carries_a_reason(configuration: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    acknowledged = {
        (construct.node.path, rule): reason
        for construct in synth.stack.node.find_all()
        for entry in construct.node.metadata
        if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule, reason in entry.data.items()
        if "AwsSolutions-" in rule
    }
    assert acknowledged
    for (path, rule), reason in acknowledged.items():
        assert len(reason.split()) >= 8, f"{rule} on {path}: reason too thin: {reason!r}"


def test_a_finding_nobody_acknowledged_is_reported(tmp_path: Path) -> None:
    """The check is live: an unlogged, TLS-optional bucket and a wildcard policy fail it."""

    def add_bad_resources(stack: IntervalProcessingStack) -> None:
        s3.Bucket(stack, "CarelessBucket")
        role = iam.Role(stack, "CarelessRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
        role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))

    synth = synthesize(tmp_path, extend=add_bad_resources)
    findings = {
        (v["ruleName"], construct["constructPath"])
        for v in synth.nag_violations
        for construct in v["violatingConstructs"]
    }
    assert ("AwsSolutions-S1", "IntervalProcessing/CarelessBucket/Resource") in findings
    assert ("AwsSolutions-S10", "IntervalProcessing/CarelessBucket/Resource") in findings
    assert any(rule.startswith("AwsSolutions-IAM5") and "CarelessRole" in path for rule, path in findings)
    assert all("Careless" in path for _, path in findings)  # and nothing of the real stack
