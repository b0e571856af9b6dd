"""The one way into the Dagster UIs: an HTTPS load balancer that signs people in, behind AWS WAF.

Only with `-c webserverLoadBalancer=internal|internet-facing` (without it the UI is reached by SSM port forwarding
alone). What it does, request by request:

- **port 80** answers every request with a permanent redirect to HTTPS, nothing else;
- **port 443** (a current TLS policy: TLS 1.3 and 1.2 with forward-secret AEAD ciphers, post-quantum hybrid key
  exchange offered) matches the host name: `operatorHostName` signs people in with the operator client and forwards
  to the full webserver, `viewerHostName` signs them in with the viewer client and forwards to the read-only one
  (`stacks/sign_on.py` says who may use which client). Any other host (the load balancer's own DNS name, an IP
  address) gets a plain 404. So no path reaches a webserver without a sign-in; the only requests a webserver gets
  from anything else are the load balancer's health checks (`/server_info`), which go straight to the targets.
- the load balancer drops invalid header fields, cannot be deleted by accident (deletion protection), and writes its
  access logs to the stack's access-log bucket (`webserver-load-balancer/` prefix);
- **AWS WAF** (on unless `-c waf=false`): Amazon's IP reputation list, the common rule set, the known-bad-inputs
  rule set and a per-IP rate limit, evaluated before the listener, so also before the sign-in redirect. Blocked and
  counted requests are logged to `aws-waf-logs-<clusterName>` (allowed ones are not: they are in the access logs).

The certificate is `certificateArn` (ACM, covering both host names) or, with `hostedZoneId`/`hostedZoneName`, one
made here and validated by DNS in that zone; with the zone, the stack also adds both host names' alias records.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.network import Network
from stacks.sign_on import OPERATOR, VIEWER, SignOn
from stacks.storage import Storage

WEBSERVER_PORT = 3000
ACCESS_LOG_PREFIX = "webserver-load-balancer"
#: TLS 1.3 and 1.2 (restricted to forward-secret AES-GCM suites), with post-quantum hybrid key exchange.
TLS_POLICY = elbv2.SslPolicy.TLS13_12_RES_PQ
#: AWS managed rule groups, in evaluation order (the cheapest, IP reputation, first). The common rule set's 8 KB body
#: limit only counts: the UI's GraphQL requests (a launch with its run config, the asset graph's queries) exceed it.
MANAGED_RULE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AWSManagedRulesAmazonIpReputationList", ()),
    ("AWSManagedRulesCommonRuleSet", ("SizeRestrictions_BODY",)),
    ("AWSManagedRulesKnownBadInputsRuleSet", ()),
)
RATE_LIMIT_WINDOW_SECONDS = 300


class WebAccess(Construct):
    """Load balancer, listeners, sign-on rules, target groups, certificate, DNS records and WAF of the two UIs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        network: Network,
        storage: Storage,
        operator_service: ecs.FargateService,
        viewer_service: ecs.FargateService,
    ) -> None:
        super().__init__(scope, construct_id)
        assert network.load_balancer_sg is not None
        self._config = config
        self.sign_on = SignOn(self, "SignOn", config=config)
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=network.vpc,
            internet_facing=config.internet_facing,
            vpc_subnets=network.load_balancer_subnets,
            security_group=network.load_balancer_sg,
            drop_invalid_header_fields=True,
            deletion_protection=True,
        )
        self._log_access(storage)
        zone = (
            route53.HostedZone.from_hosted_zone_attributes(
                self, "Zone", hosted_zone_id=config.hosted_zone_id, zone_name=config.hosted_zone_name
            )
            if config.hosted_zone_id
            else None
        )
        self.load_balancer.add_listener(
            "Http",
            port=80,
            protocol=elbv2.ApplicationProtocol.HTTP,
            open=False,
            default_action=elbv2.ListenerAction.redirect(protocol="HTTPS", port="443", permanent=True),
        )
        self.https_listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_certificate_manager(self._certificate(zone))],
            ssl_policy=TLS_POLICY,
            open=False,
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="text/plain", message_body="Not found"
            ),
        )
        hosts = {OPERATOR: config.operator_host_name, VIEWER: config.viewer_host_name}
        for priority, (role, service) in enumerate(((OPERATOR, operator_service), (VIEWER, viewer_service)), 1):
            target_group = elbv2.ApplicationTargetGroup(
                self,
                f"{role.capitalize()}TargetGroup",
                vpc=network.vpc,
                port=WEBSERVER_PORT,
                protocol=elbv2.ApplicationProtocol.HTTP,
                targets=[service],
                health_check=elbv2.HealthCheck(path="/server_info", interval=Duration.seconds(30)),
                deregistration_delay=Duration.seconds(30),
            )
            self.https_listener.add_action(
                f"{role.capitalize()}Rule",
                priority=priority * 10,
                conditions=[elbv2.ListenerCondition.host_headers([hosts[role]])],
                action=self.sign_on.authenticate_then_forward(role, target_group),
            )
            if zone is not None:
                route53.ARecord(
                    self,
                    f"{role.capitalize()}Record",
                    zone=zone,
                    record_name=hosts[role],
                    target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.load_balancer)),
                )
        self.web_acl = self._create_web_acl() if config.waf else None

    def _certificate(self, zone: route53.IHostedZone | None) -> acm.ICertificate:
        config = self._config
        if config.certificate_arn:
            return acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
        assert zone is not None  # the config asks for one or the other
        return acm.Certificate(
            self,
            "Certificate",
            domain_name=config.viewer_host_name,
            subject_alternative_names=[config.operator_host_name],
            validation=acm.CertificateValidation.from_dns(zone),
        )

    def _log_access(self, storage: Storage) -> None:
        """Access logs to the access-log bucket (CDK's `log_access_logs` needs a region at synth time)."""
        storage.grant_load_balancer_access_logs(ACCESS_LOG_PREFIX)
        self.load_balancer.set_attribute("access_logs.s3.enabled", "true")
        self.load_balancer.set_attribute("access_logs.s3.bucket", storage.access_logs_bucket.bucket_name)
        self.load_balancer.set_attribute("access_logs.s3.prefix", ACCESS_LOG_PREFIX)
        # Elastic Load Balancing checks that it may write when the attribute is set: the policy comes first.
        assert storage.access_logs_bucket.policy is not None
        self.load_balancer.node.add_dependency(storage.access_logs_bucket.policy)

    def _create_web_acl(self) -> wafv2.CfnWebACL:
        """The managed rule groups and the rate limit, associated with the load balancer, logging what it stops."""
        name = f"{self._config.cluster_name}-ui"

        def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
            )

        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=group,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=group,
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                            )
                            for rule in count_only
                        ]
                        or None,
                    )
                ),
                visibility_config=visibility(group),
            )
            for priority, (group, count_only) in enumerate(MANAGED_RULE_GROUPS)
        ]
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=len(rules),
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=self._config.waf_rate_limit,
                        aggregate_key_type="IP",
                        evaluation_window_sec=RATE_LIMIT_WINDOW_SECONDS,
                    )
                ),
                visibility_config=visibility("RateLimitPerIp"),
            )
        )
        web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(name),
            rules=rules,
            description="Dagster UIs of IntervalProcessing: AWS managed rules and a per-IP rate limit",
        )
        wafv2.CfnWebACLAssociation(
            self, "WebAclAssociation", resource_arn=self.load_balancer.load_balancer_arn, web_acl_arn=web_acl.attr_arn
        )
        # WAF requires the log group's name to start with aws-waf-logs-.
        log_group = logs.LogGroup(
            self, "WebAclLogGroup", log_group_name=f"aws-waf-logs-{name}", retention=self._config.log_retention
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WebAclLogging",
            resource_arn=web_acl.attr_arn,
            log_destination_configs=[log_group.log_group_arn],
            logging_filter={
                "DefaultBehavior": "DROP",
                "Filters": [
                    {
                        "Behavior": "KEEP",
                        "Requirement": "MEETS_ANY",
                        "Conditions": [
                            {"ActionCondition": {"Action": "BLOCK"}},
                            {"ActionCondition": {"Action": "COUNT"}},
                        ],
                    }
                ],
            },
        )
        return web_acl
