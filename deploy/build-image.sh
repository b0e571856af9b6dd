#!/usr/bin/env bash
# Build the production image from the repository's Dockerfile (deploy/README.md, "Building the image").
#
#   deploy/build-image.sh [TAG]        default TAG: intervalprocessing-dagster:local
#
# 1. The base. The Dockerfile's BASE_IMAGE default (the official python:3.11-slim-bookworm) is used when it is
#    present or can be pulled. Otherwise (no registry reachable) a stand-in of the same Python minor version is
#    bootstrapped from Debian's own packages with mmdebstrap and tagged LOCAL_BASE_TAG; it is reused while its recipe
#    is unchanged. deploy/README.md lists exactly how it differs from the official image.
# 2. Pip's index settings. The machine's pip configuration (`pip config list`: index-url, extra-index-url,
#    trusted-host, cert, proxy, timeout, retries) is written to a private temporary pip.conf, and the CA bundle it
#    names is copied next to it; both reach the two pip steps as BuildKit secrets (mounted for that RUN only, never
#    in a layer, in `docker history` or in the image config). Local paths (file: indexes, find-links directories,
#    constraint files) are left out: the build cannot see this machine's disk.
# 3. The build, on the host network (so pip reaches the same index this machine does), with BuildKit.
#
# DOCKER names the client (default: the first of `docker` on PATH and /usr/bin/docker that can run a BuildKit build).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG="${1:-intervalprocessing-dagster:local}"
LOCAL_BASE_TAG="${LOCAL_BASE_TAG:-intervalprocessing-base:python3.11-bookworm-debian}"
DEBIAN_SUITE=bookworm
# What the stand-in base holds, besides minbase: the official slim image's runtime packages (ca-certificates,
# netbase, tzdata) and Debian's Python with its venv module (pip bootstraps from it).
BASE_PACKAGES=python3,python3-venv,ca-certificates,netbase,tzdata

log() { printf '== build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

choose_docker() {
    # Docker 23+ clients build with BuildKit only through the buildx plugin; older clients (Debian bookworm's
    # docker.io is 20.10) use the daemon's built-in BuildKit with DOCKER_BUILDKIT=1.
    local candidate version
    for candidate in ${DOCKER:-} docker /usr/bin/docker; do
        command -v "$candidate" >/dev/null || continue
        if "$candidate" buildx version >/dev/null 2>&1; then
            echo "$candidate buildx build --load"; return
        fi
        version="$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)"
        if [[ "${version%%.*}" =~ ^[0-9]+$ ]] && (( ${version%%.*} < 23 )); then
            echo "$candidate build"; return
        fi
    done
    die "no Docker client that can run a BuildKit build (a client with the buildx plugin, or one older than 23:
apt-get install docker.io gives /usr/bin/docker 20.10)"
}

BUILD="$(choose_docker)"
DOCKER_CLI="${BUILD%% *}"
export DOCKER_BUILDKIT=1
"$DOCKER_CLI" info >/dev/null 2>&1 || die "the Docker daemon does not answer ($DOCKER_CLI info failed; DOCKER_HOST=${DOCKER_HOST:-unset})"

official_base="$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)"
[[ "$official_base" =~ ^python:([0-9]+\.[0-9]+)-slim-([a-z]+)$ ]] \
    || die "Dockerfile: ARG BASE_IMAGE=$official_base is not python:<major.minor>-slim-<debian suite>"
python_minor="${BASH_REMATCH[1]}"
[[ "${BASH_REMATCH[2]}" == "$DEBIAN_SUITE" ]] || die "the Dockerfile's base is Debian ${BASH_REMATCH[2]}, this script bootstraps $DEBIAN_SUITE"

