#!/bin/sh
# The production image's Python install steps, in one place: the Dockerfile runs them, and CI runs the same steps
# in a fresh virtualenv too, so a broken install fails CI fast, before deploy/build-image.sh builds the image.
#
#   deploy/install.sh requirements  print the runtime requirements (pyproject's [project].dependencies, no extras)
#   deploy/install.sh deps          install them at the versions pinned in deploy/constraints.txt: the Dockerfile's
#                                   cached layer, rebuilt only when pyproject or the constraints change
#   deploy/install.sh project       install the package itself, without dependencies and without any extra
#   deploy/install.sh check         what must hold in the image: consistent dependencies, no embedded MongoDB
#                                   (SecantusDB, GPL) installed, production definitions load, the console script
#                                   and the run launcher module are there
#   deploy/install.sh all           deps, project, check
#
# PYTHON selects the interpreter (default: python3), e.g. PYTHON=/tmp/image-venv/bin/python deploy/install.sh all.
# Runs from the repository root (in the image: /opt/dagster/app).
set -eu

PYTHON="${PYTHON:-python3}"
cd "$(dirname "$0")/.."

requirements() {
    "$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))'
}

deps() {
    list="$(mktemp)"
    requirements > "$list"
    "$PYTHON" -m pip install --no-cache-dir --requirement "$list" --constraint deploy/constraints.txt
    rm -f "$list"
}

project() {
    # No extras: `embedded` (SecantusDB) and `dev` (tests) stay out of production.
    "$PYTHON" -m pip install --no-cache-dir --no-deps .
}

check() {
    "$PYTHON" -m pip check
    # A throw-away URI: the definitions must choose the production MongoResource without connecting anywhere.
    # Run from / so the *installed* package is imported, not the source tree in the current directory.
    root="$(pwd)"
    cd / && env MONGODB_URI="mongodb://install-check.invalid/" "$PYTHON" - <<'PY'
import importlib.metadata
import importlib.util
import sys

if importlib.util.find_spec("secantus") is not None:
    sys.exit("SecantusDB (the `embedded` extra, GPL-2.0) is installed: it must stay out of the production image")
scripts = {entry.name for entry in importlib.metadata.entry_points(group="console_scripts")}
missing = {"intervalprocessing", "dagster", "dagster-daemon", "dagster-webserver"} - scripts
if missing:
    sys.exit(f"console scripts missing: {sorted(missing)}")

import intervalprocessing_dagster.instance.ecs_run_launcher  # noqa: E402,F401 - the run launcher deploy/dagster.yaml names
from intervalprocessing_dagster.definitions import defs  # noqa: E402
from intervalprocessing_dagster.mongo.resources import EmbeddedMongoResource  # noqa: E402

mongo = defs.resources["mongo"]
if isinstance(mongo, EmbeddedMongoResource):
    sys.exit("with MONGODB_URI set the definitions still chose the embedded MongoDB")
print(f"install check passed: {len(list(defs.jobs))} jobs, production MongoDB resource, no embedded extra")
PY
    cd "$root"
}

case "${1:-}" in
    requirements) requirements ;;
    deps) deps ;;
    project) project ;;
    check) check ;;
    all) deps; project; check ;;
    *) echo "usage: $0 requirements|deps|project|check|all" >&2; exit 2 ;;
esac
