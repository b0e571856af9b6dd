"""The viewers' webserver on its own Postgres role (``instance/viewer_role.py``), against a real PostgreSQL: the
read-only webserver serves its pages with that role, and a write through it is refused by the database itself, not
only by ``--read-only`` (a full webserver given the role cannot delete or launch either).

About 60 s: one ``dagster job execute`` and two webservers starting.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pymongo
import pytest
import requests

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.settings import DEFAULT_VIEWER_PG_USERNAME, VIEWER_PG_PASSWORD_VARIABLE
from tests.local_project import execute_job, graphql, new_project, run_id, user_env, webserver
from tests.postgres_cluster import PostgresServer
from tests.test_webserver_roles import JOB, REPOSITORY, launch_variables, ui_document

pytestmark = pytest.mark.system

ROLE = DEFAULT_VIEWER_PG_USERNAME
INSTANCE_CLASS = """instance_class:
  module: intervalprocessing_dagster.instance.reexecution
  class: RecoveringDagsterInstance
"""


@dataclass
class Setup:
    postgres: PostgresServer
    database: str
    admin_project: Path
    viewer_project: Path
    env: dict[str, str]
    viewer_password: str
    cli_run: str

    def connect(self, *, as_viewer: bool) -> Any:
        user, password = (ROLE, self.viewer_password) if as_viewer else (self.postgres.username, self.postgres.password)
        return psycopg2.connect(
            host=self.postgres.host, port=self.postgres.port, user=user, password=password, dbname=self.database
        )

    def viewer_role_command(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "intervalprocessing_dagster.instance.viewer_role"],
            env={**self.env, "DAGSTER_HOME": str(self.admin_project)},
            cwd=self.admin_project,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def setup(postgres_server: PostgresServer, mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    database = postgres_server.create_database()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    mongo_database = client[f"viewer_{uuid.uuid4().hex[:12]}"]
    seed_demo_data(mongo_database)
    base = tmp_path_factory.mktemp("viewer_role")
    admin_project, viewer_project = new_project(base / "admin"), new_project(base / "viewer")
    admin_storage = postgres_server.dagster_storage(database, "ADMIN_PG_PASSWORD")
    (admin_project / "dagster.yaml").write_text(INSTANCE_CLASS + admin_storage)
    # The viewer service's dagster.yaml is production's, with its own user name and password variables.
    viewer_storage = admin_storage.replace(f"username: {postgres_server.username}", f"username: {ROLE}")
    (viewer_project / "dagster.yaml").write_text(
        INSTANCE_CLASS + viewer_storage.replace("ADMIN_PG_PASSWORD", "VIEWER_PG_PASSWORD")
    )
    viewer_password = f"viewer-{secrets.token_hex(12)}"
    env = {
        **user_env(mongo_uri, mongo_database.name),
        "ADMIN_PG_PASSWORD": postgres_server.password,
        "VIEWER_PG_PASSWORD": viewer_password,
        VIEWER_PG_PASSWORD_VARIABLE: viewer_password,
    }
    cli_run = run_id(execute_job(admin_project, env, JOB))
    yield Setup(postgres_server, database, admin_project, viewer_project, env, viewer_password, cli_run)
    client.drop_database(mongo_database.name)
    client.close()


def test_the_command_makes_the_role_and_the_read_only_webserver_serves_with_it(setup: Setup) -> None:
    first = setup.viewer_role_command()
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"viewer role {ROLE}" in first.stdout and setup.viewer_password not in first.stdout + first.stderr
    assert setup.viewer_role_command().returncode == 0  # idempotent: every deployment runs it

    with webserver(setup.viewer_project, setup.env, read_only=True) as url:
        runs = graphql(url, "{ runsOrError { ... on Runs { results { runId status } } } }")["runsOrError"]["results"]
        assert {"runId": setup.cli_run, "status": "SUCCESS"} in runs
        run_page = graphql(
            url,
            """
            query ($runId: ID!) {
              runOrError(runId: $runId) { ... on Run { jobName stepStats { stepKey status } } }
              logsForRun(runId: $runId) { ... on EventConnection { events { __typename } } }
            }""",
            {"runId": setup.cli_run},
        )
        assert run_page["runOrError"]["jobName"] == JOB
        assert any(step["status"] == "SUCCESS" for step in run_page["runOrError"]["stepStats"])
        assert len(run_page["logsForRun"]["events"]) > 10
        jobs = graphql(url, "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }")
        assert JOB in {job["name"] for job in jobs["repositoriesOrError"]["nodes"][0]["jobs"]}
        schedule = graphql(
            url,
            """
            query ($s: ScheduleSelector!) {
              scheduleOrError(scheduleSelector: $s) { ... on Schedule { scheduleState { status } } }
            }""",
            {"s": {**REPOSITORY, "scheduleName": "hourly_data_change_schedule"}},
        )
        assert schedule["scheduleOrError"]["scheduleState"]["status"] == "STOPPED"
        assets = graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {"path": ["audits"]} in [node["assetKey"] for node in assets]


def test_a_write_through_the_viewers_role_is_refused_by_the_database(setup: Setup) -> None:
    assert setup.viewer_role_command().returncode == 0
    # Even a full webserver (no --read-only) given the role cannot change anything: Postgres refuses.
    with webserver(setup.viewer_project, setup.env) as url:
        launch = launch_variables()
        for operation, variables in (("Delete", {"runId": setup.cli_run}), ("LaunchPipelineExecution", launch)):
            response = requests.post(
                f"{url}/graphql", json={"query": ui_document(operation), "variables": variables}, timeout=60
            )
            (result,) = response.json()["data"].values()
            assert (response.status_code, result["__typename"]) == (500, "PythonError"), result
            # the role's sessions are read-only; below, with that switched off, its privileges refuse too
            assert "cannot execute" in result["message"] and "in a read-only transaction" in result["message"]
    with setup.connect(as_viewer=False) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT run_id FROM runs")
        assert [row[0] for row in cursor.fetchall()] == [setup.cli_run]

    # Directly, with the role's read-only default switched off in the session: privileges, not a setting, refuse.
    statements = [
        "UPDATE runs SET status = 'CANCELED'",
        "DELETE FROM event_logs",
        "INSERT INTO kvs (key, value) VALUES ('x', 'y')",
        "TRUNCATE runs",
        "CREATE TABLE intruder (i int)",
    ]
    for statement in statements:
        connection = setup.connect(as_viewer=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET default_transaction_read_only = off")
                connection.commit()
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cursor.execute(statement)
        finally:
            connection.close()


def test_the_command_puts_back_what_was_changed_by_hand_and_covers_later_tables(setup: Setup) -> None:
    admin = setup.connect(as_viewer=False)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"GRANT INSERT ON runs TO {ROLE}")
            cursor.execute(f"ALTER ROLE {ROLE} PASSWORD 'changed-by-hand'")
            # a table a Dagster upgrade's migration creates later, as the instance's role
            cursor.execute("CREATE TABLE later_migration (i int)")
            cursor.execute("INSERT INTO later_migration VALUES (1)")
        admin.commit()
    finally:
        admin.close()
    assert setup.viewer_role_command().returncode == 0
    with setup.connect(as_viewer=True) as viewer, viewer.cursor() as cursor:  # the secret's password again
        cursor.execute("SELECT i FROM later_migration")
        assert cursor.fetchall() == [(1,)]
        cursor.execute("SELECT has_table_privilege(%s, 'runs', 'INSERT')", (ROLE,))
        assert cursor.fetchone() == (False,)


def test_the_command_names_a_missing_password_in_one_line(setup: Setup) -> None:
    env = {key: value for key, value in setup.env.items() if key != VIEWER_PG_PASSWORD_VARIABLE}
    completed = subprocess.run(
        [sys.executable, "-m", "intervalprocessing_dagster.instance.viewer_role"],
        env={**env, "DAGSTER_HOME": str(setup.admin_project)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: {VIEWER_PG_PASSWORD_VARIABLE} is not set: the viewer role's password"
    assert os.environ.get(VIEWER_PG_PASSWORD_VARIABLE) is None
