"""Where the project's artifacts live: the report bucket (also holding compute logs and step outputs) and the image
repository.

Replaces the guide's "S3 Bucket", "ECR" and "IAM" parts, minus what made them unsafe: the bucket was public, the
repository public, and the `intervalprocessingusers` group had `AmazonS3FullAccess` plus wildcard ECR rights.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, CfnCondition, CfnMapping, Duration, Fn, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.region_info import RegionInfo
from constructs import Construct

from stacks.config import DeploymentConfig

#: The mapping's value for a region whose load balancers deliver logs as a service principal, not from an account.
_NO_ACCOUNT = "none"


class Storage(Construct):
    """Report bucket (private, TLS-only, versioned, SSE-S3; also holding compute logs and step outputs), its
    access-log bucket, the ECR repository, the CI group."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self._reports_folder = config.reports_folder
        self._compute_logs_folder = config.compute_logs_folder
        self._step_outputs_folder = config.step_outputs_folder

        self.access_logs_bucket = access_logs = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(access_logs).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log destination of the report bucket; logging it into itself "
                "would log its own log deliveries.",
            )
        )

        self.reports_bucket = s3.Bucket(
            self,
            "ReportsBucket",
            bucket_name=config.reports_bucket_name,
            # SSE-S3 with a bucket key, as the old guide asked; no KMS key to manage or pay per request for.
            encryption=s3.BucketEncryption.S3_MANAGED,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # Versioned: a re-run that rewrites a report's deterministic key keeps the earlier bytes recoverable.
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="reports-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireComputeLogs",
                    prefix=config.compute_logs_folder,
                    expiration=Duration.days(config.compute_logs_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                # Step outputs only serve re-execution of recent runs; the bucket is versioned, so overwritten
                # outputs (an asset's stored value) are dropped after a day too.
                s3.LifecycleRule(
                    id="ExpireStepOutputs",
                    prefix=config.step_outputs_folder,
                    expiration=Duration.days(config.step_outputs_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="ExpireOldReportVersions",
                    noncurrent_version_expiration=Duration.days(90),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # Private, scanned, immutable: a tag names one image forever, so a task definition revision always runs the
        # image it was deployed with. (Hence releases push a new tag and deploy with `-c imageTag=...`.)
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=config.ecr_repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    rule_priority=1,
                    description="Untagged layers left by failed or superseded pushes",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(14),
                ),
                ecr.LifecycleRule(
                    rule_priority=2,
                    description="Keep the last 50 images for rollbacks",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=50,
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # The old guide's group for image pushes, now allowed to push and pull this one repository and nothing
        # else. No user or access key is created: attach a CI user or (better) use an OIDC role instead. An account
        # whose CI already has such a role sets `-c ciGroupName=` (empty) and gets no group at all.
        self.ci_group: iam.Group | None = None
        if config.ci_group_name:
            self.ci_group = iam.Group(self, "CiImagePushGroup", group_name=config.ci_group_name)
            self.repository.grant_pull_push(self.ci_group)
            Validations.of(self.ci_group).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="ecr:GetAuthorizationToken has no resource-level permissions; AWS requires Resource '*'. "
                    "Every other ECR action is scoped to the one repository.",
                )
            )

    def grant_load_balancer_access_logs(self, prefix: str) -> None:
        """Let Elastic Load Balancing write a load balancer's access logs under `prefix` of the access-log bucket.

        Who writes depends on the region: its Elastic Load Balancing account in regions older than August 2022, the
        log-delivery service principal in newer ones. CDK's own `logAccessLogs` looks the account up at synth time
        and so needs a region; this stack is region-agnostic, so both are granted and the account is looked up at
        deploy time (a mapping of CDK's region facts; in a region without one the grant names this account itself,
        which adds nothing).
        """
        stack = Stack.of(self)
        objects = self.access_logs_bucket.arn_for_objects(f"{prefix}/AWSLogs/{stack.account}/*")
        self.access_logs_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LoadBalancerLogsByService",
                principals=[iam.ServicePrincipal("logdelivery.elasticloadbalancing.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[objects],
            )
        )
        accounts = CfnMapping(
            self,
            "LoadBalancerLogAccounts",
            mapping={region.name: {"account": region.elbv2_account or _NO_ACCOUNT} for region in RegionInfo.regions},
        )
        regional_account = accounts.find_in_map(Aws.REGION, "account")
        has_account = CfnCondition(
            self,
            "RegionHasLoadBalancerLogAccount",
            expression=Fn.condition_not(Fn.condition_equals(regional_account, _NO_ACCOUNT)),
        )
        account = Fn.condition_if(has_account.logical_id, regional_account, Aws.ACCOUNT_ID).to_string()
        self.access_logs_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LoadBalancerLogsByRegionalAccount",
                principals=[iam.ArnPrincipal(f"arn:{Aws.PARTITION}:iam::{account}:root")],
                actions=["s3:PutObject"],
                resources=[objects],
            )
        )

    def reports_objects_arn(self) -> str:
        """ARN pattern of the report files (the run tasks write there)."""
        return self.reports_bucket.arn_for_objects(self._reports_folder + "*")

    def compute_logs_objects_arn(self) -> str:
        """ARN pattern of Dagster's compute-log objects."""
        return self.reports_bucket.arn_for_objects(self._compute_logs_folder + "*")

    def step_outputs_objects_arn(self) -> str:
        """ARN pattern of the S3 pickle IO manager's step outputs."""
        return self.reports_bucket.arn_for_objects(self._step_outputs_folder + "*")
