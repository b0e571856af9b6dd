"""Fixtures of the data-change tests that run whole cadences as the code location defines them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
from dagster import DagsterInstance, instance_for_test
from pymongo.database import Database

# One database name for every test here: ``execute_job`` loads a reconstructable job once per process and keeps it
# (Dagster caches the last definition), and the database name is fixed when the definitions are built. The server's
# address is not: the resource reads ``MONGODB_URI`` when each run starts.
DATABASE = "test_cadence_run"


@pytest.fixture()
def cadence_db(mongo_uri: str) -> Iterator[Database]:
    """``DATABASE``, empty at the start of each test and dropped after it."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    client.drop_database(DATABASE)
    yield client[DATABASE]
    client.drop_database(DATABASE)
    client.close()


@pytest.fixture()
def instance(
    mongo_uri: str, cadence_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterInstance]:
    """A persistent SQLite instance in a temporary folder, and the code location pointed at the test's database."""
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", DATABASE)
    monkeypatch.setenv("INTERVALPROCESSING_LOCAL_DIR", str(tmp_path / "local"))
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as test_instance:
        yield test_instance
