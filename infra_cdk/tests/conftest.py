"""Synthesize the stack once per configuration and session: a synth takes seconds, the assertions microseconds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.synthesis import Synthesized, synthesize


@pytest.fixture(scope="session")
def synth_with(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Synthesized]]:
    """A synthesizer that caches by context, so each configuration is synthesized once per session."""
    cache: dict[str, Synthesized] = {}

    def synth(**context: Any) -> Synthesized:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            cache[key] = synthesize(tmp_path_factory.mktemp("cdk.out"), **context)
        return cache[key]

    yield synth


@pytest.fixture(scope="session")
def default(synth_with: Callable[..., Synthesized]) -> Synthesized:
    """The stack as `cdk deploy` with no -c options would create it."""
    return synth_with()


#: The load balancer's sign-on through an OIDC identity provider (tests/test_web_access.py, ci.sh's third synth).
OIDC_CONTEXT = {
    "signOn": "oidc",
    "oidcIssuer": "https://idp.example.com",
    "oidcAuthorizationEndpoint": "https://idp.example.com/oauth2/authorize",
    "oidcTokenEndpoint": "https://idp.example.com/oauth2/token",
    "oidcUserInfoEndpoint": "https://idp.example.com/oauth2/userinfo",
    "oidcViewerClientId": "viewer-client-id",
    "oidcOperatorClientId": "operator-client-id",
}
CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="session")
def variant(synth_with: Callable[..., Synthesized]) -> Synthesized:
    """Every optional switch flipped: internet-facing load balancer with Cognito sign-on, a certificate and records in
    a hosted zone, Multi-AZ, alert email, other names, sizes, retention."""
    return synth_with(
        webserverLoadBalancer="internet-facing",
        viewerHostName="dagster.example.com",
        operatorHostName="dagster-ops.example.com",
        hostedZoneId="Z0123456789ABCDEFGHIJ",
        hostedZoneName="example.com",
        webserverExecCommand="false",
        dbMultiAz="true",
        dbDeletionProtection="false",
        imageTag="v1.2.3",
        reportsBucketName="acme-intervalprocessing-reports",
        logRetentionDays="30",
        computeLogsPrefix="logs/dagster/",
        reportsPrefix="Reports",
        stepOutputsPrefix="outputs",
        stepOutputsExpirationDays="3",
        alertEmail="oncall@example.com",
    )


@pytest.fixture(scope="session")
def oidc(synth_with: Callable[..., Synthesized]) -> Synthesized:
    """The other load balancer: internal, a narrower network, an ACM certificate by ARN, an OIDC identity provider."""
    return synth_with(
        webserverLoadBalancer="internal",
        webserverAllowedCidr="10.99.0.0/16",
        viewerHostName="dagster.corp.example",
        operatorHostName="dagster-ops.corp.example",
        certificateArn=CERTIFICATE_ARN,
        **OIDC_CONTEXT,
    )
