"""The load balancer in front of the two UIs: HTTPS only, sign-on on every path, one host name and one webserver
per role, a current TLS policy, access logs, WAF, and the read-only viewer service behind it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stacks.dagster_services import AUDIT_CONTAINER_NAME, VIEWER_ROLE_CONTAINER_NAME
from tests.conftest import CERTIFICATE_ARN, OIDC_CONTEXT
from tests.synthesis import Synthesized

HOSTS = {
    "variant": ("dagster.example.com", "dagster-ops.example.com"),
    "oidc": ("dagster.corp.example", "dagster-ops.corp.example"),
}
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
WORKSPACE = "/opt/dagster/app/workspace.yaml"


def _listeners(synth: Synthesized) -> dict[int, dict[str, Any]]:
    return {
        r["Properties"]["Port"]: r["Properties"]
        for r in synth.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    }


def _rules(synth: Synthesized) -> dict[str, dict[str, Any]]:
    """Host name -> its listener rule."""
    return {
        rule["Properties"]["Conditions"][0]["HostHeaderConfig"]["Values"][0]: rule["Properties"]
        for rule in synth.of_type("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    }


def _target_group_service(synth: Synthesized, target_group_lid: str) -> str:
    """The ECS service registered in a target group."""
    (service,) = [
        r["Properties"]["ServiceName"]
        for r in synth.of_type("AWS::ECS::Service").values()
        for balancer in r["Properties"].get("LoadBalancers", [])
        if balancer["TargetGroupArn"] == {"Ref": target_group_lid}
    ]
    return service


def _container(synth: Synthesized, family: str) -> dict[str, Any]:
    (definition,) = [
        r["Properties"]
        for r in synth.of_type("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["Family"] == family
    ]
    (container,) = [
        c
        for c in definition["ContainerDefinitions"]
        if c["Name"] not in (AUDIT_CONTAINER_NAME, VIEWER_ROLE_CONTAINER_NAME)
    ]
    return container


@pytest.mark.parametrize(("configuration", "scheme"), [("variant", "internet-facing"), ("oidc", "internal")])
def test_the_load_balancer_drops_bad_headers_keeps_access_logs_and_resists_deletion(
    configuration: str, scheme: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    _, balancer = synth.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
    properties = balancer["Properties"]
    assert properties["Scheme"] == scheme
    subnets = {s["Ref"] for s in properties["Subnets"]}
    assert all(("PublicSubnet" if scheme == "internet-facing" else "PrivateSubnet") in s for s in subnets)
    access_logs_bucket = synth.logical_id(synth.stack.node.find_child("Storage").node.find_child("AccessLogsBucket"))
    assert {a["Key"]: a["Value"] for a in properties["LoadBalancerAttributes"]} == {
        "deletion_protection.enabled": "true",
        "routing.http.drop_invalid_header_fields.enabled": "true",
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": {"Ref": access_logs_bucket},
        "access_logs.s3.prefix": "webserver-load-balancer",
    }


def test_the_access_log_bucket_lets_elastic_load_balancing_write_under_the_prefix_in_any_region(
    variant: Synthesized,
) -> None:
    access_logs_bucket = variant.logical_id(
        variant.stack.node.find_child("Storage").node.find_child("AccessLogsBucket")
    )
    (policy_lid, policy) = next(
        (lid, p["Properties"])
        for lid, p in variant.of_type("AWS::S3::BucketPolicy").items()
        if p["Properties"]["Bucket"] == {"Ref": access_logs_bucket}
    )
    statements = {s.get("Sid"): s for s in policy["PolicyDocument"]["Statement"]}
    objects = {
        "Fn::Join": [
            "",
            [
                {"Fn::GetAtt": [access_logs_bucket, "Arn"]},
                "/webserver-load-balancer/AWSLogs/",
                {"Ref": "AWS::AccountId"},
                "/*",
            ],
        ]
    }
    by_service = statements["LoadBalancerLogsByService"]
    assert by_service["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert (by_service["Action"], by_service["Resource"]) == ("s3:PutObject", objects)
    by_account = statements["LoadBalancerLogsByRegionalAccount"]
    assert (by_account["Action"], by_account["Resource"]) == ("s3:PutObject", objects)
    # us-east-1's Elastic Load Balancing account, looked up at deploy time; a newer region maps to no account.
    (mapping,) = variant.template.to_json()["Mappings"].values()
    assert mapping["us-east-1"] == {"account": "127311923021"}
    assert mapping["ap-southeast-4"] == {"account": "none"}
    assert "Fn::If" in str(by_account["Principal"])
    _, balancer = variant.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert policy_lid in balancer["DependsOn"]  # ELB checks its write access when logging is switched on


@pytest.mark.parametrize("configuration", ["variant", "oidc"])
def test_http_only_redirects_to_https_and_https_has_a_current_tls_policy(
    configuration: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    listeners = _listeners(synth)
    assert set(listeners) == {80, 443}
    assert listeners[80]["Protocol"] == "HTTP"
    assert listeners[80]["DefaultActions"] == [
        {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
    ]
    assert not synth.of_type("AWS::ElasticLoadBalancingV2::ListenerRule") or all(
        r["Properties"]["ListenerArn"] != {"Ref": lid}
        for r in synth.of_type("AWS::ElasticLoadBalancingV2::ListenerRule").values()
        for lid, listener in synth.of_type("AWS::ElasticLoadBalancingV2::Listener").items()
        if listener["Properties"]["Port"] == 80
    )  # nothing on port 80 but the redirect
    https = listeners[443]
    assert (https["Protocol"], https["SslPolicy"]) == ("HTTPS", TLS_POLICY)
    # A request for any other host name (the load balancer's own DNS name, an IP address) reaches no webserver.
    assert https["DefaultActions"] == [
        {
            "Type": "fixed-response",
            "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain", "MessageBody": "Not found"},
        }
    ]


@pytest.mark.parametrize("configuration", ["variant", "oidc"])
def test_each_host_signs_in_first_then_forwards_to_its_own_webserver(
    configuration: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    viewer_host, operator_host = HOSTS[configuration]
    rules = _rules(synth)
    assert set(rules) == {viewer_host, operator_host}
    expected_service = {viewer_host: "dagster-viewer", operator_host: "dagster-webserver"}
    kind = "authenticate-cognito" if configuration == "variant" else "authenticate-oidc"
    for host, rule in rules.items():
        authenticate, forward = sorted(rule["Actions"], key=lambda action: action["Order"])
        assert authenticate["Type"] == kind
        config = authenticate[
            "AuthenticateCognitoConfig" if kind == "authenticate-cognito" else "AuthenticateOidcConfig"
        ]
        assert config["OnUnauthenticatedRequest"] == "authenticate"  # never passed on without a sign-in
        assert config["SessionTimeout"] == 8 * 3600
        assert forward["Type"] == "forward"
        assert _target_group_service(synth, forward["TargetGroupArn"]["Ref"]) == expected_service[host]
    # Every action that forwards is preceded by a sign-in: no unauthenticated path to a webserver.
    forwarding = [
        action
        for listener in synth.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
        for action in listener["Properties"]["DefaultActions"]
        if action["Type"] == "forward"
    ]
    assert forwarding == []


def test_cognito_rules_use_one_client_per_role(variant: Synthesized) -> None:
    viewer_host, operator_host = HOSTS["variant"]
    clients = {r["Properties"]["ClientName"]: lid for lid, r in variant.of_type("AWS::Cognito::UserPoolClient").items()}
    pool, _ = variant.one("AWS::Cognito::UserPool")
    domain, _ = variant.one("AWS::Cognito::UserPoolDomain")
    for host, role in ((viewer_host, "viewer"), (operator_host, "operator")):
        config = _rules(variant)[host]["Actions"][0]["AuthenticateCognitoConfig"]
        assert config["UserPoolClientId"] == {"Ref": clients[role]}
        assert config["UserPoolArn"] == {"Fn::GetAtt": [pool, "Arn"]}
        assert config["UserPoolDomain"] == {"Ref": domain}
        client = variant.resources[clients[role]]["Properties"]
        assert client["CallbackURLs"] == [f"https://{host}/oauth2/idpresponse"]
        assert client["GenerateSecret"] is True and client["AllowedOAuthFlows"] == ["code"]
        assert client["SupportedIdentityProviders"] == ["COGNITO"]


def test_the_cognito_pool_is_admin_only_with_mfa_a_strong_password_and_threat_protection(variant: Synthesized) -> None:
    _, pool = variant.one("AWS::Cognito::UserPool")
    properties = pool["Properties"]
    assert properties["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert properties["MfaConfiguration"] == "ON" and properties["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert properties["Policies"]["PasswordPolicy"] == {
        "MinimumLength": 14,
        "RequireLowercase": True,
        "RequireUppercase": True,
        "RequireNumbers": True,
        "RequireSymbols": True,
        "TemporaryPasswordValidityDays": 3,
    }
    assert properties["UserPoolTier"] == "PLUS"
    assert properties["UserPoolAddOns"] == {"AdvancedSecurityMode": "ENFORCED"}
    assert properties["DeletionProtection"] == "ACTIVE" and pool["DeletionPolicy"] == "Retain"
    (group,) = [g["Properties"] for g in variant.of_type("AWS::Cognito::UserPoolGroup").values()]
    assert group["GroupName"] == "operators"


def test_the_operators_only_trigger_guards_token_generation(variant: Synthesized) -> None:
    _, pool = variant.one("AWS::Cognito::UserPool")
    function_lid, function = variant.one("AWS::Lambda::Function")
    assert pool["Properties"]["LambdaConfig"] == {"PreTokenGeneration": {"Fn::GetAtt": [function_lid, "Arn"]}}
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.14" and properties["Handler"] == "index.handler"
    assert "def handler(event" in properties["Code"]["ZipFile"]  # functions/operators_only.py, inline
    assert properties["Environment"]["Variables"] == {
        "OPERATOR_CLIENT_NAME": "operator",
        "OPERATORS_GROUP": "operators",
    }
    pool_lid, _ = variant.one("AWS::Cognito::UserPool")
    describe = [
        s
        for p in variant.of_type("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "cognito-idp:DescribeUserPoolClient"
    ]
    assert describe == [
        {
            "Action": "cognito-idp:DescribeUserPoolClient",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [pool_lid, "Arn"]},
        }
    ]
    _, permission = variant.one("AWS::Lambda::Permission")
    assert permission["Properties"]["Principal"] == "cognito-idp.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [pool_lid, "Arn"]}


def test_oidc_rules_use_the_two_clients_and_take_their_secrets_from_secrets_manager(oidc: Synthesized) -> None:
    viewer_host, operator_host = HOSTS["oidc"]
    for host, role in ((viewer_host, "viewer"), (operator_host, "operator")):
        config = _rules(oidc)[host]["Actions"][0]["AuthenticateOidcConfig"]
        assert config["ClientId"] == OIDC_CONTEXT[f"oidc{role.capitalize()}ClientId"]
        assert (config["Issuer"], config["TokenEndpoint"]) == (
            OIDC_CONTEXT["oidcIssuer"],
            OIDC_CONTEXT["oidcTokenEndpoint"],
        )
        assert config["AuthorizationEndpoint"] == OIDC_CONTEXT["oidcAuthorizationEndpoint"]
        assert config["UserInfoEndpoint"] == OIDC_CONTEXT["oidcUserInfoEndpoint"]
        assert config["ClientSecret"] == (
            f"{{{{resolve:secretsmanager:intervalprocessing/oidc-client-secrets:SecretString:{role}::}}}}"
        )
    assert not oidc.of_type("AWS::Cognito::UserPool") and not oidc.of_type("AWS::Lambda::Function")


def test_the_certificate_is_the_given_arn_or_dns_validated_in_the_zone_with_records(
    variant: Synthesized, oidc: Synthesized
) -> None:
    assert _listeners(oidc)[443]["Certificates"] == [{"CertificateArn": CERTIFICATE_ARN}]
    assert not oidc.of_type("AWS::CertificateManager::Certificate") and not oidc.of_type("AWS::Route53::RecordSet")
    certificate_lid, certificate = variant.one("AWS::CertificateManager::Certificate")
    assert _listeners(variant)[443]["Certificates"] == [{"CertificateArn": {"Ref": certificate_lid}}]
    viewer_host, operator_host = HOSTS["variant"]
    assert certificate["Properties"]["DomainName"] == viewer_host
    assert certificate["Properties"]["SubjectAlternativeNames"] == [operator_host]
    assert certificate["Properties"]["ValidationMethod"] == "DNS"
    assert {o["HostedZoneId"] for o in certificate["Properties"]["DomainValidationOptions"]} == {
        "Z0123456789ABCDEFGHIJ"
    }
    balancer, _ = variant.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
    records = {r["Properties"]["Name"]: r["Properties"] for r in variant.of_type("AWS::Route53::RecordSet").values()}
    assert set(records) == {f"{viewer_host}.", f"{operator_host}."}
    for record in records.values():
        assert record["Type"] == "A" and record["HostedZoneId"] == "Z0123456789ABCDEFGHIJ"
        assert record["AliasTarget"]["DNSName"]["Fn::Join"][1][1] == {"Fn::GetAtt": [balancer, "DNSName"]}


@pytest.mark.parametrize("configuration", ["variant", "oidc"])
def test_waf_is_on_by_default_with_the_managed_rule_groups_and_a_rate_limit(
    configuration: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(configuration)
    acl_lid, acl = synth.one("AWS::WAFv2::WebACL")
    _, association = synth.one("AWS::WAFv2::WebACLAssociation")
    balancer, _ = synth.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert association["Properties"] == {
        "ResourceArn": {"Ref": balancer},
        "WebACLArn": {"Fn::GetAtt": [acl_lid, "Arn"]},
    }
    properties = acl["Properties"]
    assert (properties["Scope"], properties["DefaultAction"]) == ("REGIONAL", {"Allow": {}})
    rules = {rule["Name"]: rule for rule in properties["Rules"]}
    assert list(rules) == [
        "AWSManagedRulesAmazonIpReputationList",
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "RateLimitPerIp",
    ]
    for name in list(rules)[:3]:
        statement = rules[name]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", name)
        assert rules[name]["OverrideAction"] == {"None": {}}  # the group's own block actions apply
    # Only the body-size rule of the common set counts instead of blocking (the UI's GraphQL bodies exceed 8 KB).
    assert rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}
    ]
    rate = rules["RateLimitPerIp"]
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": 2000,
        "AggregateKeyType": "IP",
        "EvaluationWindowSec": 300,
    }
    _, logging = synth.one("AWS::WAFv2::LoggingConfiguration")
    assert logging["Properties"]["LoggingFilter"]["DefaultBehavior"] == "DROP"  # only what WAF blocks or counts
    log_group = next(
        g["Properties"]
        for lid, g in synth.of_type("AWS::Logs::LogGroup").items()
        if {"Fn::GetAtt": [lid, "Arn"]} in logging["Properties"]["LogDestinationConfigs"]
    )
    assert log_group["LogGroupName"] == "aws-waf-logs-intervalprocessing-ui"


def test_waf_can_be_switched_off_and_the_rate_limit_set(synth_with: Callable[..., Synthesized]) -> None:
    context = {
        "webserverLoadBalancer": "internal",
        "viewerHostName": "a.example.com",
        "operatorHostName": "b.example.com",
        "certificateArn": CERTIFICATE_ARN,
    }
    assert not synth_with(**context, waf="false").of_type("AWS::WAFv2::WebACL")
    _, acl = synth_with(**context, wafRateLimit="500").one("AWS::WAFv2::WebACL")
    (rate,) = [rule for rule in acl["Properties"]["Rules"] if rule["Name"] == "RateLimitPerIp"]
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == 500


def test_the_viewer_runs_the_read_only_webserver_and_the_operator_the_full_one(variant: Synthesized) -> None:
    viewer, operator = (
        _container(variant, "IntervalProcessing-Viewer"),
        _container(variant, "IntervalProcessing-Webserver"),
    )
    options = ["-h", "0.0.0.0", "-p", "3000", "-w", WORKSPACE]
    assert viewer["Command"] == ["dagster-webserver", *options, "--read-only"]
    # The same webserver inside the sign-on and audit wrapper (tests/test_audit.py).
    assert operator["Command"] == ["intervalprocessing-webserver", *options]
    # The same definitions and instance as every other process (the module docstring of dagster_services says why);
    # the operator's own settings are its sign-on and its audit file, the viewer's its read-only Postgres role.
    environment = {e["Name"]: e["Value"] for e in viewer["Environment"] if e["Name"] != "DAGSTER_PG_USERNAME"}
    assert environment == {
        e["Name"]: e["Value"]
        for e in operator["Environment"]
        if not e["Name"].startswith("WEBSERVER_") and e["Name"] != "DAGSTER_PG_USERNAME"
    }
    assert environment["INTERVALPROCESSING_WEBSERVER_URL"] == "https://dagster-ops.example.com"
    assert {s["Name"] for s in viewer["Secrets"]} == {"MONGODB_URI", "DAGSTER_PG_PASSWORD"}
    services = {r["Properties"]["ServiceName"]: r["Properties"] for r in variant.of_type("AWS::ECS::Service").values()}
    assert not services["dagster-viewer"].get("EnableExecuteCommand")
    assert services["dagster-viewer"]["NetworkConfiguration"] == services["dagster-webserver"]["NetworkConfiguration"]


def test_the_viewer_role_reads_compute_logs_and_task_definitions_only(variant: Synthesized) -> None:
    role = variant.logical_id(variant.stack.node.find_child("DagsterServices").node.find_child("ViewerTaskRole"))
    actions = {
        action
        for policy in variant.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert actions == {"s3:GetObject", "s3:ListBucket", "ecs:DescribeTaskDefinition"}  # no stop, no delete


def test_a_viewer_alarm_joins_the_two(variant: Synthesized) -> None:
    alarms = {r["Properties"]["AlarmName"]: r["Properties"] for r in variant.of_type("AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {
        "intervalprocessing-DaemonNoRunningTask",
        "intervalprocessing-WebserverNoRunningTask",
        "intervalprocessing-ViewerNoRunningTask",
        "intervalprocessing-DatabaseFreeStorageLow",  # the database's two (test_database.py)
        "intervalprocessing-DatabaseCpuCreditsLow",
    }
    dimensions = {d["Name"]: d["Value"] for d in alarms["intervalprocessing-ViewerNoRunningTask"]["Dimensions"]}
    viewer = variant.stack.node.find_child("DagsterServices").viewer_service
    assert dimensions["ServiceName"] == {"Fn::GetAtt": [variant.logical_id(viewer), "Name"]}
