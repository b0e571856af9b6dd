"""The Cognito trigger that keeps the operator UI's client to the operators group (functions/operators_only.py),
called as Cognito calls it, against a user pool and its two clients in moto's Cognito."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions import operators_only


@pytest.fixture()
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A user pool with the stack's two clients, named as the stack names them; the trigger's name cache emptied."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setattr(operators_only, "_client_names", {})
    with mock_aws():
        cognito = boto3.client("cognito-idp")
        pool_id = cognito.create_user_pool(PoolName="intervalprocessing-ui")["UserPool"]["Id"]
        clients = {
            name: cognito.create_user_pool_client(UserPoolId=pool_id, ClientName=name, GenerateSecret=True)[
                "UserPoolClient"
            ]["ClientId"]
            for name in ("viewer", "operator")
        }
        yield {"pool": pool_id, **clients}


def event(pool: dict[str, str], client: str, groups: list[str]) -> dict[str, Any]:
    """Cognito's pre-token-generation event (version 1) for a hosted-UI sign-in."""
    return {
        "version": "1",
        "triggerSource": "TokenGeneration_HostedAuth",
        "region": "us-east-1",
        "userPoolId": pool["pool"],
        "userName": "person@example.com",
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": pool[client]},
        "request": {
            "userAttributes": {"email": "person@example.com"},
            "groupConfiguration": {"groupsToOverride": groups, "iamRolesToOverride": [], "preferredRole": None},
        },
        "response": {"claimsOverrideDetails": None},
    }


@pytest.mark.parametrize("groups", [[], ["operators"], ["someone-else"]])
def test_everyone_signs_in_to_the_viewer_ui(pool: dict[str, str], groups: list[str]) -> None:
    sign_in = event(pool, "viewer", groups)
    assert operators_only.handler(sign_in, None) is sign_in


def test_an_operator_signs_in_to_the_operator_ui(pool: dict[str, str]) -> None:
    sign_in = event(pool, "operator", ["readers", "operators"])
    assert operators_only.handler(sign_in, None) is sign_in


@pytest.mark.parametrize("groups", [[], ["viewers"]])
def test_anyone_else_is_refused_the_operator_ui_and_told_why(pool: dict[str, str], groups: list[str]) -> None:
    with pytest.raises(PermissionError, match="person@example.com is not in the operators group: use the viewer"):
        operators_only.handler(event(pool, "operator", groups), None)


def test_a_sign_in_without_group_information_is_refused_too(pool: dict[str, str]) -> None:
    sign_in = event(pool, "operator", [])
    del sign_in["request"]["groupConfiguration"]
    with pytest.raises(PermissionError):
        operators_only.handler(sign_in, None)


def test_each_client_is_looked_up_once_per_instance(pool: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = boto3.client

    def counting_client(service: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(service)
        return original(service, *args, **kwargs)

    monkeypatch.setattr(operators_only.boto3, "client", counting_client)
    for _ in range(3):
        operators_only.handler(event(pool, "operator", ["operators"]), None)
        operators_only.handler(event(pool, "viewer", []), None)
    assert calls == ["cognito-idp", "cognito-idp"]
