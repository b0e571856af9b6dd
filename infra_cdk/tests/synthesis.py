"""Synthesizing the stack the way `cdk synth` does, and reading back what it wrote.

The same feature flags as `cdk.json`, and cdk-nag's AwsSolutions pack registered as a validation plugin. A nag
violation does not raise out of `synthesize`; it is recorded, so the nag test reports it while the other tests still
check the template.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from stacks.intervalprocessing_stack import IntervalProcessingStack

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"
STACK_NAME = "IntervalProcessing"


@dataclass(frozen=True)
class Synthesized:
    """One synthesized configuration: the template (as assertions and as JSON), the stack, and cdk-nag's report."""

    stack: IntervalProcessingStack
    template: Template
    resources: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    nag_violations: list[dict[str, Any]]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id -> resource, for every resource of `resource_type`."""
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def one(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        """The only resource of `resource_type` (fails the test if there is not exactly one)."""
        found = self.of_type(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))

    def logical_id(self, construct: Any) -> str:
        """The logical id of an L2 construct's CloudFormation resource."""
        return str(self.stack.resolve(self.stack.get_logical_id(construct.node.default_child)))


def synthesize(
    outdir: Path, extend: Callable[[IntervalProcessingStack], None] | None = None, **context: Any
) -> Synthesized:
    """Build the app with `cdk.json`'s context plus `context`, run cdk-nag, and read back what was written.

    `extend` adds resources to the stack before synthesis (to show that the checks catch a bad one).
    """
    app = App(context={**json.loads(CDK_JSON.read_text())["context"], **context}, outdir=str(outdir))
    stack = IntervalProcessingStack(app, STACK_NAME)
    if extend is not None:
        extend(stack)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as error:  # cdk-nag found something; details are in the report read below
        if "ValidationFailed" not in str(error):
            raise
    report = json.loads((outdir / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin["violations"]]
    template_json = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    return Synthesized(
        stack=stack,
        template=Template.from_json(template_json),
        resources=template_json["Resources"],
        outputs=template_json.get("Outputs", {}),
        nag_violations=violations,
    )
