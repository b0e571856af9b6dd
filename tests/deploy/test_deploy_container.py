"""The production image, built by ``deploy/build-image.sh`` and run: what an operator's first deploy depends on.

Marked ``container``: it needs a running Docker daemon (``.ci/run`` starts one when the machine allows) and is
skipped, with the daemon's own error as the reason, when ``docker info`` cannot reach one. The job run at the end
uses the host network, so the container reaches the SecantusDB and moto servers of ``tests/conftest.py`` on
127.0.0.1 as the image's MongoDB and S3.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dagster import DagsterInstance
from pymongo.database import Database

from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.settings import Settings

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
SERVICE_UID = "10001"


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no container engine: no `docker` client on PATH (apt-get install docker.io)")
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60
    )
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        host = os.environ.get("DOCKER_HOST", "unset")
        pytest.skip(f"no container engine: `docker info` failed (DOCKER_HOST={host}): {reason}")
    return docker


def _pip_index_configured() -> bool:
    listed = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True)
    return bool(os.environ.get("PIP_INDEX_URL")) or ".index-url=" in listed.stdout  # not extra-index-url


@pytest.fixture(scope="module")
def docker() -> str:
    return _docker()


@pytest.fixture(scope="module")
def index_token() -> str | None:
    """A credential that must never reach the image: when this machine names no index of its own, the build gets
    PyPI's index URL with this token in it, as a private index's URL would carry one."""
    return None if _pip_index_configured() else f"ipt-token-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def image(docker: str, index_token: str | None) -> Iterator[str]:
    tag = f"intervalprocessing-dagster:test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    if index_token:
        env["PIP_INDEX_URL"] = f"https://intervalprocessing-test:{index_token}@pypi.org/simple/"
    built = subprocess.run(
        [str(REPO / "deploy" / "build-image.sh"), tag], env=env, capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(next(line for line in built.stderr.splitlines() if " built " in line))
    yield tag
    subprocess.run([docker, "rmi", tag], capture_output=True)


def _run(
    docker: str, image: str, *command: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    flags = [arg for name, value in (env or {}).items() for arg in ("--env", f"{name}={value}")]
    return subprocess.run(
        [docker, "run", "--rm", "--network", "host", *flags, image, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dagster_runs(docker: str, image: str) -> None:
    completed = _run(docker, image, "dagster", "--version")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("dagster, version 1.13.27")


def test_the_definitions_load_with_the_production_settings(docker: str, image: str) -> None:
    """MONGODB_URI and REPORTS_S3_BUCKET set, as in the task definitions; an empty DAGSTER_HOME, since the
    production instance needs its Postgres (tests/deploy/test_deploy_ecs_production.py runs that one)."""
    completed = _run(
        docker,
        image,
        "sh",
        "-c",
        'mkdir -p "$DAGSTER_HOME" && dagster definitions validate -w workspace.yaml',
        env={
            "MONGODB_URI": "mongodb://definitions-check.invalid/",
            "REPORTS_S3_BUCKET": "reports",
            "DAGSTER_HOME": "/tmp/dagster_home",
        },
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr


def test_the_old_entry_point_without_process_to_run_exits_2_with_one_line(docker: str, image: str) -> None:
    completed = _run(docker, image)  # the image's CMD: intervalprocessing
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: processToRun is not set; valid values: FileGenerationProcesses, NightlyDataChangeProcesses, "
        "HourlyDataChangeProcesses, HalfHourlyDataChangeProcesses, QuarterHourlyDataChangeProcesses"
    ]


def test_the_default_user_is_the_non_root_service_user(docker: str, image: str) -> None:
    completed = _run(docker, image, "id", "-u")
    assert completed.stdout.strip() == SERVICE_UID
    inspected = json.loads(
        subprocess.run([docker, "image", "inspect", image], capture_output=True, text=True, check=True).stdout
    )
    assert inspected[0]["Config"]["User"] == "dagster"


def test_the_gpl_embedded_server_is_absent(docker: str, image: str) -> None:
    completed = _run(
        docker,
        image,
        "python3",
        "-c",
        "import importlib.util, importlib.metadata as m; "
        "print(importlib.util.find_spec('secantus'), "
        "[d.metadata['Name'] for d in m.distributions() if 'secantus' in d.metadata['Name'].lower()])",
    )
    assert completed.stdout.strip() == "None []", completed.stderr


def test_no_secret_reaches_history_config_or_layers(docker: str, image: str, index_token: str | None) -> None:
    """The pip settings went in as BuildKit secrets: nothing of them in `docker history`, the image config, or any
    layer's files (the whole saved image is searched for the index token)."""
    history = subprocess.run(
        [docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inspected = subprocess.run([docker, "image", "inspect", image], capture_output=True, text=True, check=True).stdout
    for text in (history, inspected):
        assert "/run/secrets" not in text and "pip.conf" not in text.replace("id=pip.conf", "")
        assert "PIP_INDEX_URL" not in text and "index-url" not in text
        assert "@pypi.org" not in text
    # BuildKit leaves the empty /run/secrets mount point; no file of the mounts stays.
    leftovers = _run(
        docker, image, "sh", "-c", "find /etc/pip.conf /etc/xdg/pip /run/secrets -type f 2>/dev/null; true"
    )
    assert leftovers.stdout.strip() == ""
    if index_token is None:
        pytest.skip("this machine names its own pip index, so the build had no test token to look for in the layers")
    saved = subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE)
    assert saved.stdout is not None
    needle, tail = index_token.encode(), b""
    while chunk := saved.stdout.read(1 << 20):
        assert needle not in tail + chunk, "the pip index token is in a layer of the image"
        tail = chunk[-len(needle) :]
    assert saved.wait() == 0


def test_file_generation_job_runs_in_the_container(
    docker: str,
    image: str,
    mongo_uri: str,
    mongo_db: Database,
    s3_bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daily reports from the demo data, written by the image to moto's bucket, byte for byte what the same
    job writes on this machine (whose report bytes tests/reports/test_report_golden.py pins)."""
    seed_demo_data(mongo_db)
    completed = _run(
        docker,
        image,
        "sh",
        "-c",
        # An instance of its own in the container (SQLite, telemetry off as in deploy/dagster.yaml: the service
        # user has no writable HOME for Dagster's telemetry id).
        'mkdir -p "$DAGSTER_HOME" && printf "telemetry:\n  enabled: false\n" > "$DAGSTER_HOME/dagster.yaml"'
        " && dagster job execute -m intervalprocessing_dagster.definitions -j file_generation_job",
        env={
            "MONGODB_URI": mongo_uri,
            "MONGODB_DATABASE": mongo_db.name,
            "REPORTS_S3_BUCKET": s3_bucket,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "DAGSTER_HOME": "/tmp/dagster_home",
        },
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    objects = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="GeneratedFiles/").get("Contents", [])
    [audit_key] = [o["Key"] for o in objects if o["Key"].startswith("GeneratedFiles/DailyAuditInventory_")]
    in_container = boto3.client("s3").get_object(Bucket=s3_bucket, Key=audit_key)["Body"].read()

    local = tmp_path / "reports"
    monkeypatch.setenv("MONGODB_URI", mongo_uri)  # the Mongo resource reads it as an EnvVar when the run starts
    settings = Settings.from_env(
        {"MONGODB_URI": mongo_uri, "MONGODB_DATABASE": mongo_db.name, "REPORTS_LOCAL_DIR": str(local)}
    )
    job = build_definitions(settings).resolve_job_def("file_generation_job")
    with DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance).success
    [on_host] = local.glob("DailyAuditInventory_*.txt")
    assert in_container == on_host.read_bytes()
    assert in_container.startswith(b"Audit Id|Claim Number|Status|Assigned Organization|Audit Date|Audit Amount\n")
    assert in_container.count(b"\n") > 1
