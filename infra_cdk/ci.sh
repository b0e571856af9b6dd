#!/usr/bin/env bash
# CI for the CDK subproject, runnable on a clean clone: `bash infra_cdk/ci.sh` from anywhere.
#
# 1. its own virtualenv (infra_cdk/.venv: aws-cdk-lib is ~430 MB and must not enter the Dagster environment),
# 2. the pinned CDK CLI from npm (package-lock.json),
# 3. lint, then the pytest suite (assertions + cdk-nag, offline),
# 4. `cdk synth --no-lookups` exactly as an operator runs it: with defaults, with every optional switch on (the
#    internet-facing load balancer with Cognito sign-on and a DNS-validated certificate), and with the other sign-on
#    (an internal load balancer, an OIDC identity provider, a certificate by ARN); cfn-lint on the three templates,
# 5. the local deploy test: deploy-local.sh bootstraps, deploys and destroys the app against moto on 127.0.0.1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20  # Node 20 on this machine: keep jsii's banner out of logs
export CDK_DISABLE_VERSION_CHECK=1                     # no network call to look for a newer CLI

step() { printf '\n== infra_cdk: %s\n' "$*"; }

if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv"
  python3 -m venv .venv
fi
step "installing requirements-dev.txt"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
export PATH="$PWD/.venv/bin:$PATH"  # cdk.json's `python3 app.py` must be the venv's python

step "npm ci (pinned aws-cdk CLI)"
npm ci --no-audit --no-fund --loglevel=error

step "ruff"
ruff check stacks functions tests app.py local_readback.py
ruff format --check stacks functions tests app.py local_readback.py

step "pytest"
python -m pytest -q tests

# Options for the second synth: every switch that adds or changes resources.
variant=(-c webserverLoadBalancer=internet-facing -c viewerHostName=dagster.example.com
  -c operatorHostName=dagster-ops.example.com -c hostedZoneId=Z0123456789ABCDEFGHIJ -c hostedZoneName=example.com
  -c dbMultiAz=true -c dbDeletionProtection=false -c webserverExecCommand=false -c alertEmail=oncall@example.com)
# ... and for the third: the load balancer's other shape and sign-on.
oidc=(-c webserverLoadBalancer=internal -c webserverAllowedCidr=10.0.0.0/8 -c viewerHostName=dagster.corp.example
  -c operatorHostName=dagster-ops.corp.example
  -c certificateArn=arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555
  -c signOn=oidc -c oidcIssuer=https://idp.example.com -c oidcAuthorizationEndpoint=https://idp.example.com/authorize
  -c oidcTokenEndpoint=https://idp.example.com/token -c oidcUserInfoEndpoint=https://idp.example.com/userinfo
  -c oidcViewerClientId=viewer-client -c oidcOperatorClientId=operator-client)
# W3005 (redundant DependsOn) is how CDK orders an ECS service after its load balancer listener; it is harmless.
lint_ignores=(--ignore-checks W3005)

step "cdk synth (defaults), offline"
rm -rf cdk.out cdk.out.variant cdk.out.oidc
npx cdk synth --no-lookups --no-notices --quiet
step "cdk synth (optional resources on), offline"
npx cdk synth --no-lookups --no-notices --quiet --output cdk.out.variant "${variant[@]}"
step "cdk synth (internal load balancer, OIDC sign-on), offline"
npx cdk synth --no-lookups --no-notices --quiet --output cdk.out.oidc "${oidc[@]}"

step "cfn-lint"
cfn-lint "${lint_ignores[@]}" -- cdk.out/IntervalProcessing.template.json cdk.out.variant/IntervalProcessing.template.json \
  cdk.out.oidc/IntervalProcessing.template.json

step "cdk deploy + destroy against moto (deploy-local.sh)"
python -m pytest -q -m deploy_local tests/test_deploy_local.py

step "OK"
