"""In-process runs are stored as runs of this code location (``instance/run_origin.py``), so the UI's job pages find
them: the job's Runs tab filters on the ``.dagster/repository`` tag, the timeline needs the origin itself.

``tests/test_webserver_roles.py`` checks the same through the webserver's GraphQL (job runs, timeline origin, and a
re-execution of a CLI run); production's Postgres storage is checked by the ``processToRun`` system test
(``tests/deploy/test_deploy_ecs_production.py``).
"""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRun, RunsFilter, job, op
from dagster._core.code_pointer import FileCodePointer, ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.tags import CODE_LOCATION_TAG, REPOSITORY_LABEL_TAG
from pymongo.database import Database

from intervalprocessing_dagster.instance.run_origin import CODE_LOCATION_MODULE, CODE_LOCATION_NAME, with_code_location
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from tests.local_project import execute_job, new_project, run_id, user_env

REPO = Path(__file__).resolve().parents[2]
LABEL = f"__repository__@{CODE_LOCATION_NAME}"


def test_the_name_is_the_one_the_workspace_and_pyproject_give_the_location() -> None:
    """``dagster dev`` (no arguments: pyproject.toml or workspace.yaml) and production's webserver (workspace.yaml)
    name the location; stored runs must carry the same name, or the UI files them elsewhere."""
    (entry,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert entry["python_module"] == {"module_name": CODE_LOCATION_MODULE, "location_name": CODE_LOCATION_NAME}
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    assert tool == {"module_name": CODE_LOCATION_MODULE, "code_location_name": CODE_LOCATION_NAME}


def test_a_cli_run_is_stored_as_a_run_of_the_code_location(
    mongo_uri: str, mongo_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_demo_data(mongo_db)
    project = new_project(tmp_path / "project")
    cli_run = run_id(execute_job(project, user_env(mongo_uri, mongo_db.name), "hourly_data_change_job"))

    monkeypatch.chdir(project)  # dagster.yaml's storage folder is relative to the project folder
    with DagsterInstance.from_config(str(project)) as instance:
        run = instance.get_run_by_id(cli_run)
        assert run is not None and run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == CODE_LOCATION_NAME
        assert run.remote_job_origin.repository_origin.repository_name == "__repository__"
        assert run.remote_job_origin.job_name == "hourly_data_change_job"
        assert run.tags[CODE_LOCATION_TAG] == CODE_LOCATION_NAME
        # The job page's own filter (dagster_graphql's Pipeline.runs) finds it.
        by_job = instance.get_runs(RunsFilter(job_name="hourly_data_change_job", tags={REPOSITORY_LABEL_TAG: LABEL}))
        assert [r.run_id for r in by_job] == [cli_run]


@op
def noop() -> None:
    """Nothing to do: the run's record is what the tests look at."""


@job
def in_process_job() -> None:
    noop()


def _python_origin(pointer: ModuleCodePointer | FileCodePointer) -> JobPythonOrigin:
    return JobPythonOrigin("in_process_job", RepositoryPythonOrigin("/usr/bin/python3", pointer))


@pytest.mark.parametrize("module", ["intervalprocessing_dagster", "intervalprocessing_dagster.definitions"])
def test_a_run_of_this_package_gets_the_origin(module: str) -> None:
    pointer = ModuleCodePointer(module, "defs", working_directory="/opt/dagster/app")
    run = DagsterRun(job_name="in_process_job", run_id=str(uuid.uuid4()), job_code_origin=_python_origin(pointer))
    located = with_code_location(run)
    loadable = located.remote_job_origin.repository_origin.code_location_origin.loadable_target_origin
    assert (loadable.module_name, loadable.working_directory, loadable.executable_path) == (
        CODE_LOCATION_MODULE,
        "/opt/dagster/app",
        "/usr/bin/python3",
    )
    assert located.tags_for_storage()[REPOSITORY_LABEL_TAG] == LABEL


def test_a_run_of_other_code_and_a_run_with_an_origin_are_stored_unchanged() -> None:
    other = DagsterRun(
        job_name="in_process_job",
        run_id=str(uuid.uuid4()),
        job_code_origin=_python_origin(FileCodePointer("/elsewhere/jobs.py", "defs")),
    )
    assert with_code_location(other) is other
    launched = with_code_location(DagsterRun(job_name="in_process_job", run_id=str(uuid.uuid4())))
    assert with_code_location(launched) is launched


def test_an_execute_in_process_run_on_the_project_instance_gets_the_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the processToRun entry point does (``execute_in_process``, no code pointer), on the local storage."""
    project = new_project(tmp_path / "project")
    monkeypatch.chdir(project)
    with DagsterInstance.from_config(str(project)) as instance:
        result = in_process_job.execute_in_process(instance=instance)
        run = instance.get_run_by_id(result.run_id)
    assert run.remote_job_origin.location_name == CODE_LOCATION_NAME
