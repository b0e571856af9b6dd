"""The one stack: composes network, storage, Dagster's database, services and alerting, and publishes the outputs.

The output names are a contract: the operator copies `NatElasticIp` into MongoDB Atlas, and the Dagster deployment
(`deploy/dagster.yaml`, via the tasks' environment) uses the cluster, run task definition, subnets and security
groups. Keep them stable.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Stack, Validations
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.alerting import Alerting
from stacks.config import DeploymentConfig
from stacks.dagster_database import DagsterDatabase
from stacks.dagster_services import DagsterServices
from stacks.network import Network
from stacks.storage import Storage
from stacks.web_access import WebAccess


class IntervalProcessingStack(Stack):
    """Everything the Dagster deployment of IntervalProcessing needs in one AWS account and region."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = DeploymentConfig.from_context(self.node)

        network = Network(self, "Network", config=config)
        storage = Storage(self, "Storage", config=config)
        database = DagsterDatabase(self, "DagsterDatabase", config=config, network=network)
        # The operator puts the real connection string here after the first deploy (README); until then the
        # secret holds a random placeholder and the tasks fail to connect, which is the safe failure.
        self.mongo_uri_secret = secretsmanager.Secret(
            self,
            "MongoUriSecret",
            secret_name=config.mongo_secret_name,
            description="MongoDB connection string (mongodb+srv://...) of the IntervalProcessing database; "
            "read by the ECS tasks as MONGODB_URI.",
        )
        Validations.of(self.mongo_uri_secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The value is a MongoDB Atlas credential managed in Atlas; AWS cannot rotate it. "
                "Rotate it in Atlas, put the new value here, and restart the services (README).",
            )
        )
        alerting = Alerting(self, "Alerting", config=config)
        services = DagsterServices(
            self,
            "DagsterServices",
            config=config,
            network=network,
            storage=storage,
            database=database,
            mongo_uri_secret=self.mongo_uri_secret,
            alerting=alerting,
        )
        alerting.alarm_when_no_task_runs(
            "DaemonNoRunningTask",
            cluster=services.cluster,
            service=services.daemon_service,
            meaning="the Dagster daemon is down: no schedules tick, no runs launch, no run-failure alerts are sent.",
        )
        alerting.alarm_when_no_task_runs(
            "WebserverNoRunningTask",
            cluster=services.cluster,
            service=services.webserver_service,
            meaning="the Dagster UI is down (schedules and runs go on; nobody can look at them).",
        )
        database.alarm_before_it_runs_out(alerting, config)
        web_access = None
        if services.viewer_service is not None:
            web_access = WebAccess(
                self,
                "WebAccess",
                config=config,
                network=network,
                storage=storage,
                operator_service=services.webserver_service,
                viewer_service=services.viewer_service,
            )
            services.require_sign_on(web_access.load_balancer.load_balancer_arn, web_access.sign_on.operator_client_id)
            alerting.alarm_when_no_task_runs(
                "ViewerNoRunningTask",
                cluster=services.cluster,
                service=services.viewer_service,
                meaning="the read-only Dagster UI is down (operators still have theirs).",
            )

        outputs: dict[str, tuple[str, str]] = {
            "NatElasticIp": (network.nat_eip.attr_public_ip, "Allow-list this address in MongoDB Atlas"),
            "ReportsBucketName": (storage.reports_bucket.bucket_name, "REPORTS_S3_BUCKET"),
            "EcrRepositoryUri": (storage.repository.repository_uri, "Push the image here (tag = -c imageTag)"),
            "EcsClusterName": (services.cluster.cluster_name, "DAGSTER_ECS_CLUSTER"),
            "RunTaskDefinitionArn": (
                services.run_task_definition.task_definition_arn,
                "DAGSTER_RUN_TASK_DEFINITION_ARN",
            ),
            "RunSubnetIds": (",".join(network.task_subnet_ids), "DAGSTER_RUN_SUBNETS"),
            "RunSecurityGroupIds": (network.tasks_sg.security_group_id, "DAGSTER_RUN_SECURITY_GROUPS"),
            "MongoUriSecretArn": (self.mongo_uri_secret.secret_arn, "Put the MongoDB connection string here"),
            "DagsterDbSecretArn": (database.secret.secret_arn, "Generated Postgres credentials"),
            "DagsterDbEndpoint": (database.instance.db_instance_endpoint_address, "DAGSTER_PG_HOST"),
            "AlertsTopicArn": (alerting.topic.topic_arn, "ALERTS_SNS_TOPIC_ARN: subscribe on-call here"),
        }
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)
        if web_access is not None:
            ui_outputs: dict[str, tuple[str, str]] = {
                "ViewerUrl": (f"https://{config.viewer_host_name}", "The read-only Dagster UI (everyone signed in)"),
                "OperatorUrl": (f"https://{config.operator_host_name}", "The full Dagster UI (the operators group)"),
                "LoadBalancerDnsName": (
                    web_access.load_balancer.load_balancer_dns_name,
                    "Point both host names here (CNAME or alias) unless the stack made their records",
                ),
            }
            if web_access.sign_on.user_pool is not None:
                ui_outputs["UserPoolId"] = (web_access.sign_on.user_pool.user_pool_id, "Add people here (README)")
            for name, (value, description) in ui_outputs.items():
                CfnOutput(self, name, value=value, description=description)