build_local_base() {
    # The recipe's hash is the base's label: change a package or a step and the base is rebuilt.
    local recipe recipe_hash tarball
    recipe="mmdebstrap --variant=minbase --include=$BASE_PACKAGES $DEBIAN_SUITE; python3 -m venv /usr/local; v2"
    recipe_hash="$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
    if [[ "$("$DOCKER_CLI" image inspect --format '{{index .Config.Labels "intervalprocessing.base-recipe"}}' \
            "$LOCAL_BASE_TAG" 2>/dev/null || true)" == "$recipe_hash" ]]; then
        log "reusing the local base $LOCAL_BASE_TAG (recipe $recipe_hash)"
        return
    fi
    command -v mmdebstrap >/dev/null || die "$official_base cannot be pulled and mmdebstrap is missing (apt-get install mmdebstrap)"
    log "bootstrapping $LOCAL_BASE_TAG from Debian $DEBIAN_SUITE packages"
    tarball="$(mktemp -d)/base.tar"
    # minbase with a merged /usr (as the official image), without documentation, man pages and translations;
    # /usr/local becomes a virtual environment of Debian's python3, so python, pip and the console scripts that pip
    # installs live in /usr/local/bin and packages in /usr/local/lib/python3.X/site-packages, as in the official
    # image, and Debian's "externally managed" guard on /usr/bin/python3 is not in the way.
    mmdebstrap --quiet --variant=minbase --mode=root --format=tar --include="$BASE_PACKAGES" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='chroot "$1" python3 -m venv /usr/local' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
        "$DEBIAN_SUITE" "$tarball"
    "$DOCKER_CLI" import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL intervalprocessing.base-recipe=$recipe_hash" \
        --change "LABEL intervalprocessing.base-stands-in-for=$official_base" \
        --change 'CMD ["python3"]' \
        "$tarball" "$LOCAL_BASE_TAG" >/dev/null
    rm -rf "$(dirname "$tarball")"
    local found
    found="$("$DOCKER_CLI" run --rm --network host "$LOCAL_BASE_TAG" python3 -c \
        'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    [[ "$found" == "$python_minor" ]] || die "Debian $DEBIAN_SUITE's python3 is $found, the Dockerfile's base has $python_minor"
}

base="$official_base"
if "$DOCKER_CLI" image inspect "$official_base" >/dev/null 2>&1 || "$DOCKER_CLI" pull --quiet "$official_base" >/dev/null 2>&1; then
    log "base: the official $official_base"
else
    log "$official_base cannot be pulled: using a Debian-built base of Python $python_minor"
    build_local_base
    base="$LOCAL_BASE_TAG"
fi

secrets_dir="$(mktemp -d)"
trap 'rm -rf "$secrets_dir"' EXIT
chmod 0700 "$secrets_dir"
python3 - "$secrets_dir" <<'PY'
"""This machine's pip index settings as a pip.conf for the build; its CA bundle next to it."""
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

KEPT = {"index-url", "extra-index-url", "trusted-host", "cert", "proxy", "timeout", "default-timeout", "retries"}
CA_IN_BUILD = "/run/secrets/pip-ca.pem"  # where the Dockerfile's secret mount puts it

out = Path(sys.argv[1])
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
from_files: dict[str, str] = {}
from_env: dict[str, str] = {}
for line in listed.stdout.splitlines():  # e.g. global.index-url='https://...'; :env:.cert='/etc/ssl/...'
    scoped, _, value = line.partition("=")
    scope, _, key = scoped.rpartition(".")
    if key in KEPT and scope in ("global", "install", ":env:"):
        (from_env if scope == ":env:" else from_files)[key] = value.strip().strip("'\"")
config = {**from_files, **from_env}  # a PIP_* variable overrides the files, as in pip itself
if "extra-index-url" in config:  # file: indexes are this machine's disk, which the build cannot see
    remote = [url for url in config["extra-index-url"].split() if not url.startswith("file:")]
    config["extra-index-url"] = " ".join(remote)
    if not remote:
        del config["extra-index-url"]
if config.get("index-url", "").startswith("file:"):
    del config["index-url"]
if "cert" in config:
    shutil.copyfile(config["cert"], out / "pip-ca.pem")
    config["cert"] = CA_IN_BUILD
else:
    (out / "pip-ca.pem").write_text("")
parser = configparser.ConfigParser(interpolation=None)
parser["global"] = config
with open(out / "pip.conf", "w") as handle:
    parser.write(handle)
print(f"== build-image: pip settings for the build (as secrets): {', '.join(sorted(config)) or 'none'}", file=sys.stderr)
PY

log "building $TAG on $base"
started=$SECONDS
# shellcheck disable=SC2086 # BUILD is a command and its subcommand words
$BUILD --network host --progress plain \
    --build-arg BASE_IMAGE="$base" \
    --secret id=pip.conf,src="$secrets_dir/pip.conf" \
    --secret id=pip-ca.pem,src="$secrets_dir/pip-ca.pem" \
    --tag "$TAG" .
size="$("$DOCKER_CLI" image inspect --format '{{.Size}}' "$TAG")"
log "built $TAG in $((SECONDS - started)) s; image size $((size / 1000000)) MB (base $base)"
