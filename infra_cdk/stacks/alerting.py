"""Where on-call hears about trouble: one encrypted SNS topic, fed by the daemon and by CloudWatch alarms.

Two kinds of message arrive on the topic:
- the Dagster daemon's run-failure sensor publishes one message per failed run (it is the only role allowed to);
- CloudWatch alarms publish when the daemon or the webserver service has had no running task for several minutes,
  which is exactly when the sensor cannot speak (no daemon) or nobody can look (no UI), and when Dagster's database
  runs low on storage or CPU credits (`dagster_database.py` says what it watches).

The topic is encrypted with a customer-managed key, not `alias/aws/sns`: the AWS-managed key's policy cannot be
changed and does not let CloudWatch use it, so alarms would silently fail to publish. Giving the topic a policy (for
TLS-only publishing) replaces SNS's default one, so CloudWatch is allowed to publish explicitly, limited to this
stack's alarms.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.config import DeploymentConfig

#: A service counts as down after this many consecutive minutes without a running task. A daemon deployment stops
#: the old task before starting the new one (a gap of a minute or two), so this must be longer than that.
NO_TASK_MINUTES = 5


class Alerting(Construct):
    """The alerts topic (KMS-encrypted, TLS-only), its optional email subscription, and the no-running-task alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        stack = Stack.of(self)
        # Alarm names start with the cluster name, so the CloudWatch grants below cover this stack's alarms only.
        self._alarm_name_prefix = f"{config.cluster_name}-"
        alarms_of_this_stack = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{self._alarm_name_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

        self.key = kms.Key(
            self,
            "AlertsKey",
            description="Encrypts the IntervalProcessing alerts topic (usable by CloudWatch alarms, unlike aws/sns)",
            enable_key_rotation=True,
        )
        # As AWS documents for alarms on encrypted topics. The key protects this one topic only, and what may be
        # published to it is decided by the topic policy (alarm-name condition below).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseTheKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        self.topic = sns.Topic(
            self,
            "AlertsTopic",
            topic_name=f"{config.cluster_name}-alerts",
            display_name="IntervalProcessing alerts",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowThisStacksAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": alarms_of_this_stack},
                },
            )
        )
        if config.alert_email:
            # SNS mails a confirmation link first; nothing is delivered until the recipient confirms.
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alert_email))

    def grant_publish(self, role: iam.IRole) -> None:
        """Let `role` publish to the topic: sns:Publish on it, and the two KMS calls SNS makes with the publisher's
        credentials for an encrypted topic, only through SNS."""
        self.topic.grants.actions(role, ["sns:Publish"])
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="EncryptAlertsThroughSns",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{Stack.of(self).region}.amazonaws.com"}},
            )
        )

    def alarm_when_no_task_runs(
        self, construct_id: str, *, cluster: ecs.ICluster, service: ecs.FargateService, meaning: str
    ) -> cloudwatch.Alarm:
        """An alarm (and its all-clear) on the topic when `service` has had no running task for NO_TASK_MINUTES.

        Container Insights (enabled on the cluster) reports RunningTaskCount per service each minute. No data at all
        also means no task (or no cluster), so missing data counts as breaching. When the stack is deployed with
        `startServices=false` the services run no task on purpose: the alarms exist but do not notify.
        """
        running_tasks = cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": service.service_name},
            statistic=cloudwatch.Stats.MAXIMUM,
            period=Duration.minutes(1),
        )
        return self.alarm_to_topic(
            construct_id,
            description=f"No running task for {NO_TASK_MINUTES} minutes: {meaning}",
            metric=running_tasks,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=NO_TASK_MINUTES,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            actions_enabled=self._config.start_services,
        )

    def alarm_to_topic(
        self,
        construct_id: str,
        *,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison_operator: cloudwatch.ComparisonOperator,
        evaluation_periods: int,
        treat_missing_data: cloudwatch.TreatMissingData,
        actions_enabled: bool = True,
    ) -> cloudwatch.Alarm:
        """An alarm named `<clusterName>-<construct_id>` (so the topic policy lets it publish) that notifies the topic
        when it fires and again when it clears, after `evaluation_periods` breaching periods in a row."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self._alarm_name_prefix}{construct_id}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison_operator,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=evaluation_periods,
            treat_missing_data=treat_missing_data,
            actions_enabled=actions_enabled,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm
