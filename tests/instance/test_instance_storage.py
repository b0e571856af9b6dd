"""The instance storage (``instance/storage.py``): Dagster's files and tables, fewer connections.

The tests count real SQLite connections (SQLAlchemy's ``connect`` event fires once per new DB-API connection) and
read back what was written, with Dagster's stock storage where the files' format matters, so "pooled" and
"unchanged on disk" are both checked.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    EventLogEntry,
    execute_job,
    in_process_executor,
    job,
    op,
    reconstructable,
)
from dagster._cli.utils import get_possibly_temporary_instance_for_cli
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy import event
from sqlalchemy.engine import Engine

from intervalprocessing_dagster.instance import storage as instance_storage
from intervalprocessing_dagster.instance.storage import PooledSqliteEventLogStorage
from tests.postgres_cluster import PostgresServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def connections() -> Iterator[Counter[str]]:
    """New SQLite connections opened while the test runs, by database file name."""
    opened: Counter[str] = Counter()

    def on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
        path = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        opened[Path(path).name] += 1

    event.listen(Engine, "connect", on_connect)
    yield opened
    event.remove(Engine, "connect", on_connect)


def _log_entry(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level="INFO",
        user_message=message,
        run_id=run_id,
        timestamp=time.time(),
        step_key="some_step",
        job_name="some_job",
        dagster_event=None,
    )


def test_one_connection_per_database_file_for_many_events(tmp_path: Path, connections: Counter[str]) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log_entry("run_a", "event 0"))  # creates the file (Dagster's schema set-up connects twice)
    connections.clear()
    for number in range(1, 50):
        storage.store_event(_log_entry("run_a", f"event {number}"))
    assert connections["run_a.db"] == 0

    # The same files as Dagster's own storage: it reads every event back, and it connects once per event (the day
    # this fails, upstream pools by itself and this class can go).
    stock = SqliteEventLogStorage(str(tmp_path))
    assert [record.event_log_entry.user_message for record in stock.get_records_for_run("run_a").records] == [
        f"event {number}" for number in range(50)
    ]
    connections.clear()
    for number in range(10):
        stock.store_event(_log_entry("run_a", f"stock event {number}"))
    assert connections["run_a.db"] == 10


def _store_and_die(base_dir: str) -> None:
    storage = PooledSqliteEventLogStorage(base_dir)
    for number in range(20):
        storage.store_event(_log_entry("run_k", f"event {number}"))
    os.kill(os.getpid(), signal.SIGKILL)


def test_commits_skip_the_disk_flush_yet_a_killed_process_loses_nothing(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    with storage.run_connection("run_k") as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)

    child = multiprocessing.get_context("spawn").Process(target=_store_and_die, args=(str(tmp_path),))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL

    stock = SqliteEventLogStorage(str(tmp_path))
    assert len(stock.get_records_for_run("run_k").records) == 20


def test_the_stock_storages_files_stay_readable_and_writable(tmp_path: Path) -> None:
    SqliteEventLogStorage(str(tmp_path)).store_event(_log_entry("old_run", "written before the switch"))
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log_entry("old_run", "written after"))
    assert [r.event_log_entry.user_message for r in storage.get_records_for_run("old_run").records] == [
        "written before the switch",
        "written after",
    ]


def test_engines_beyond_the_limit_are_closed(tmp_path: Path, connections: Counter[str]) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    runs = [f"run_{number}" for number in range(instance_storage.SQLITE_ENGINES_KEPT + 3)]
    for run_id in runs:
        storage.store_event(_log_entry(run_id, "first"))
    assert len(storage._engines) == instance_storage.SQLITE_ENGINES_KEPT
    assert runs[0] not in storage._engines and runs[-1] in storage._engines

    connections.clear()
    storage.store_event(_log_entry(runs[0], "second"))  # reopened: one new connection, nothing lost
    assert connections[f"{runs[0]}.db"] == 1
    assert len(storage.get_records_for_run(runs[0]).records) == 2


def test_wipe_closes_the_kept_connections_before_deleting_the_files(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log_entry("run_a", "before wipe"))
    storage.wipe()
    assert not (tmp_path / "run_a.db").exists()
    storage.store_event(_log_entry("run_a", "after wipe"))
    assert [r.event_log_entry.user_message for r in storage.get_records_for_run("run_a").records] == ["after wipe"]


def _store_in_child(storage: PooledSqliteEventLogStorage) -> None:
    storage.store_event(_log_entry("run_a", "from the forked child"))


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log_entry("run_a", "from the parent"))
    parent_engine = storage._engines["run_a"]

    child = multiprocessing.get_context("fork").Process(target=_store_in_child, args=(storage,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0

    storage.store_event(_log_entry("run_a", "from the parent again"))
    assert storage._engines["run_a"] is parent_engine  # the parent's connection was not closed by the child
    assert [r.event_log_entry.user_message for r in storage.get_records_for_run("run_a").records] == [
        "from the parent",
        "from the forked child",
        "from the parent again",
    ]


@op
def three_logs(context) -> None:  # noqa: ANN001 - Dagster's op context
    for number in range(3):
        context.log.info(f"log {number}")


@job(executor_def=in_process_executor)  # every event from this process, so its connections are all counted
def logging_job() -> None:
    three_logs()


def test_the_project_instance_uses_it_and_a_run_opens_one_connection_for_its_events(
    tmp_path: Path, connections: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repo-root dagster.yaml, as `dagster job execute` loads it (DAGSTER_HOME unset, the project folder)."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with get_possibly_temporary_instance_for_cli("dagster job execute") as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        result = execute_job(reconstructable(logging_job), instance=instance)
        assert result.success
        events = instance.all_logs(result.run_id)
    assert sum(1 for e in events if e.user_message.startswith("log ")) == 3
    assert any(e.dagster_event_type == DagsterEventType.RUN_SUCCESS for e in events)
    assert len(events) > 10
    assert connections[f"{result.run_id}.db"] <= 2  # the schema set-up's two; the stock storage: one per event
    assert (tmp_path / ".intervalprocessing" / "dagster_home" / "history" / "runs" / f"{result.run_id}.db").exists()


def test_a_disposed_postgres_instance_leaves_no_session(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept connection is closed with the instance (the stock storage keeps none to close)."""
    database = postgres_server.create_database()
    monkeypatch.setenv("TEST_PG_PASSWORD", postgres_server.password)
    (tmp_path / "dagster.yaml").write_text(postgres_server.dagster_storage(database, "TEST_PG_PASSWORD"))

    def sessions() -> int:
        with (
            psycopg2.connect(
                host=postgres_server.host,
                port=postgres_server.port,
                user=postgres_server.username,
                password=postgres_server.password,
                dbname="postgres",
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
            return cur.fetchone()[0]

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.event_log_storage.store_event(_log_entry("run_a", "kept connection"))
        assert sessions() >= 1
    assert sessions() == 0
