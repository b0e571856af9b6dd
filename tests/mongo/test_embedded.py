"""The embedded default: started once, reused by every process, seeded on first start, persistent."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pymongo
import pytest

from intervalprocessing_dagster.mongo import demo_data
from intervalprocessing_dagster.mongo.embedded import ensure_embedded_server, stop_embedded_server


@pytest.fixture()
def data_dir(tmp_path: Path):
    yield tmp_path / "embedded"
    stop_embedded_server(tmp_path / "embedded")


def _uri_from_another_process(data_dir: Path, queue) -> None:
    queue.put(ensure_embedded_server(data_dir, "demo"))


def test_first_start_seeds_the_demo_data(data_dir: Path) -> None:
    uri = ensure_embedded_server(data_dir, "demo")
    db = pymongo.MongoClient(uri)["demo"]
    assert db.audits.count_documents({}) == len(demo_data.AUDITS)
    assert db.storedqueries.find_one({"name": "dailyAuditInventory"})["query"] == (
        "{ 'status' : { $in : [ 'Pending Review', 'Approved' ] } }"
    )
    cadences = {doc["runCadence"] for doc in db.dataupdateconfigs.find()}
    assert cadences == {"Nightly", "Hourly", "HalfHourly", "QuarterHourly"}


def test_processes_share_one_server_and_do_not_reseed(data_dir: Path) -> None:
    uri = ensure_embedded_server(data_dir, "demo")
    pymongo.MongoClient(uri)["demo"].audits.insert_one({"auditId": 1})
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_uri_from_another_process, args=(data_dir, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    uris = {queue.get(timeout=60) for _ in workers}
    for worker in workers:
        worker.join()
    assert uris == {uri}
    assert pymongo.MongoClient(uri)["demo"].audits.count_documents({}) == len(demo_data.AUDITS) + 1


def test_data_survives_a_server_restart(data_dir: Path) -> None:
    uri = ensure_embedded_server(data_dir, "demo")
    pymongo.MongoClient(uri)["demo"].audits.insert_one({"auditId": 42})
    assert stop_embedded_server(data_dir)
    restarted = ensure_embedded_server(data_dir, "demo")
    db = pymongo.MongoClient(restarted)["demo"]
    assert db.audits.count_documents({"auditId": 42}) == 1
    assert db.audits.count_documents({}) == len(demo_data.AUDITS) + 1


def test_the_stop_command_stops_the_server_of_the_settings_folder(tmp_path: Path) -> None:
    """What the runbook says to run; the server outlives the commands that start it."""
    data_dir = tmp_path / "embedded-mongo"  # under INTERVALPROCESSING_LOCAL_DIR, as the settings place it
    uri = ensure_embedded_server(data_dir, "demo")
    env = {**os.environ, "INTERVALPROCESSING_LOCAL_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "intervalprocessing_dagster.mongo.embedded", "stop"]
    stopped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert stopped.stdout.strip() == f"stopped the embedded server of {data_dir}"
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
        pymongo.MongoClient(uri, serverSelectionTimeoutMS=500).admin.command("ping")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert again.stdout.strip() == f"no server running for the embedded server of {data_dir}"
