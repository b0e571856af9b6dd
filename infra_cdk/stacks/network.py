"""The network: a VPC over two AZs, one NAT gateway with a fixed Elastic IP, flow logs, and the security groups.

Replaces the "VPC Configuration" part of the old guide. The Elastic IP is created explicitly (not left to the NAT
construct) because it is the address operators allow-list in MongoDB Atlas: it gets its own output and survives a
NAT gateway replacement. The security groups and their rules live here, so who may talk to whom reads in one place;
the load balancer's outbound rules are the one exception: CDK adds them where the listener forwards to the webserver
services (port 3000) and, for sign-on, calls the identity provider (HTTPS), in `stacks/web_access.py`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import DeploymentConfig

POSTGRES_PORT = 5432
#: MongoDB Atlas clusters listen on 27017; sharded clusters' mongos also on 27015-27016.
MONGO_PORTS = ec2.Port.tcp_range(27015, 27017)


class Network(Construct):
    """VPC with public, private (egress through the NAT) and isolated (database) subnets in two AZs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self._internet_facing = config.internet_facing

        # One NAT gateway, as in the old guide: every outbound connection leaves from one allow-listable address.
        # (A second NAT would mean a second IP to allow-list; the cost of the single-AZ egress is accepted.)
        self.nat_eip = ec2.CfnEIP(
            self, "NatEip", domain="vpc", tags=[{"key": "Name", "value": "intervalprocessing-nat"}]
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            max_azs=2,
            nat_gateways=1,
            nat_gateway_provider=ec2.NatProvider.gateway(eip_allocation_ids=[self.nat_eip.attr_allocation_id]),
            # The default security group is attached to nothing here; stripping its rules needs a custom-resource
            # Lambda, which would be the only Lambda in the stack.
            restrict_default_security_group=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="Database", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            log_group_name="/vpc/IntervalProcessing-FlowLogs",
            retention=config.log_retention,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        # Postgres accepts connections only from the two Dagster security groups below; it needs no egress.
        self.database_sg = ec2.SecurityGroup(
            self,
            "DagsterDatabaseSecurityGroup",
            vpc=self.vpc,
            description="Dagster Postgres: reachable from the Dagster tasks only",
            allow_all_outbound=False,
        )
        # The run workers and the daemon share one group; the webserver has its own, because the optional load
        # balancer opens an inbound port on the webserver's groups and that must not open the run tasks too.
        self.tasks_sg = self._dagster_task_group(
            "DagsterTasksSecurityGroup", "Dagster run and daemon tasks: outbound HTTPS, MongoDB and Postgres only"
        )
        self.webserver_sg = self._dagster_task_group(
            "DagsterWebserverSecurityGroup", "Dagster webservers: outbound HTTPS, MongoDB and Postgres only"
        )
        self.load_balancer_sg = self._load_balancer_group(config) if config.load_balancer else None

    def _load_balancer_group(self, config: DeploymentConfig) -> ec2.SecurityGroup:
        """The load balancer's group: HTTPS, and HTTP only to be redirected to it, from the allowed network."""
        group = ec2.SecurityGroup(
            self,
            "WebserverLoadBalancerSecurityGroup",
            vpc=self.vpc,
            description="Load balancer of the Dagster UIs: HTTPS (and HTTP, redirected) from the allowed network",
            allow_all_outbound=False,
        )
        # The literal CIDR from config rather than the VPC's token, so the rule is checkable at synth time.
        allowed = ec2.Peer.ipv4(config.load_balancer_allowed_cidr)
        group.add_ingress_rule(allowed, ec2.Port.tcp(443), "Dagster UIs (HTTPS) from the allowed network")
        group.add_ingress_rule(allowed, ec2.Port.tcp(80), "HTTP from the allowed network, redirected to HTTPS")
        if config.load_balancer_allowed_cidr == "0.0.0.0/0":
            Validations.of(group).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-EC23",
                    reason="An internet-facing UI for people outside the VPC: the load balancer answers only HTTPS "
                    "(HTTP redirects), every path but the health check requires a sign-in, and WAF filters requests "
                    "first. Narrow it with -c webserverAllowedCidr.",
                )
            )
        return group

    def _dagster_task_group(self, construct_id: str, description: str) -> ec2.SecurityGroup:
        """A group for Dagster tasks: they only open connections (AWS APIs and ECR over HTTPS through the NAT,
        MongoDB Atlas through the NAT, Postgres inside the VPC); nothing else leaves and nothing comes in."""
        group = ec2.SecurityGroup(self, construct_id, vpc=self.vpc, description=description, allow_all_outbound=False)
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs, ECR and S3 through the NAT")
        group.add_egress_rule(ec2.Peer.any_ipv4(), MONGO_PORTS, "MongoDB Atlas through the NAT")
        group.add_egress_rule(self.database_sg, ec2.Port.tcp(POSTGRES_PORT), "Dagster storage in Postgres")
        self.database_sg.add_ingress_rule(group, ec2.Port.tcp(POSTGRES_PORT), f"Postgres from {construct_id}")
        return group

    @property
    def load_balancer_subnets(self) -> ec2.SubnetSelection:
        """Public subnets for an internet-facing load balancer, the tasks' private ones for an internal one."""
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC) if self._internet_facing else self.task_subnets

    @property
    def task_subnets(self) -> ec2.SubnetSelection:
        """Where every task runs: the private subnets, whose only way out is the NAT gateway."""
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

    @property
    def task_subnet_ids(self) -> list[str]:
        """The ids of `task_subnets` (what `EcsRunLauncher` passes to RunTask)."""
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids
