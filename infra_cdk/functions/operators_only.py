"""Cognito pre-token-generation trigger: the operator app client signs in members of the operators group only.

The stack's user pool has two app clients, one per UI (`stacks/sign_on.py`): the load balancer signs people in to
the viewer UI with one and to the operator UI with the other. Cognito lets anyone in the pool use any client, so
this trigger, which Cognito calls before it issues tokens, refuses the operator client's tokens to a user outside
the operators group; the sign-in page then shows the refusal, and the load balancer never opens a session. Which
client asks is in the event (`callerContext.clientId`); its name, which the stack sets, says whether it is the
operator one (Cognito's event carries the client id only, and the stack cannot hand this function the id without a
circular reference: the pool names the function, the client belongs to the pool).

Deployed as inline code (no asset to upload); the tests import it and call `handler` with Cognito's event shape.
"""

from __future__ import annotations

import os
from typing import Any

import boto3

OPERATOR_CLIENT_NAME = os.environ.get("OPERATOR_CLIENT_NAME", "operator")
OPERATORS_GROUP = os.environ.get("OPERATORS_GROUP", "operators")

_client_names: dict[str, str] = {}


def client_name(user_pool_id: str, client_id: str) -> str:
    """The app client's name, asked of Cognito once per client and warm Lambda instance."""
    if client_id not in _client_names:
        described = boto3.client("cognito-idp").describe_user_pool_client(UserPoolId=user_pool_id, ClientId=client_id)
        _client_names[client_id] = described["UserPoolClient"]["ClientName"]
    return _client_names[client_id]


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """Return the event unchanged (tokens as Cognito made them), or raise to refuse the sign-in."""
    if client_name(event["userPoolId"], event["callerContext"]["clientId"]) != OPERATOR_CLIENT_NAME:
        return event
    groups = event["request"].get("groupConfiguration", {}).get("groupsToOverride") or []
    if OPERATORS_GROUP not in groups:
        # Cognito shows this text on its sign-in page: say what to do, name nothing internal.
        raise PermissionError(
            f"{event.get('userName', 'this user')} is not in the {OPERATORS_GROUP} group: "
            "use the viewer address, or ask an administrator to add you to the group"
        )
    return event
