"""The project's dagster.yaml makes the local instance persistent with no DAGSTER_HOME: a run started with
``dagster job execute`` is in the instance that ``dagster dev`` and ``DAGSTER_HOME=$PWD dagster run list`` read,
and ``dagster dev`` stops cleanly on Ctrl-C (SIGINT to its process group) and on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import requests
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from tests.local_project import DAGSTER, STOP_SIGNALS, dagster_dev, execute_job, new_project, run_id, user_env

RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId jobName status } } } }"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    return new_project(tmp_path / "project")


def test_a_cli_run_persists_in_the_project_instance(mongo_uri: str, mongo_db: Database, project: Path) -> None:
    seed_demo_data(mongo_db)
    env = user_env(mongo_uri, mongo_db.name)
    first = run_id(execute_job(project, env, "hourly_data_change_job"))
    assert (project / ".intervalprocessing" / "dagster_home" / "history" / "runs.db").is_file()
    assert not list(project.glob(".tmp_dagster_home_*"))  # the temporary folder Dagster made is gone, empty

    listed = subprocess.run(
        [*DAGSTER, "run", "list"],
        cwd=project,
        env={**env, "DAGSTER_HOME": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"Run: {first}" in listed.stdout, listed.stdout + listed.stderr


@STOP_SIGNALS
def test_dagster_dev_shows_the_cli_run_and_stops_cleanly(
    mongo_uri: str, mongo_db: Database, project: Path, sig: signal.Signals, to_group: bool
) -> None:
    seed_demo_data(mongo_db)
    env = user_env(mongo_uri, mongo_db.name)
    cli_run = run_id(execute_job(project, env, "hourly_data_change_job"))
    with dagster_dev(project, env) as dev:
        response = requests.post(f"{dev.url}/graphql", json={"query": RUNS_QUERY}, timeout=60)
        runs = response.json()["data"]["runsOrError"]["results"]
        assert {"runId": cli_run, "jobName": "hourly_data_change_job", "status": "SUCCESS"} in runs
        # Dagster's banner about its temporary directory, and right after it, once, why it loses nothing.
        banner = [line for line in dev.log_path.read_text().splitlines() if " - dagster - " in line]
        (temporary,) = [i for i, line in enumerate(banner) if "Using temporary directory" in line]
        ours = [line for line in banner if "IntervalProcessing keeps" in line]
        assert ours == [banner[temporary + 2]], banner[:6]
        assert ours[0].endswith(
            f"IntervalProcessing keeps runs, event logs, schedules and sensors in "
            f"{project / '.intervalprocessing' / 'dagster_home'} (dagster.yaml), not in that temporary directory: its "
            "removal loses no history."
        ), ours
        assert dev.group(), "dagster dev has no processes to stop"
        dev.assert_stops(sig, to_group=to_group)
    assert not list(project.glob(".tmp_dagster_home_*"))
