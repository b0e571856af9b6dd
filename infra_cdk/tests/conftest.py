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


@pytest.fixture(scope="session")
def variant(synth_with: Callable[..., Synthesized]) -> Synthesized:
    """Every optional switch flipped: internal load balancer, Multi-AZ, alert email, other names, sizes, retention."""
    return synth_with(
        webserverLoadBalancer="true",
        webserverAllowedCidr="10.99.0.0/16",
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
