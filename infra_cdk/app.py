#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy` runs this (see cdk.json). Settings come from context (README)."""

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.intervalprocessing_stack import IntervalProcessingStack

app = App()
# No env: the template is account- and region-agnostic, so `cdk synth` works offline and one template deploys
# anywhere (`cdk deploy` takes the account and region from the caller's credentials).
IntervalProcessingStack(app, "IntervalProcessing", description="IntervalProcessing on Dagster: ECS, RDS, S3, ECR")
# Fail the synth on any AwsSolutions finding that is not acknowledged, with its reason, next to its resource.
Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
