"""Dagster's own storage: RDS PostgreSQL for run, event-log and schedule storage.

Not in the old system (it kept no run history). Lives in the isolated subnets (no route out at all), encrypted,
with its master password generated into Secrets Manager: nobody types it, and tasks get it as an ECS secret.

It warns before it fills (`alarm_before_it_runs_out`): the history retention job keeps Dagster's history bounded
(`intervalprocessing_dagster/history/retention.py`), so a database that keeps growing means that job is off or
failing, or the deployment has outgrown the instance (the README's sizing table); and a burstable instance that
spends its CPU credits makes every UI page and every run's event writes slow.
"""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.alerting import Alerting
from stacks.config import DeploymentConfig
from stacks.network import POSTGRES_PORT, Network

DATABASE_NAME = "dagster"
DATABASE_USERNAME = "dagster"
#: The viewers' webserver's read-only role (intervalprocessing_dagster/instance/viewer_role.py makes it).
VIEWER_USERNAME = "dagster_viewer"
LOG_EXPORTS = ("postgresql", "upgrade")
#: The free-storage alarm fires below this share of the allocated storage: before RDS storage autoscaling steps in
#: (below 10% free, up to `max_allocated_storage`), so on-call hears of the growth while there is room to act.
FREE_STORAGE_ALARM_SHARE = 0.25
#: The CPU-credit alarm fires below this many credits (one credit = one vCPU at 100% for a minute). A db.t4g.micro
#: earns 12 an hour and holds at most 288: 50 left means hours above its baseline, and about 25 minutes of full CPU.
CPU_CREDITS_ALARM_THRESHOLD = 50
#: Both metrics arrive every minute or five; three low five-minute periods in a row, not a passing dip (a large
#: sort's temporary files, a burst of runs), raise the alarm.
ALARM_PERIODS = 3


