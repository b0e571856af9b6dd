"""Context parameters: parsed from strings, checked before synthesis, all documented in the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from stacks.config import DeploymentConfig
from tests.conftest import CERTIFICATE_ARN, OIDC_CONTEXT

README = Path(__file__).resolve().parent.parent / "README.md"
LOAD_BALANCER = {
    "webserverLoadBalancer": "internal",
    "viewerHostName": "dagster.example.com",
    "operatorHostName": "dagster-ops.example.com",
    "certificateArn": CERTIFICATE_ARN,
}


def _config(**context: Any) -> DeploymentConfig:
    return DeploymentConfig.from_context(App(context=context).node)


def test_defaults_match_the_old_deployment() -> None:
    config = _config()
    assert config.reports_bucket_name == "intervalprocessing"
    assert config.reports_prefix == "GeneratedFiles/"
    assert config.ecr_repository_name == "intervalprocessing"
    assert config.cluster_name == "intervalprocessing"
    assert config.image_tag == "latest"
    assert config.ci_group_name == "intervalprocessingusers"
    assert (config.webserver_load_balancer, config.load_balancer, config.alert_link_url) == ("none", False, None)
    assert (config.sign_on, config.waf, config.sign_on_session_hours) == ("cognito", True, 8)


def test_command_line_strings_are_parsed() -> None:
    config = _config(
        dbMultiAz="true", webserverExecCommand="no", logRetentionDays="365", daemonCpu="1024", daemonMemoryMiB="2048"
    )
    assert config.db_multi_az is True and config.webserver_exec_command is False
    assert config.log_retention_days == 365 and config.daemon_cpu == 1024


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"reportsBucketName": "Not_A_Bucket"}, "reportsBucketName"),
        ({"logRetentionDays": "42"}, "logRetentionDays 42"),
        ({"auditLogRetentionDays": "2190"}, "auditLogRetentionDays 2190"),
        ({"daemonCpu": 256, "daemonMemoryMiB": 4096}, "daemon: 256 CPU units with 4096 MiB"),
        ({"dbMultiAz": "maybe"}, "dbMultiAz must be true or false"),
        ({"webserverCpu": "lots"}, "webserverCpu must be an integer"),
        ({"webserverCpu": True}, "webserverCpu must be an integer"),
        ({"computeLogsPrefix": "GeneratedFiles/logs"}, "reportsPrefix and computeLogsPrefix must not overlap"),
        ({"stepOutputsPrefix": "dagster/compute-logs/steps"}, "computeLogsPrefix and stepOutputsPrefix must not"),
        ({"stepOutputsPrefix": "*"}, "stepOutputsPrefix"),
        ({"stepOutputsExpirationDays": "0"}, "stepOutputsExpirationDays must be >= 1"),
        ({"webserverUrl": "dagster.example.com"}, "webserverUrl 'dagster.example.com' must be an http(s) URL"),
        ({"webserverUrl": "ftp://dagster.example.com"}, "webserverUrl"),
        ({"alertEmail": "oncall"}, "alertEmail 'oncall' is not one email address"),
        ({"alertEmail": "a@example.com,b@example.com"}, "alertEmail"),
        ({"reportsPrefix": "/"}, "reportsPrefix"),
        ({"imageTag": "has space"}, "imageTag"),
        ({"runHistorySuccessDays": "0"}, "runHistorySuccessDays '0' must be a whole number of days of at least 1"),
        ({"automationHistoryDays": "90d"}, "automationHistoryDays '90d' must be a whole number of days"),
        ({"runHistoryKeepAllDays": -1}, "runHistoryKeepAllDays '-1'"),
        ({"vpcCidr": "10.40.0.0/33"}, "vpcCidr"),
        ({"webserverAllowedCidr": "10.1.2.3/8"}, "webserverAllowedCidr"),  # host bits set: a typo, not a network
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"webserverLoadBalancer": "true"}, "the plain-HTTP true/false switch was removed"),
        ({"webserverLoadBalancer": "public"}, "webserverLoadBalancer 'public' must be one of none, internal"),
        ({"certificateArn": CERTIFICATE_ARN}, "certificateArn only apply with webserverLoadBalancer"),
        ({"webserverAllowedCidr": "10.1.0.0/16"}, "webserverAllowedCidr only apply with webserverLoadBalancer"),
        ({**LOAD_BALANCER, "viewerHostName": ""}, "viewerHostName '' must be a DNS host name"),
        ({**LOAD_BALANCER, "operatorHostName": "https://ops.example.com"}, "operatorHostName"),
        (
            {**LOAD_BALANCER, "operatorHostName": "dagster.example.com"},
            "viewerHostName and operatorHostName must differ",
        ),
        ({**LOAD_BALANCER, "certificateArn": ""}, "needs certificateArn, or hostedZoneId and hostedZoneName"),
        ({**LOAD_BALANCER, "certificateArn": "arn:aws:iam::123456789012:role/x"}, "not an ACM certificate ARN"),
        ({**LOAD_BALANCER, "hostedZoneId": "Z0123"}, "hostedZoneId and hostedZoneName go together"),
        ({**LOAD_BALANCER, "hostedZoneId": "Z0123", "hostedZoneName": "other.org"}, "not in hostedZoneName"),
        ({**LOAD_BALANCER, "signOn": "saml"}, "signOn 'saml' must be cognito or oidc"),
        ({**LOAD_BALANCER, **OIDC_CONTEXT, "oidcTokenEndpoint": "http://idp.example.com/token"}, "oidcTokenEndpoint"),
        ({**LOAD_BALANCER, **OIDC_CONTEXT, "oidcOperatorClientId": ""}, "needs oidcViewerClientId and oidcOperator"),
        ({**LOAD_BALANCER, **OIDC_CONTEXT, "oidcOperatorClientId": "viewer-client-id"}, "must be two clients"),
        ({**LOAD_BALANCER, "cognitoDomainPrefix": "my-cognito-ui"}, "cognitoDomainPrefix"),
        ({**LOAD_BALANCER, "signOnSessionHours": "200"}, "signOnSessionHours must be between 1 and 168"),
        ({**LOAD_BALANCER, "wafRateLimit": "5"}, "wafRateLimit must be at least 10"),
    ],
)
def test_bad_values_stop_the_synth_and_name_the_parameter(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(**context)


def test_the_load_balancer_defaults_to_the_vpc_when_internal_anyone_when_internet_facing() -> None:
    assert _config(**LOAD_BALANCER).load_balancer_allowed_cidr == "10.40.0.0/16"
    internet_facing = _config(**{**LOAD_BALANCER, "webserverLoadBalancer": "internet-facing"})
    assert (internet_facing.internet_facing, internet_facing.load_balancer_allowed_cidr) == (True, "0.0.0.0/0")
    assert _config(**LOAD_BALANCER, webserverAllowedCidr="10.9.0.0/16").load_balancer_allowed_cidr == "10.9.0.0/16"
    # Alerts link to the operator's UI, where a failed run is re-executed; an explicit webserverUrl still wins.
    assert _config(**LOAD_BALANCER).alert_link_url == "https://dagster-ops.example.com"
    assert _config(**LOAD_BALANCER, webserverUrl="https://ops.example.com/").alert_link_url == "https://ops.example.com"


def test_history_windows_given_become_the_applications_variables_and_the_rest_keep_its_defaults() -> None:
    assert _config().history_environment == {}
    config = _config(runHistorySuccessDays=45, runHistoryFailureDays=" 120 ", automationHistoryDays="30")
    assert config.history_environment == {
        "RUN_HISTORY_SUCCESS_DAYS": "45",
        "RUN_HISTORY_FAILURE_DAYS": "120",
        "AUTOMATION_HISTORY_DAYS": "30",
    }


def test_prefix_folders_end_in_exactly_one_slash() -> None:
    config = _config(reportsPrefix="Reports", computeLogsPrefix="logs/dagster//", stepOutputsPrefix="steps")
    assert (config.reports_folder, config.compute_logs_folder) == ("Reports/", "logs/dagster/")
    assert config.step_outputs_folder == "steps/"
    assert _config().step_outputs_folder == "dagster/step-outputs/"  # the default agreed with the Dagster code


def test_readme_documents_every_context_parameter() -> None:
    readme = README.read_text()
    missing = [name for name in DeploymentConfig.context_names() if f"| `{name}`" not in readme]
    assert not missing, f"README.md lacks a row for: {missing}"
