"""Dagster's own SQLite and Postgres instance storage, with the event log keeping its database connections.

The stock event-log storages open a connection per event (a dozen per step); these keep them, which halved what
Dagster adds per automation, and deleting a run's events also deletes its asset-check executions (and SQLite's per-run
file), so a deleted run leaves nothing. Tables, migrations and queries are Dagster's, unchanged: selected with
``storage: custom:`` in ``dagster.yaml``, and switching back is a one-line change. Measurements and trade-offs:
docs/decisions/pooled-event-log-storage.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy
from dagster import AssetCheckKey, AssetKey
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory, _runs_directory
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.auth import PgTokenProvider
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

from intervalprocessing_dagster.instance.run_origin import CodeLocationPostgresRunStorage, CodeLocationSqliteRunStorage

if TYPE_CHECKING:
    from dagster._serdes import ConfigurableClassData

# SQLite keeps one database file per run plus the cross-run index. A run worker only writes its own run's file and
# the index; the webserver and daemon read many runs, so engines beyond this many (least recently used) are closed.
SQLITE_ENGINES_KEPT = 8

# Postgres: one connection kept per process, up to this many more while threads (the daemon's, the webserver's)
# write at once; a kept connection is replaced after an hour and checked before use, so an RDS failover or an idle
# timeout costs a reconnect, not a failed write. The webserver's own defaults (``--db-pool-*``) are the same.
POSTGRES_MAX_OVERFLOW = 20
POSTGRES_POOL_RECYCLE_SECONDS = 3600


class _DeletesWholeRuns:
    """Mixin for a SQL event-log storage: ``delete_events`` also deletes the run's asset-check executions.

    Dagster's ``delete_events`` deletes the run's events and their asset tags, but not its rows in
    ``asset_check_executions``, where every check evaluation is stored a second time (with its event): the Checks
    tab reads them from there, so it would keep listing executions of a run that no longer exists, and the table
    would grow forever.
    """

    def delete_events(self, run_id: str) -> None:
        super().delete_events(run_id)  # type: ignore[misc]
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            conn.execute(AssetCheckExecutionsTable.delete().where(AssetCheckExecutionsTable.c.run_id == run_id))


class PooledSqliteEventLogStorage(_DeletesWholeRuns, SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that keeps one engine (and its connection) per database file instead of one per call.

    Dagster serializes this storage's connections with its own lock, so one kept connection per file is enough.
    Each event is still its own committed transaction, but with ``PRAGMA synchronous=NORMAL`` instead of ``FULL``:
    in Dagster's WAL mode a commit then waits for no disk flush (about 1 ms less per event here), a killed or
    crashed process still loses nothing, and the files never corrupt; only the last events before a power loss or
    an operating-system crash may be missing. That is the right trade for the local instance, which this class is
    for; production's Postgres is unaffected.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._engines_lock = threading.Lock()
        super().__init__(base_dir, inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():
                # A forked child must not use its parent's SQLite connections: forget them without closing them.
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
            )
            sqlalchemy.event.listen(engine, "connect", _wal_without_commit_flush)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            self._engines[shard] = engine
            while len(self._engines) > SQLITE_ENGINES_KEPT:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._dispose_engines()  # wipe deletes the run files; kept connections would point at deleted files
        super().wipe()

    def delete_events(self, run_id: str) -> None:
        """The stock deletion empties the run's database file but leaves the file (and SQLite never shrinks one by
        itself): the file goes too, after its kept connection is closed."""
        super().delete_events(run_id)
        with self._engines_lock:
            engine = self._engines.pop(run_id, None)
            self._initialized_dbs.discard(run_id)
        if engine is not None:
            engine.dispose()
        path = self.path_for_shard(run_id)
        for name in (path, f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()


def _wal_without_commit_flush(dbapi_connection: Any, _connection_record: Any) -> None:
    """Every new connection: WAL (Dagster sets it when it creates a file, inside a transaction, where SQLite may not
    apply it to the connection doing so) and commits that wait for no disk flush (see the class docstring)."""
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class PooledSqliteStorage(DagsterSqliteStorage):
    """The local instance's storage (``storage: custom:``): Dagster's SQLite layout under ``base_dir``, pooled event
    log."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._run_storage = CodeLocationSqliteRunStorage.from_local(_runs_directory(base_dir))
        if _in_dagster_dev_without_home():
            logging.getLogger("dagster").info(
                f"IntervalProcessing keeps runs, event logs, schedules and sensors in {os.path.abspath(base_dir)} "
                "(dagster.yaml), not in that temporary directory: its removal loses no history."
            )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


def _in_dagster_dev_without_home() -> bool:
    """Whether this is the ``dagster dev`` process itself (not one of its services or runs), started without
    ``DAGSTER_HOME``. It then says "Using temporary directory … for storage. This will be removed when dagster dev
    exits", which reads as if the run history goes with it; the one line above, printed just after it, says where
    the history is (``dagster dev`` makes its temporary instance from the folder's ``dagster.yaml``, whose storage is
    this class)."""
    dev_process = bool(os.environ.get("DAGSTER_IS_DEV_CLI")) and sys.argv[1:2] == ["dev"]
    return dev_process and not os.environ.get("DAGSTER_HOME")


#: The tables a run's deletion leaves dead rows in (Dagster keeps run, event-log and schedule storage in one database).
RUN_HISTORY_TABLES = ("event_logs", "asset_event_tags", "asset_check_executions", "runs", "run_tags")


class PooledPostgresEventLogStorage(_DeletesWholeRuns, PostgresEventLogStorage):
    """``PostgresEventLogStorage`` whose engine keeps a connection instead of opening one per event."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=POSTGRES_MAX_OVERFLOW,
            pool_recycle=POSTGRES_POOL_RECYCLE_SECONDS,
            pool_pre_ping=True,
        )

    def dispose(self) -> None:
        """Also close the kept connection (the stock storage keeps none): a disposed instance leaves no session."""
        super().dispose()
        self._engine.dispose()

    def vacuum_run_history(self) -> None:
        """``VACUUM (ANALYZE)`` of ``RUN_HISTORY_TABLES``, after runs were deleted: their rows' space is reused at
        once instead of when autovacuum next gets to a table (by default once a fifth of it is dead, which a daily
        deletion of a thirtieth reaches about once a week, so the tables would carry up to a week of dead rows).
        Plain VACUUM takes no lock that blocks reads or writes. It cannot run in a transaction: the engine
        autocommits."""
        with self._engine.connect() as conn:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(RUN_HISTORY_TABLES)}")


class PooledPostgresStorage(DagsterPostgresStorage):
    """The production instance's storage (``storage: custom:``, same ``postgres_db`` config as ``storage:
    postgres:``), pooled event log."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._event_log_storage.dispose()
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._run_storage.dispose()
        self._run_storage = CodeLocationPostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


def stored_check_keys(storage: object) -> Iterator[AssetCheckKey]:
    """Every asset check with executions in the event log, checks the code no longer defines included (the history
    retention job prunes those too; Dagster's storage API only answers for the checks it is asked about)."""
    if not isinstance(storage, SqliteEventLogStorage | PostgresEventLogStorage):
        raise TypeError(f"history retention needs a SQL event-log storage (SQLite or Postgres), not {type(storage)}")
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        rows = conn.execute(sqlalchemy.select(table.c.asset_key, table.c.check_name).distinct()).fetchall()
    for asset_key, check_name in rows:
        key = AssetKey.from_db_string(asset_key)
        if key is not None:
            yield AssetCheckKey(key, check_name)
