"""cdk-nag acknowledgments that name one resource exactly, so a later, wider grant is still reported."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import Construct


def logical_id(construct: Construct) -> str:
    """The CloudFormation logical id of an L2 construct's resource, as cdk-nag spells it in finding ids."""
    stack = Stack.of(construct)
    resource = construct.node.default_child
    assert isinstance(resource, CfnElement)
    return str(stack.resolve(stack.get_logical_id(resource)))


def acknowledge_wildcard(role: iam.IRole, resource: str, reason: str) -> None:
    """Acknowledge cdk-nag's IAM5 finding for exactly one wildcard resource of `role`'s policy."""
    Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[Resource::{resource}]", reason=reason))
