#!/usr/bin/env bash
# `cdk bootstrap` + `cdk deploy` of the IntervalProcessing stack against a local AWS emulator (moto in server mode),
# then a boto3 read-back of what was created. No AWS account, no Docker, nothing leaves 127.0.0.1.
#
#   bash infra_cdk/deploy-local.sh deploy [-c name=value ...]   # bootstrap, deploy, print the read-back (JSON),
#                                                               # stop the emulator
#   bash infra_cdk/deploy-local.sh destroy [-c name=value ...]  # `cdk destroy` (with LOCAL_AWS_ENDPOINT, see below)
#
# LOCAL_AWS_ENDPOINT=http://127.0.0.1:PORT uses an emulator that is already running (the deploy test starts one,
# deploys, destroys and looks for leftovers against the same one); without it, deploy starts moto on a free port of
# 127.0.0.1 and stops it on exit. LOCAL_DEPLOY_DIR (default: a new temp dir) receives outputs.json, readback.json
# and the emulator's log.
#
# What moto creates and what it skips is in README.md ("Local deploy"): it is a check of the deploy path (ordering,
# references, properties CloudFormation and the CDK CLI accept), not of every property AWS would apply.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
action="${1:-deploy}"
case "$action" in deploy | destroy) ;; *) echo "usage: $0 [deploy|destroy] [-c name=value ...]" >&2; exit 2 ;; esac
shift || true

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_VERSION_CHECK=1 NODE_NO_WARNINGS=1
# Fake credentials and moto's default account: nothing here can reach a real account.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE
account=123456789012
# The context of a local deploy: deletable Postgres (so destroy works), and no CI group (moto's CloudFormation has
# no AWS::IAM::Group; `-c ciGroupName=` is the switch for accounts whose CI pushes with its own role).
# Further `-c name=value` arguments are passed on, to rehearse an operator's own context.
context=(-c dbDeletionProtection=false -c ciGroupName= "$@")

if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
[[ -x node_modules/.bin/cdk ]] || npm ci --no-audit --no-fund --loglevel=error
export PATH="$PWD/.venv/bin:$PATH"  # cdk.json's `python3 app.py` must be the venv's python

work="${LOCAL_DEPLOY_DIR:-$(mktemp -d)}"
mkdir -p "$work"
emulator_pid=""
stop_emulator() { if [[ -n "$emulator_pid" ]]; then kill "$emulator_pid" 2>/dev/null || true; wait "$emulator_pid" 2>/dev/null || true; fi; }
trap stop_emulator EXIT

endpoint="${LOCAL_AWS_ENDPOINT:-}"
if [[ -z "$endpoint" ]]; then
  moto_server -H 127.0.0.1 -p 0 >"$work/moto.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 100); do
    endpoint="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/moto.log" | head -n1 || true)"
    [[ -n "$endpoint" ]] && break
    sleep 0.2
  done
  [[ -n "$endpoint" ]] || { echo "moto did not start; its log:" >&2; cat "$work/moto.log" >&2; exit 1; }
fi
port="${endpoint##*:}"
# Every SDK call of the CDK CLI and of boto3 goes to the emulator. The template URL that the CLI hands to
# CloudFormation is built from AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION: moto finds the bucket in the path only for a
# `localhost` URL (for 127.0.0.1 it would take "127" for a virtual-host bucket name).
export AWS_ENDPOINT_URL="$endpoint"
export AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION="http://localhost:$port"
echo "== local deploy: emulator at $endpoint, files in $work" >&2

cdk() { npx cdk --no-notices "$@"; }
if [[ "$action" == destroy ]]; then
  cdk destroy --all --force "${context[@]}" >&2
  exit 0
fi

cdk bootstrap "aws://$account/us-east-1" >&2
cdk deploy --all --require-approval never --outputs-file "$work/outputs.json" "${context[@]}" >&2
python local_readback.py deployed >"$work/readback.json"
cat "$work/readback.json"
