"""Dagster on ECS Fargate: the cluster, the run task definition, the daemon and webserver services, their roles.

Replaces the guide's five `IntervalProcessing-<Process>` task definitions and EventBridge schedules: one run task
definition that Dagster's `EcsRunLauncher` starts for every run, and a daemon that owns the schedules.

Two webservers when the stack has the load balancer (`stacks/web_access.py`): the operator's full UI
(`dagster-webserver`, also the one SSM port forwarding reaches) and the viewers' read-only one (`dagster-viewer`,
`dagster-webserver --read-only`: Dagster's GraphQL refuses every launch, re-execution, termination, schedule or
sensor change, wipe and deletion there, and its task role can stop no task and delete no log). Without the load
balancer nobody could reach a viewer service that SSM port forwarding cannot (the same IAM rights reach both), so
there is only the operator's.

The run task definition carries the full environment and both secrets itself, because `EcsRunLauncher` does not
apply its own `env_vars`/`secrets` when it is given a fixed task definition ARN. The daemon and the webserver get the
same environment: they load the same `dagster.yaml` (Postgres, the launcher settings) and the same code location,
whose definitions choose their resources from the environment (no `MONGODB_URI` would mean "embedded MongoDB"; no
`STEP_OUTPUTS_S3_BUCKET` the filesystem IO manager). So every process sees the same definitions, and IAM, not the
environment, decides who may touch what: only the run role reads and writes step outputs, only the daemon's role
publishes alerts.

The operators' webserver runs ``intervalprocessing-webserver`` (``intervalprocessing_dagster/webserver``): Dagster's
webserver app inside a wrapper that, with the load balancer, refuses every request without the load balancer's
verified sign-on token, and writes one audit line per change made in the UI. The lines are appended to a file on a
volume the task shares with a second container, ``audit-log``, that only prints the file (``tail -F``): its standard
output goes to the audit log group, ``/ecs/IntervalProcessing-Audit``, kept ``auditLogRetentionDays`` (six years by
default) and never deleted with the stack, apart from the application logs. ``audit-log`` is essential: if it stops,
the task stops, so the webserver never makes changes that no one records.

With the load balancer, the viewers' webserver connects to Postgres as `dagster_viewer`, a role that can only read
Dagster's tables, with its own generated secret; the daemon task's first container, `viewer-role`
(`intervalprocessing-viewer-role`, non-essential, the daemon waits for its success), makes that role or puts it back
(password, privileges) at every start, so at every deployment. The operators' webserver, the daemon and the runs keep
the instance's own role.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Aws, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.acknowledgments import acknowledge_wildcard, logical_id
from stacks.alerting import Alerting
from stacks.config import DeploymentConfig
from stacks.dagster_database import DATABASE_NAME, DATABASE_USERNAME, VIEWER_USERNAME, DagsterDatabase
from stacks.network import Network
from stacks.storage import Storage

DAGSTER_HOME = "/opt/dagster/dagster_home"
WORKSPACE = "/opt/dagster/app/workspace.yaml"
WEBSERVER_PORT = 3000
RUN_CONTAINER_NAME = "run"
RUN_FAMILY = "IntervalProcessing-Run"
AUDIT_LOG_GROUP_NAME = "/ecs/IntervalProcessing-Audit"
AUDIT_CONTAINER_NAME = "audit-log"
#: Where the operators' webserver appends its audit lines: a task volume shared with the audit-log container. The
#: image creates the folder owned by its user (Fargate gives a bind mount the image folder's owner and mode).
AUDIT_FOLDER = "/var/log/intervalprocessing"
AUDIT_FILE = f"{AUDIT_FOLDER}/webserver-audit.jsonl"
VIEWER_ROLE_CONTAINER_NAME = "viewer-role"


@dataclass(frozen=True)
class _Roles:
    """The IAM roles of the task definitions (one execution role: same image, same secrets, same logs)."""

    execution: iam.Role
    run: iam.Role
    daemon: iam.Role
    webserver: iam.Role
    viewer: iam.Role | None  # only with the load balancer, like its service


class DagsterServices(Construct):
    """ECS cluster, run task definition, daemon service (exactly one), the operator's webserver service and, with the
    load balancer, the viewers' read-only one (all private)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        network: Network,
        storage: Storage,
        database: DagsterDatabase,
        mongo_uri_secret: secretsmanager.ISecret,
        alerting: Alerting,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=config.cluster_name,
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )
        self._image = ecs.ContainerImage.from_ecr_repository(storage.repository, config.image_tag)
        self._roles = self._create_roles()
        self._secrets = {
            "MONGODB_URI": ecs.Secret.from_secrets_manager(mongo_uri_secret),
            "DAGSTER_PG_PASSWORD": ecs.Secret.from_secrets_manager(database.secret, "password"),
        }
        self._viewer_secret = database.viewer_secret
        self._environment = {
            "DAGSTER_HOME": DAGSTER_HOME,
            "MONGODB_DATABASE": config.mongo_database,
            "INTERVALPROCESSING_TIMEZONE": config.timezone,
            "REPORTS_S3_BUCKET": storage.reports_bucket.bucket_name,
            # Normalized like the IAM grants, so the keys the code writes are the keys the run role may write.
            "REPORTS_S3_PREFIX": config.reports_folder,
            "DAGSTER_PG_HOST": database.instance.db_instance_endpoint_address,
            "DAGSTER_PG_PORT": database.instance.db_instance_endpoint_port,
            "DAGSTER_PG_DB": DATABASE_NAME,
            "DAGSTER_PG_USERNAME": DATABASE_USERNAME,
            # Read by libpq under psycopg2: RDS forces TLS, and this makes the client refuse a downgrade too.
            "PGSSLMODE": "require",
            "DAGSTER_RUN_CONTAINER_NAME": RUN_CONTAINER_NAME,
            "DAGSTER_ECS_CLUSTER": self.cluster.cluster_name,
            "DAGSTER_RUN_SUBNETS": ",".join(network.task_subnet_ids),
            "DAGSTER_RUN_SECURITY_GROUPS": network.tasks_sg.security_group_id,
            "DAGSTER_COMPUTE_LOGS_BUCKET": storage.reports_bucket.bucket_name,
            "DAGSTER_COMPUTE_LOGS_PREFIX": config.compute_logs_folder.rstrip("/"),
            # The S3 pickle IO manager's outputs (read back when a run is re-executed), next to the compute logs.
            "STEP_OUTPUTS_S3_BUCKET": storage.reports_bucket.bucket_name,
            "STEP_OUTPUTS_S3_PREFIX": config.step_outputs_folder,
            "ALERTS_SNS_TOPIC_ARN": alerting.topic.topic_arn,
        }
        # History windows given as context; the daemon's retention job and the runs' TTL indexes read them.
        self._environment.update(config.history_environment)
        # The operator's UI, where a failed run can be re-executed: the link in every alert.
        if config.alert_link_url:
            self._environment["INTERVALPROCESSING_WEBSERVER_URL"] = config.alert_link_url

        self.run_task_definition = self._create_run_task_definition()
        self._grant_run_role(storage)
        self._grant_launcher(self._roles.daemon, launches_runs=True)
        self._grant_launcher(self._roles.webserver, launches_runs=False)
        self._grant_compute_log_reads(self._roles.webserver, storage, delete=True)
        if self._roles.viewer is not None:
            self._grant_compute_log_reads(self._roles.viewer, storage, delete=False)
            self._grant_describe_task_definitions(self._roles.viewer)
        # The run-failure sensor runs in the daemon (its code server is a subprocess of the daemon's task).
        alerting.grant_publish(self._roles.daemon)

        self.audit_log_group = logs.LogGroup(
            self,
            "AuditLogGroup",
            log_group_name=AUDIT_LOG_GROUP_NAME,
            retention=config.audit_log_retention,
            # Who did what must outlive the stack: deleting it (or replacing the group) keeps the records.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.daemon_service = self._create_daemon_service()
        self.webserver_service = self._create_webserver_service()
        self.viewer_service = self._create_viewer_service() if config.load_balancer else None
        self._acknowledge_nag_findings(storage)

    # --- roles ---------------------------------------------------------------------------------------------------

    def _create_roles(self) -> _Roles:
        """Empty roles first; each grant below adds exactly what one caller needs."""

        def task_role(construct_id: str, description: str) -> iam.Role:
            return iam.Role(
                self,
                construct_id,
                assumed_by=iam.ServicePrincipal(
                    "ecs-tasks.amazonaws.com",
                    # Confused-deputy guard: only tasks of this account may assume the role.
                    conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
                ),
                description=description,
            )

        return _Roles(
            execution=task_role("TaskExecutionRole", "ECS agent: pull the image, write logs, read the two secrets"),
            run=task_role("RunTaskRole", "Dagster run workers: write reports and compute logs"),
            daemon=task_role("DaemonTaskRole", "Dagster daemon: launch, watch and stop the run tasks"),
            webserver=task_role("WebserverTaskRole", "Dagster webserver: read compute logs, stop run tasks"),
            viewer=task_role("ViewerTaskRole", "Dagster read-only webserver: read compute logs")
            if self._config.load_balancer
            else None,
        )

    def _grant_run_role(self, storage: Storage) -> None:
        """Run workers write report files and their own compute logs, and read and write step outputs; nothing else.

        Step outputs are the only S3 data Dagster reads back: a re-executed run's task loads its parent's outputs.
        The webserver and the daemon only create that run from the event log in Postgres and launch it, so they
        get no step-output access. The history retention job, itself a run, deletes the compute logs and step
        outputs of the runs it deletes (listing each run's prefix first).
        """
        self._roles.run.add_to_policy(
            iam.PolicyStatement(
                sid="WriteReports",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[storage.reports_objects_arn()],
            )
        )
        self._roles.run.add_to_policy(
            iam.PolicyStatement(
                sid="WriteComputeLogs",
                # GetObject: the compute-log manager HEADs a key to see whether its upload landed.
                actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:DeleteObject"],
                resources=[storage.compute_logs_objects_arn()],
            )
        )
        # dagster-aws's PickledObjectS3IOManager: get_object (load, and its existence check), upload_fileobj (put,
        # multipart above 8 MB, aborted on failure); the history retention job deletes.
        self._roles.run.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWriteStepOutputs",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                resources=[storage.step_outputs_objects_arn()],
            )
        )
        # ... and, when it starts, list_objects(Prefix=<its prefix>, MaxKeys=1) as a check that the bucket is there.
        # The prefix is accepted with or without its trailing '/', however the code spells it. The retention job
        # lists a deleted run's step outputs and compute logs.
        step_outputs = self._config.step_outputs_folder
        self._roles.run.add_to_policy(
            iam.PolicyStatement(
                sid="ListStepOutputsAndComputeLogs",
                actions=["s3:ListBucket"],
                resources=[storage.reports_bucket.bucket_arn],
                conditions={
                    "StringLike": {
                        "s3:prefix": [
                            step_outputs + "*",
                            step_outputs.rstrip("/"),
                            self._config.compute_logs_folder + "*",
                        ]
                    }
                },
            )
        )

    def _grant_describe_task_definitions(self, role: iam.Role) -> None:
        """`EcsRunLauncher` describes the run task definition when the instance loads it, in every process."""
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTaskDefinitions",
                # No resource-level permissions exist for this action.
                actions=["ecs:DescribeTaskDefinition"],
                resources=["*"],
            )
        )

    def _grant_launcher(self, role: iam.Role, *, launches_runs: bool) -> None:
        """What `EcsRunLauncher` calls: the daemon launches, monitors and stops runs; the webserver only stops them
        (a run launched from the UI is queued, and the daemon launches it)."""
        stack = Stack.of(self)
        cluster_condition = {"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}}
        tasks_in_cluster = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{self.cluster.cluster_name}/*"
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WatchAndStopRunTasks",
                actions=["ecs:DescribeTasks", "ecs:StopTask"],
                resources=[tasks_in_cluster],
                conditions=cluster_condition,
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTaskDefinitionsAndEnis",
                # Neither action supports resource-level permissions.
                actions=["ecs:DescribeTaskDefinition", "ec2:DescribeNetworkInterfaces"],
                resources=["*"],
            )
        )
        if not launches_runs:
            return
        role.add_to_policy(
            iam.PolicyStatement(
                sid="LaunchRunTasks",
                actions=["ecs:RunTask"],
                resources=[self.run_task_definition.task_definition_arn],
                conditions=cluster_condition,
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TagRunTasksAtLaunch",
                actions=["ecs:TagResource"],
                resources=[tasks_in_cluster],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassOnlyTheRunRoles",
                actions=["iam:PassRole"],
                resources=[self._roles.execution.role_arn, self._roles.run.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        # Run monitoring puts the tail of a failed run task's log into the run's failure message.
        self._run_log_group.grant(role, "logs:GetLogEvents")

    def _grant_compute_log_reads(self, role: iam.Role, storage: Storage, *, delete: bool) -> None:
        """A webserver shows captured stdout/stderr; the operator's deletes them with a deleted run."""
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadComputeLogs",
                actions=["s3:GetObject", *(["s3:DeleteObject"] if delete else [])],
                resources=[storage.compute_logs_objects_arn()],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListComputeLogs",
                actions=["s3:ListBucket"],
                resources=[storage.reports_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [self._config.compute_logs_folder + "*"]}},
            )
        )

    # --- task definitions and services -------------------------------------------------------------------------

    def _log_group(self, process: str) -> logs.LogGroup:
        """A log group named after the old `/ecs/IntervalProcessing-<Process>` convention."""
        return logs.LogGroup(
            self,
            f"{process}LogGroup",
            log_group_name=f"/ecs/IntervalProcessing-{process}",
            retention=self._config.log_retention,
        )

    def _task_definition(
        self, process: str, *, cpu: int, memory_mib: int, task_role: iam.Role, ephemeral_storage_gib: int | None = None
    ) -> ecs.FargateTaskDefinition:
        return ecs.FargateTaskDefinition(
            self,
            f"{process}TaskDefinition",
            family=f"IntervalProcessing-{process}",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            ephemeral_storage_gib=ephemeral_storage_gib,
            execution_role=self._roles.execution,
            task_role=task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )

    def _add_dagster_container(
        self,
        task_definition: ecs.FargateTaskDefinition,
        name: str,
        log_group: logs.LogGroup,
        *,
        run_task_definition_arn: str,
        command: list[str] | None = None,
        port: int | None = None,
        environment: dict[str, str] | None = None,
        secrets: dict[str, ecs.Secret] | None = None,
        essential: bool = True,
    ) -> ecs.ContainerDefinition:
        """The project image with the shared environment and secrets (see the module docstring for why all three),
        and what this one container has of its own (`environment`, `secrets` added or replacing)."""
        container = task_definition.add_container(
            name,
            container_name=name,
            image=self._image,
            command=command,
            essential=essential,
            environment={
                **self._environment,
                "DAGSTER_RUN_TASK_DEFINITION_ARN": run_task_definition_arn,
                **(environment or {}),
            },
            secrets={**self._secrets, **(secrets or {})},
            logging=ecs.LogDriver.aws_logs(stream_prefix=name, log_group=log_group),
        )
        if port is not None:
            container.add_port_mappings(ecs.PortMapping(container_port=port, protocol=ecs.Protocol.TCP))
        return container

    def _create_run_task_definition(self) -> ecs.FargateTaskDefinition:
        """The old task definitions' size (1 vCPU, 3 GB, 21 GiB); jobs can ask for more via Dagster `ecs/*` tags."""
        self._run_log_group = self._log_group("Run")
        task_definition = self._task_definition(
            "Run", cpu=1024, memory_mib=3072, ephemeral_storage_gib=21, task_role=self._roles.run
        )
        # No command: EcsRunLauncher overrides it per run. The run worker never launches runs, so it gets the family
        # name here (its own ARN would be a circular reference); the launcher resolves a family like an ARN.
        self._add_dagster_container(
            task_definition, RUN_CONTAINER_NAME, self._run_log_group, run_task_definition_arn=RUN_FAMILY
        )
        return task_definition

    def _create_daemon_service(self) -> ecs.FargateService:
        """Exactly one daemon, ever: two would both tick the schedules. A deployment stops the old task first."""
        task_definition = self._task_definition(
            "Daemon",
            cpu=self._config.daemon_cpu,
            memory_mib=self._config.daemon_memory_mib,
            task_role=self._roles.daemon,
        )
        log_group = self._log_group("Daemon")
        daemon = self._add_dagster_container(
            task_definition,
            "daemon",
            log_group,
            run_task_definition_arn=self.run_task_definition.task_definition_arn,
            command=["dagster-daemon", "run", "-w", WORKSPACE],
        )
        if self._viewer_secret is not None:
            # The viewers' read-only role, made or put back (password, privileges) before the daemon starts, so
            # at every deployment; a failure keeps the daemon from starting, and the service's alarm says so.
            viewer_role = self._add_dagster_container(
                task_definition,
                VIEWER_ROLE_CONTAINER_NAME,
                log_group,
                run_task_definition_arn=self.run_task_definition.task_definition_arn,
                command=["intervalprocessing-viewer-role"],
                environment={"DAGSTER_VIEWER_PG_USERNAME": VIEWER_USERNAME},
                secrets={
                    "DAGSTER_VIEWER_PG_PASSWORD": ecs.Secret.from_secrets_manager(self._viewer_secret, "password")
                },
                essential=False,
            )
            daemon.add_container_dependencies(
                ecs.ContainerDependency(container=viewer_role, condition=ecs.ContainerDependencyCondition.SUCCESS)
            )
        return ecs.FargateService(
            self,
            "DaemonService",
            service_name="dagster-daemon",
            cluster=self.cluster,
            task_definition=task_definition,
            desired_count=1 if self._config.start_services else 0,
            min_healthy_percent=0,
            max_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            vpc_subnets=self._network.task_subnets,
            security_groups=[self._network.tasks_sg],
            assign_public_ip=False,
        )

    def _create_webserver_service(self) -> ecs.FargateService:
        """The operator's full UI, private: behind the load balancer's operator host name, and reached through SSM
        port forwarding (ECS Exec)."""
        return self._create_webserver(
            "Webserver",
            "dagster-webserver",
            self._roles.webserver,
            read_only=False,
            exec_command=self._config.webserver_exec_command,
        )

    def _create_viewer_service(self) -> ecs.FargateService:
        """The viewers' read-only UI, behind the load balancer's viewer host name; no ECS Exec (nothing to do inside
        it that a viewer should)."""
        assert self._roles.viewer is not None
        return self._create_webserver(
            "Viewer", "dagster-viewer", self._roles.viewer, read_only=True, exec_command=False
        )

    def _create_webserver(
        self, process: str, service_name: str, task_role: iam.Role, *, read_only: bool, exec_command: bool
    ) -> ecs.FargateService:
        task_definition = self._task_definition(
            process,
            cpu=self._config.webserver_cpu,
            memory_mib=self._config.webserver_memory_mib,
            task_role=task_role,
        )
        # The viewers' webserver connects as the read-only role, with its own password (instance/viewer_role.py).
        viewer_secret = self._viewer_secret if read_only else None
        container = self._add_dagster_container(
            task_definition,
            process.lower(),
            self._log_group(process),
            run_task_definition_arn=self.run_task_definition.task_definition_arn,
            environment={"DAGSTER_PG_USERNAME": VIEWER_USERNAME} if viewer_secret else None,
            secrets={"DAGSTER_PG_PASSWORD": ecs.Secret.from_secrets_manager(viewer_secret, "password")}
            if viewer_secret
            else None,
            command=[
                "dagster-webserver" if read_only else "intervalprocessing-webserver",
                "-h",
                "0.0.0.0",
                "-p",
                str(WEBSERVER_PORT),
                "-w",
                WORKSPACE,
                *(["--read-only"] if read_only else []),
            ],
            port=WEBSERVER_PORT,
        )
        if not read_only:
            self.webserver_container = container
            self._add_audit_log(task_definition, container)
        return ecs.FargateService(
            self,
            f"{process}Service",
            service_name=service_name,
            cluster=self.cluster,
            task_definition=task_definition,
            desired_count=1 if self._config.start_services else 0,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            enable_execute_command=exec_command,
            vpc_subnets=self._network.task_subnets,
            security_groups=[self._network.webserver_sg],
            assign_public_ip=False,
        )

    def _add_audit_log(self, task_definition: ecs.FargateTaskDefinition, webserver: ecs.ContainerDefinition) -> None:
        """The webserver appends audit lines to a shared volume; `audit-log` prints them into the audit log group."""
        task_definition.add_volume(name="audit")
        webserver.add_environment("WEBSERVER_AUDIT_LOG", AUDIT_FILE)
        webserver.add_mount_points(ecs.MountPoint(source_volume="audit", container_path=AUDIT_FOLDER, read_only=False))
        printer = task_definition.add_container(
            AUDIT_CONTAINER_NAME,
            container_name=AUDIT_CONTAINER_NAME,
            image=self._image,
            # From the first line, following the file by name: it appears when the webserver writes its first line.
            command=["tail", "-n", "+1", "-F", AUDIT_FILE],
            essential=True,
            logging=ecs.LogDriver.aws_logs(stream_prefix="audit", log_group=self.audit_log_group),
            memory_reservation_mib=32,
        )
        printer.add_mount_points(ecs.MountPoint(source_volume="audit", container_path=AUDIT_FOLDER, read_only=True))

    def require_sign_on(self, load_balancer_arn: str, client_id: str) -> None:
        """The operators' webserver accepts only requests the load balancer signed after a sign-in with the operators'
        client (its `x-amzn-oidc-data` token, verified with the key the load balancer publishes in this region)."""
        self.webserver_container.add_environment("WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN", load_balancer_arn)
        self.webserver_container.add_environment("WEBSERVER_SIGN_ON_CLIENT_ID", client_id)
        self.webserver_container.add_environment(
            "WEBSERVER_SIGN_ON_KEY_ENDPOINT", f"https://public-keys.auth.elb.{Aws.REGION}.{Aws.URL_SUFFIX}"
        )

    # --- cdk-nag ---------------------------------------------------------------------------------------------------

    def _acknowledge_nag_findings(self, storage: Storage) -> None:
        """Every accepted AwsSolutions finding of this construct, each with the reason it is accepted.

        Wildcard findings (IAM5) are acknowledged one resource pattern at a time, so a new wildcard added later
        fails the synth instead of slipping in under an existing acknowledgment.
        """
        services = [
            self.daemon_service,
            self.webserver_service,
            *([self.viewer_service] if self.viewer_service else []),
        ]
        for task_definition in (self.run_task_definition, *(service.task_definition for service in services)):
            Validations.of(task_definition).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-ECS2",
                    reason="The plain environment holds only non-secret settings (names, hosts, ids); the "
                    "MongoDB URI and the Postgres password come from Secrets Manager through ECS secrets.",
                )
            )

        no_resource_level = (
            "AWS supports no resource-level permissions for this action ({actions}), so the resource must be '*'."
        )
        for role, actions in (
            (self._roles.execution, "ecr:GetAuthorizationToken"),
            (self._roles.daemon, "ecs:DescribeTaskDefinition, ec2:DescribeNetworkInterfaces"),
            (
                self._roles.webserver,
                "ecs:DescribeTaskDefinition, ec2:DescribeNetworkInterfaces, and the ssmmessages channel of ECS Exec",
            ),
            *([(self._roles.viewer, "ecs:DescribeTaskDefinition")] if self._roles.viewer else []),
        ):
            acknowledge_wildcard(role, "*", no_resource_level.format(actions=actions))

        bucket = f"<{logical_id(storage.reports_bucket)}.Arn>"
        compute_logs = f"{bucket}/{self._config.compute_logs_folder}*"
        acknowledge_wildcard(
            self._roles.run,
            f"{bucket}/{self._config.reports_folder}*",
            "Report file names are made per run; the grant is limited to objects under the report prefix.",
        )
        acknowledge_wildcard(
            self._roles.run,
            f"{bucket}/{self._config.step_outputs_folder}*",
            "Step-output keys are made per run, step and output; the grant is limited to the step-output prefix.",
        )
        for role in (self._roles.run, self._roles.webserver, *([self._roles.viewer] if self._roles.viewer else [])):
            acknowledge_wildcard(
                role,
                compute_logs,
                "Compute-log keys are made per run and step; the grant is limited to the compute-log prefix.",
            )
        tasks = f"arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<{logical_id(self.cluster)}>/*"
        for role in (self._roles.daemon, self._roles.webserver):
            acknowledge_wildcard(
                role,
                tasks,
                "Run task ids exist only once a run is launched; the grant covers tasks of this one cluster "
                "(and is further conditioned on ecs:cluster).",
            )
