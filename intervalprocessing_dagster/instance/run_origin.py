"""Runs executed in their own process are stored as runs of this project's code location, so the UI shows them with
their job.

Dagster stores a run of ``dagster job execute``, ``dg launch --job`` or ``processToRun`` without a code-location origin,
so the UI leaves it out of its job's pages and refuses to re-execute it (dagster-io/dagster#17707).
``with_code_location`` gives it the origin of this one location, ``intervalprocessing`` (the name ``workspace.yaml``
gives it, so ``dagster dev`` must load that file); runs with an origin, or of other code, are stored unchanged. Why
and where it applies: docs/decisions/run-origin-for-cli-runs.md.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from dagster import DagsterRun
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.runs.base import RunStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_postgres.run_storage import PostgresRunStorage

from intervalprocessing_dagster.instance.launch_origin import with_launch_origin
from intervalprocessing_dagster.runs.tags import CODE_LOCATION_TAG

if TYPE_CHECKING:
    from dagster._core.origin import JobPythonOrigin

#: The code location's name in ``workspace.yaml`` and ``pyproject.toml`` (``[tool.dagster] code_location_name``).
CODE_LOCATION_NAME = "intervalprocessing"
#: The module that holds the code location's ``defs``.
CODE_LOCATION_MODULE = "intervalprocessing_dagster.definitions"
_PACKAGE = CODE_LOCATION_MODULE.split(".")[0]
#: The name Dagster gives the one repository of a ``Definitions`` code location (not exported; checked by
#: tests/test_dagster_internals.py).
SINGLETON_REPOSITORY_NAME = "__repository__"


def with_code_location(run: DagsterRun) -> DagsterRun:
    """``run`` as a run of this code location's job, if it was executed in its own process from this package."""
    if run.remote_job_origin is not None or not _is_this_package(run.job_code_origin):
        return run
    # As workspace.yaml's python_module entry loads it; the UI itself only compares the names.
    python_origin = run.job_code_origin.repository_origin if run.job_code_origin else None
    if python_origin is None:
        executable_path, working_directory = sys.executable, os.getcwd()
    else:
        executable_path = python_origin.executable_path
        working_directory = getattr(python_origin.code_pointer, "working_directory", None)
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=executable_path, module_name=CODE_LOCATION_MODULE, working_directory=working_directory
        ),
        location_name=CODE_LOCATION_NAME,
    )
    repository = RemoteRepositoryOrigin(code_location_origin=location, repository_name=SINGLETON_REPOSITORY_NAME)
    origin = RemoteJobOrigin(repository_origin=repository, job_name=run.job_name)
    # The tag Dagster adds to every run created with an origin (the Runs list's "code location" filter uses it).
    return run.with_job_origin(origin).with_tags({**run.tags, CODE_LOCATION_TAG: CODE_LOCATION_NAME})


def _is_this_package(job_code_origin: JobPythonOrigin | None) -> bool:
    """In-process runs without a code pointer (``execute_in_process``: the ``processToRun`` entry point) are this
    instance's own; a pointer names its module (``-m intervalprocessing_dagster``, ``...definitions``) or a file."""
    if job_code_origin is None:
        return True
    module = getattr(job_code_origin.repository_origin.code_pointer, "module", "")
    return module.split(".")[0] == _PACKAGE


class CodeLocationRunStorage(RunStorage):
    """Mixed into a run storage: every run it stores goes through ``with_code_location`` first, and gets its launch
    origin tag (``instance/launch_origin.py``: a schedule's, sensor's, backfill's or retry's run says so)."""

    def add_run(self, dagster_run: DagsterRun) -> DagsterRun:
        return super().add_run(with_launch_origin(with_code_location(dagster_run)))


class CodeLocationSqliteRunStorage(CodeLocationRunStorage, SqliteRunStorage):
    """Dagster's SQLite run storage (the local instance) storing in-process runs as this location's."""


class CodeLocationPostgresRunStorage(CodeLocationRunStorage, PostgresRunStorage):
    """dagster-postgres's run storage (production) storing in-process runs as this location's."""
