"""The report bucket, its access-log bucket, the ECR repository and the CI push group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.synthesis import Synthesized


def _bucket(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    lid = synth.logical_id(synth.stack.node.find_child("Storage").node.find_child("ReportsBucket"))
    return lid, synth.resources[lid]["Properties"]


def test_report_bucket_is_named_encrypted_with_bucket_key_private_and_versioned(default: Synthesized) -> None:
    _, props = _bucket(default)
    assert props["BucketName"] == "intervalprocessing"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"BucketKeyEnabled": True, "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "reports-bucket/"


def test_every_bucket_blocks_public_access_and_is_encrypted(default: Synthesized) -> None:
    buckets = default.of_type("AWS::S3::Bucket")
    assert len(buckets) == 2  # reports + access logs
    for bucket in buckets.values():
        assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
        assert "BucketEncryption" in bucket["Properties"]


def test_every_bucket_policy_denies_requests_without_tls(default: Synthesized) -> None:
    policies = default.of_type("AWS::S3::BucketPolicy")
    protected = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
                assert statement["Principal"] == {"AWS": "*"}
                protected.add(policy["Properties"]["Bucket"]["Ref"])
    assert protected == set(default.of_type("AWS::S3::Bucket"))


def test_no_bucket_policy_grants_anything_to_everyone(default: Synthesized) -> None:
    for policy in default.of_type("AWS::S3::BucketPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement["Principal"] != {"AWS": "*"} and statement["Principal"] != "*"


def test_compute_logs_expire_and_reports_do_not(default: Synthesized) -> None:
    _, props = _bucket(default)
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireComputeLogs"]["Prefix"] == "dagster/compute-logs/"
    assert rules["ExpireComputeLogs"]["ExpirationInDays"] == 30
    assert rules["ExpireComputeLogs"]["Status"] == "Enabled"
    # Only compute logs and step outputs lose current objects; reports lose old versions only.
    assert sorted(r["Id"] for r in rules.values() if "ExpirationInDays" in r) == [
        "ExpireComputeLogs",
        "ExpireStepOutputs",
    ]
    assert rules["ExpireOldReportVersions"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_step_outputs_expire_after_two_weeks_old_versions_after_a_day(default: Synthesized) -> None:
    _, props = _bucket(default)
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireStepOutputs"] == {
        "Id": "ExpireStepOutputs",
        "Prefix": "dagster/step-outputs/",
        "ExpirationInDays": 14,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "Status": "Enabled",
    }


def test_bucket_name_and_prefixes_come_from_context(variant: Synthesized) -> None:
    _, props = _bucket(variant)
    assert props["BucketName"] == "acme-intervalprocessing-reports"
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireComputeLogs"]["Prefix"] == "logs/dagster/"
    assert (rules["ExpireStepOutputs"]["Prefix"], rules["ExpireStepOutputs"]["ExpirationInDays"]) == ("outputs/", 3)


def test_buckets_and_repository_survive_stack_deletion(default: Synthesized) -> None:
    for resource_type in ("AWS::S3::Bucket", "AWS::ECR::Repository"):
        for resource in default.of_type(resource_type).values():
            assert resource["DeletionPolicy"] == "Retain"


def test_repository_is_private_scanned_immutable_with_lifecycle(default: Synthesized) -> None:
    assert not default.of_type("AWS::ECR::PublicRepository")
    _, repo = default.one("AWS::ECR::Repository")
    props = repo["Properties"]
    assert props["RepositoryName"] == "intervalprocessing"
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert props["ImageTagMutability"] == "IMMUTABLE"
    assert "RepositoryPolicyText" not in props  # no resource policy: nobody outside the account can pull
    assert '"tagStatus":"untagged"' in props["LifecyclePolicy"]["LifecyclePolicyText"]


def test_ci_group_can_push_only_to_the_one_repository(default: Synthesized) -> None:
    group_lid, group = default.one("AWS::IAM::Group")
    assert group["Properties"]["GroupName"] == "intervalprocessingusers"
    assert "ManagedPolicyArns" not in group["Properties"]  # no AmazonS3FullAccess, no other managed policy
    assert not default.of_type("AWS::IAM::User") and not default.of_type("AWS::IAM::AccessKey")
    repo_lid, _ = default.one("AWS::ECR::Repository")
    statements = [
        statement
        for policy in default.of_type("AWS::IAM::Policy").values()
        if {"Ref": group_lid} in policy["Properties"].get("Groups", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_resource = {str(s["Resource"]): s["Action"] for s in statements}
    assert by_resource.pop("*") == "ecr:GetAuthorizationToken"
    (resource, actions), *rest = by_resource.items()
    assert not rest
    assert repo_lid in resource
    assert {"ecr:PutImage", "ecr:BatchGetImage", "ecr:CompleteLayerUpload"} <= set(actions)


def test_an_empty_ci_group_name_creates_no_group_and_no_policy_for_it(synth_with: Callable[..., Synthesized]) -> None:
    without_group = synth_with(ciGroupName="")
    assert not without_group.of_type("AWS::IAM::Group")
    assert not [p for p in without_group.of_type("AWS::IAM::Policy").values() if "Groups" in p["Properties"]]
    assert not without_group.nag_violations