class DagsterDatabase(Construct):
    """The Postgres instance behind `deploy/dagster.yaml`'s `DAGSTER_PG_*` variables."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, network: Network) -> None:
        super().__init__(scope, construct_id)
        # A fixed identifier, so the log groups RDS exports to can be created here first, with retention (left to
        # RDS, they never expire; CDK's own retention option would add a custom-resource Lambda).
        identifier = f"{config.cluster_name}-dagster"
        log_groups = [
            logs.LogGroup(
                self,
                f"{export.capitalize()}LogGroup",
                log_group_name=f"/aws/rds/instance/{identifier}/{export}",
                retention=config.log_retention,
            )
            for export in LOG_EXPORTS
        ]
        self.instance = rds.DatabaseInstance(
            self,
            "Postgres",
            instance_identifier=identifier,
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_9),
            instance_type=ec2.InstanceType(config.db_instance_type),
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[network.database_sg],
            port=POSTGRES_PORT,
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(
                DATABASE_USERNAME, secret_name="intervalprocessing/dagster-postgres"
            ),
            storage_encrypted=True,
            allocated_storage=config.db_allocated_storage_gib,
            max_allocated_storage=config.db_allocated_storage_gib * 5,
            multi_az=config.db_multi_az,
            publicly_accessible=False,
            backup_retention=Duration.days(7),
            deletion_protection=config.db_deletion_protection,
            cloudwatch_logs_exports=list(LOG_EXPORTS),
            auto_minor_version_upgrade=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        for log_group in log_groups:
            self.instance.node.add_dependency(log_group)
        assert self.instance.secret is not None  # from_generated_secret always creates one
        self.secret = self.instance.secret

        acknowledgments = [
            Acknowledgment(
                id="AwsSolutions-RDS11",
                reason="The default port is kept: the instance is reachable only from the Dagster tasks' security "
                "group inside isolated subnets, so a non-standard port would add no protection.",
            ),
            Acknowledgment(
                id="AwsSolutions-RDS6",
                reason="dagster-postgres connects with a username and password (DAGSTER_PG_PASSWORD), not IAM "
                "tokens; the password is generated, kept in Secrets Manager and injected as an ECS secret.",
            ),
        ]
        if not config.db_multi_az:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS3",
                    reason="Single-AZ by default: Dagster storage can be down for a failover-length outage without "
                    "data loss (runs are retried); set -c dbMultiAz=true where that is not acceptable.",
                )
            )
        if not config.db_deletion_protection:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS10",
                    reason="Deletion protection switched off on purpose with -c dbDeletionProtection=false "
                    "(throw-away environments).",
                )
            )
        Validations.of(self.instance).acknowledge(*acknowledgments)
        # Acknowledged on the instance: the generated secret is its child (`instance.secret` is the attachment).
        Validations.of(self.instance).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="Not rotated automatically: ECS injects the password when a task starts, so a rotation "
                "would break the running daemon and webserver until they restart. Rotate by hand, then force "
                "a new deployment of both services (README).",
            )
        )

        self.viewer_secret = self._create_viewer_secret() if config.load_balancer else None

    def _create_viewer_secret(self) -> secretsmanager.Secret:
        """The read-only role's own generated password: the viewers' webserver never holds the instance's."""
        secret = secretsmanager.Secret(
            self,
            "ViewerSecret",
            secret_name="intervalprocessing/dagster-postgres-viewer",
            description="Password of the read-only Postgres role dagster_viewer, the viewers' webserver's; the "
            "daemon task's viewer-role container sets the role to it at every start.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": VIEWER_USERNAME}),
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=40,
            ),
        )
        Validations.of(secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="Not rotated automatically: the role takes the secret's value when the daemon task starts, "
                "and the viewer reads it when its task starts. Rotate by putting a new value, then force new "
                "deployments of the daemon and then the viewer (README).",
            )
        )
        return secret

    def alarm_before_it_runs_out(self, alerting: Alerting, config: DeploymentConfig) -> list[cloudwatch.Alarm]:
        """Alarms on the alerts topic when free storage falls below FREE_STORAGE_ALARM_SHARE of the allocation, and,
        on a burstable (db.t*) class, when the CPU credit balance falls below CPU_CREDITS_ALARM_THRESHOLD.

        They notify even with `startServices=false`: the database runs either way. Missing data keeps an alarm's
        state (a metric that stops arriving is not by itself a full disk).
        """
        free_bytes = int(config.db_allocated_storage_gib * FREE_STORAGE_ALARM_SHARE * 1024**3)
        alarms = [
            alerting.alarm_to_topic(
                "DatabaseFreeStorageLow",
                description=f"Dagster's Postgres has less than {free_bytes / 1024**3:g} GiB free of the "
                f"{config.db_allocated_storage_gib} GiB allocated: is the history retention job failing or off "
                "(RUN_HISTORY_RETENTION), or has the deployment outgrown its size (README sizing table)? "
                f"RDS adds storage below 10% free, up to {config.db_allocated_storage_gib * 5} GiB.",
                metric=self.instance.metric_free_storage_space(
                    statistic=cloudwatch.Stats.MINIMUM, period=Duration.minutes(5)
                ),
                threshold=free_bytes,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=ALARM_PERIODS,
                treat_missing_data=cloudwatch.TreatMissingData.MISSING,
            )
        ]
        if config.db_instance_type.startswith("t"):
            alarms.append(
                alerting.alarm_to_topic(
                    "DatabaseCpuCreditsLow",
                    description=f"Dagster's Postgres (db.{config.db_instance_type}) has fewer than "
                    f"{CPU_CREDITS_ALARM_THRESHOLD} CPU credits left: it has run above its baseline for hours, the "
                    "UI and event writes slow down and unlimited mode bills the surplus. Look for a long "
                    "history (retention job), a stuck query, or move to a larger class (README sizing table).",
                    metric=self.instance.metric(
                        "CPUCreditBalance", statistic=cloudwatch.Stats.MINIMUM, period=Duration.minutes(5)
                    ),
                    threshold=CPU_CREDITS_ALARM_THRESHOLD,
                    comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                    evaluation_periods=ALARM_PERIODS,
                    treat_missing_data=cloudwatch.TreatMissingData.MISSING,
                )
            )
        return alarms
