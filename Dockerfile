# One image for the Dagster webserver, the Dagster daemon and every run task (deploy/README.md: "Deploying to AWS").
# The ECS task definitions choose the process by their command; without one, the image runs the old `processToRun`
# entry point, so the old IntervalProcessing-<Process> task definitions can run it unchanged during the migration.
#
# Nothing secret or environment-specific is baked in: MongoDB URI, Postgres password and every address come from the
# task definitions' environment and ECS secrets at run time (the old image shipped config.json with credentials).
#
# deploy/build-image.sh builds it (deploy/README.md, "Building the image"). BASE_IMAGE is only for a machine that cannot
# pull the official image: the script then bootstraps a base of the same Python minor version from Debian's packages.
# Pip inside the build reads the building machine's index settings from an optional BuildKit secret mounted for the
# one RUN step (never a build argument, which `docker history` would show); without it pip uses its defaults.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/dagster/app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml (or the install steps) change.
COPY pyproject.toml ./
COPY deploy/install.sh deploy/constraints.txt deploy/
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=pip-ca.pem \
    deploy/install.sh deps

# The project itself (no extras: the embedded MongoDB, SecantusDB, stays out), then the image's own checks.
COPY README.md workspace.yaml ./
COPY intervalprocessing_dagster/ intervalprocessing_dagster/
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=pip-ca.pem \
    deploy/install.sh project && deploy/install.sh check && rm -rf build *.egg-info

# A service user. DAGSTER_HOME is its own (Dagster keeps local state there, e.g. step outputs under storage/); the
# production dagster.yaml in it belongs to root and is read-only. /var/log/intervalprocessing is where the operators'
# webserver appends its audit lines, on a task volume its audit-log container reads (infra_cdk/stacks/
# dagster_services.py): Fargate gives such a volume the owner and mode of the image's folder declared as a VOLUME.
RUN useradd --system --uid 10001 --user-group --home-dir /opt/dagster --no-create-home dagster \
    && install -d -o dagster -g dagster -m 0750 "$DAGSTER_HOME" \
    && install -d -o dagster -g dagster -m 0750 /var/log/intervalprocessing
VOLUME ["/var/log/intervalprocessing"]
COPY --chown=root:root --chmod=0644 deploy/dagster.yaml /opt/dagster/dagster_home/dagster.yaml

USER dagster
EXPOSE 3000
CMD ["intervalprocessing"]
