"""The ``history`` family's data: a deployment's Dagster history in Postgres, day by day, built from real runs.

A year of a modest deployment is about 70,000 runs and 12 million events. Writing them through Dagster's storage API
(one ``store_event`` per event, a millisecond each) would take hours, and running the jobs for real a year. So the
real thing happens once and is then copied: ``record_templates`` runs every scheduled job of the code location
(as ``dagster job execute`` does, real MongoDB work on the benchmark's SecantusDB) into a templates database, plus
a quarter-hourly run that fails on a broken automation and one hourly run of many (500) automations;
``HistoryWriter`` then writes, for every tick of every schedule of every simulated day, a copy of the matching
template run into the measured database: its run row and tags, every event, the events' asset tags and the run's
asset-check executions, with a new run id and every timestamp shifted to the tick. Rows are written with Postgres
``COPY`` into Dagster's own tables (the columns of Dagster's schema modules), a day at a time, in time order, so ids
grow with time as they do in a live database: two to three seconds per simulated day here, a year in 15 minutes.

The asset index (``asset_keys``: each asset's latest materialization, observation and planned run, which the asset
pages and the retention job read) is kept up to date through Dagster's own ``store_asset_event``, from the newest
event of each kind of each copied day. What a copy does not redo: references inside an event body other than its run
id and timestamps (a check evaluation's target materialization id, say) keep the template's values. Freshness-check
runs of ``report_freshness_sensor`` (a few small runs a day) are not simulated.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pymongo
from dagster import DagsterInstance, EventLogEntry, execute_job
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG, SCHEDULE_NAME_TAG
from dagster._record import copy
from dagster._serdes import deserialize_value, serialize_value

from bench import dataset
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.runs.clock import run_stamp_tags
from tests.postgres_cluster import PostgresServer

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Runs launched by the daemon carry their code location's label (workspace.yaml: location ``intervalprocessing``);
#: the UI's job pages filter on it.
REPOSITORY_LABEL = "__repository__@intervalprocessing"
TEMPLATE_BIG = "hourly_big"
TEMPLATE_FAILED = "quarter_hourly_failed"


@dataclass(frozen=True)
class Deployment:
    """How many automations run at each cadence, and how often a quarter-hourly run fails."""

    quarter_hourly: int = 20
    half_hourly: int = 10
    hourly: int = 10
    nightly: int = 10
    failure_every: int = 100

    def automations(self) -> dict[Cadence, int]:
        return {
            Cadence.QUARTER_HOURLY: self.quarter_hourly,
            Cadence.HALF_HOURLY: self.half_hourly,
            Cadence.HOURLY: self.hourly,
            Cadence.NIGHTLY: self.nightly,
        }


@dataclass(frozen=True)
class Scheduled:
    """A job as its schedule starts it: the template copied at each of its ticks (minutes after midnight, UTC)."""

    job: str
    schedule: str
    minutes: tuple[int, ...]


def _every(minutes: int, offset: int = 0) -> tuple[int, ...]:
    return tuple(range(offset, 24 * 60, minutes))


SCHEDULED: tuple[Scheduled, ...] = (
    *(
        Scheduled(
            c.job_name, c.schedule_name, _every(c.interval_seconds // 60) if c is not Cadence.NIGHTLY else (2 * 60,)
        )
        for c in Cadence
    ),
    Scheduled("config_checks_job", "config_checks_schedule", _every(60, 45)),
    Scheduled("file_generation_job", "file_generation_schedule", (3 * 60,)),
    Scheduled("history_retention_job", "history_retention_schedule", (4 * 60 + 30,)),
)


# --- the real runs ---------------------------------------------------------------------------------------------


def seed_mongo(uri: str, database: str, deployment: Deployment) -> None:
    """The demo data (reports have rows to write) and the deployment's automations, each changing its own 100
    documents (``bench.dataset``'s automations, spread over the cadences)."""
    total = sum(deployment.automations().values())
    with pymongo.MongoClient(uri) as client:
        client.drop_database(database)
        db = client[database]
        seed_demo_data(db)
        db.dataupdateconfigs.delete_many({})
        dataset.generate_automations(db, total, mark="history")
        first = 0
        for cadence, count in deployment.automations().items():
            names = [f"Bench automation {i:04d}" for i in range(first, first + count)]
            db.dataupdateconfigs.update_many({"name": {"$in": names}}, {"$set": {"runCadence": cadence.value}})
            first += count


def record_templates(home: Path, env: dict[str, str], uri: str, database: str, big_run: int, tick: datetime) -> None:
    """Every scheduled job once, a quarter-hourly run that fails, and an hourly run of ``big_run`` automations, on
    the instance in ``home`` (in that order: ``load_templates`` tells them apart by job name and order).

    In a process of their own (``python -m bench.history_build``), one for all of them: the code location reads its
    settings from the environment when the package is imported, so that process starts with ``env``.
    """
    subprocess.run(
        [sys.executable, "-m", "bench.history_build", str(home), uri, database, str(big_run), tick.isoformat()],
        cwd=REPO_ROOT,
        env={**env, "DAGSTER_HOME": str(home)},
        check=True,
        timeout=1800,
    )


def _record_templates(instance: DagsterInstance, uri: str, database: str, big_run: int, tick: datetime) -> None:
    """``record_templates``' work, in its process: the code location's jobs, executed as ``dagster job execute``
    does, tagged as their schedules tag them."""
    repository = ReconstructableRepository.for_module(
        "intervalprocessing_dagster.definitions", "defs", working_directory=str(REPO_ROOT)
    )

    def execute(job: str, schedule: str) -> None:
        tags = {**run_stamp_tags(tick), SCHEDULE_NAME_TAG: schedule}
        execute_job(repository.get_reconstructable_job(job), instance=instance, tags=tags)

    for scheduled in SCHEDULED:
        execute(scheduled.job, scheduled.schedule)
    with pymongo.MongoClient(uri) as client:
        configs = client[database].dataupdateconfigs
        broken = configs.insert_one(
            {
                "name": "Broken automation",
                "query": "{ status : ",
                "collectionName": "audits",
                "isActive": True,
                "runCadence": Cadence.QUARTER_HOURLY.value,
                "singleFieldUpdateElements": [],
                "arrayObjectFieldUpdateElements": [],
            }
        ).inserted_id
        execute(Cadence.QUARTER_HOURLY.job_name, Cadence.QUARTER_HOURLY.schedule_name)
        configs.delete_one({"_id": broken})
        deployment = list(configs.find())  # the big run's automations stand in for them for one run
        configs.delete_many({})
        dataset.generate_automations(client[database], big_run, mark="history")
        execute(Cadence.HOURLY.job_name, Cadence.HOURLY.schedule_name)
        configs.delete_many({})
        configs.insert_many(deployment)


# --- copies ----------------------------------------------------------------------------------------------------

# An epoch timestamp with a fraction, as Dagster writes them into event bodies (2001 to 2286).
_TIMESTAMP = re.compile(r"(?<![\w.])(\d{10}\.\d+)(?![\w.])")


@dataclass
class _Body:
    """A serialized body with its run id and its timestamps cut out, so a copy is a join, not a re-serialization."""

    segments: list[str]
    shifted: list[int]  # indexes of segments that are timestamps to shift
    values: list[float]

    @classmethod
    def of(cls, text: str, lo: float, hi: float) -> _Body:
        segments = _TIMESTAMP.split(text)
        shifted = [i for i in range(1, len(segments), 2) if lo <= float(segments[i]) <= hi]
        return cls(segments, shifted, [float(segments[i]) for i in shifted])

    def render(self, template_run_id: str, run_id: str, shift: float) -> str:
        segments = list(self.segments)
        for index, value in zip(self.shifted, self.values, strict=True):
            segments[index] = repr(value + shift)
        return "".join(segments).replace(template_run_id, run_id)


@dataclass
class RunTemplate:
    """One real run's rows, read from the templates database, ready to be copied."""

    run: Any  # DagsterRun
    created: datetime
    updated: datetime
    start_time: float | None
    end_time: float | None
    snapshot_id: str | None
    events: list[tuple[int, _Body, str | None, datetime, str | None, str | None, str | None]]
    asset_tags: list[tuple[int, str, str, str | None, datetime]]
    checks: list[tuple[str, str, str | None, str, _Body | None, datetime, int | None, int | None]]
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Any, run_id: str) -> RunTemplate:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT run_body, create_timestamp, update_timestamp, start_time, end_time, snapshot_id "
                "FROM runs WHERE run_id = %s",
                (run_id,),
            )
            body, created, updated, start_time, end_time, snapshot_id = cur.fetchone()
            lo, hi = created.timestamp() - 86400 * 2, updated.timestamp() + 86400 * 2  # generous: naive vs UTC
            cur.execute(
                "SELECT id, event, dagster_event_type, timestamp, step_key, asset_key, partition "
                "FROM event_logs WHERE run_id = %s ORDER BY id",
                (run_id,),
            )
            events = [(row[0], _Body.of(row[1], lo, hi), *row[2:]) for row in cur.fetchall()]
            ids = [event[0] for event in events]
            cur.execute(
                "SELECT event_id, asset_key, key, value, event_timestamp FROM asset_event_tags "
                "WHERE event_id = ANY(%s) ORDER BY id",
                (ids,),
            )
            asset_tags = cur.fetchall()
            cur.execute(
                "SELECT asset_key, check_name, partition, execution_status, evaluation_event, "
                "evaluation_event_timestamp, evaluation_event_storage_id, materialization_event_storage_id "
                "FROM asset_check_executions WHERE run_id = %s ORDER BY id",
                (run_id,),
            )
            checks = [(*row[:4], _Body.of(row[4], lo, hi) if row[4] else None, *row[5:]) for row in cur.fetchall()]
        return cls(
            deserialize_value(body),
            created,
            updated,
            start_time,
            end_time,
            snapshot_id,
            events,
            asset_tags,
            checks,
            {"events": len(events), "asset_tags": len(asset_tags), "check_executions": len(checks)},
        )

    @property
    def run_id(self) -> str:
        return self.run.run_id


def load_templates(conn: Any) -> dict[str, RunTemplate]:
    """Job name -> its template, plus ``TEMPLATE_FAILED`` and ``TEMPLATE_BIG`` (the later runs of their jobs)."""
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, pipeline_name, status FROM runs ORDER BY id")
        rows = cur.fetchall()
    templates: dict[str, RunTemplate] = {}
    for run_id, job, status in rows:
        if job == Cadence.QUARTER_HOURLY.job_name and status == "FAILURE":
            key = TEMPLATE_FAILED
        elif job == Cadence.HOURLY.job_name and job in templates:
            key = TEMPLATE_BIG
        else:
            key = job
        templates[key] = RunTemplate.load(conn, run_id)
    return templates


class _CopyBuffer:
    """Rows for one table, as CSV for ``COPY``: None unquoted (NULL), every other value quoted (an empty string
    stays an empty string; Python 3.11's csv module cannot write that distinction)."""

    def __init__(self, table: str, columns: tuple[str, ...]) -> None:
        self.table, self.columns = table, columns
        self.buffer = io.StringIO()
        self.rows = 0

    def add(self, *values: Any) -> None:
        self.buffer.write(",".join(_csv(value) for value in values))
        self.buffer.write("\n")
        self.rows += 1

    def copy_into(self, cur: Any) -> None:
        if not self.rows:
            return
        self.buffer.seek(0)
        cur.copy_expert(f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN WITH (FORMAT csv)", self.buffer)


def _csv(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return '"' + text.replace('"', '""') + '"'


class HistoryWriter:
    """Writes copies of template runs into the measured database, one simulated day per transaction."""

    def __init__(
        self,
        server: PostgresServer,
        database: str,
        event_log: EventLogStorage,
        templates: dict[str, RunTemplate],
        deployment: Deployment,
    ) -> None:
        self._conn = psycopg2.connect(
            host=server.host, port=server.port, user=server.username, password=server.password, dbname=database
        )
        self._event_log = event_log
        self._templates = templates
        self._deployment = deployment
        self._quarter_hourly_runs = 0

    def close(self) -> None:
        self._conn.close()

    def copy_snapshots(self, templates_conn: Any) -> None:
        """The job and execution-plan snapshots the copied runs point to (run rows have a foreign key on them)."""
        with templates_conn.cursor() as source, self._conn.cursor() as target:
            source.execute("SELECT snapshot_id, snapshot_body, snapshot_type FROM snapshots")
            for row in source.fetchall():
                target.execute(
                    "INSERT INTO snapshots (snapshot_id, snapshot_body, snapshot_type) VALUES (%s, %s, %s) "
                    "ON CONFLICT (snapshot_id) DO NOTHING",
                    row,
                )
        self._conn.commit()

    def write_day(self, day: datetime) -> dict[str, int]:
        """Every scheduled run of ``day`` (midnight, naive UTC like Dagster's timestamp columns); row counts."""
        copies = sorted(
            ((day + timedelta(minutes=minute), scheduled) for scheduled in SCHEDULED for minute in scheduled.minutes),
            key=lambda copy_: copy_[0],
        )
        plan = [(tick, scheduled, self._template_for(scheduled)) for tick, scheduled in copies]
        return self.write_runs(plan)

    def write_runs(self, plan: list[tuple[datetime, Scheduled, RunTemplate]]) -> dict[str, int]:
        """Copies of ``plan``'s templates at their ticks, in one transaction; row counts."""
        runs = _CopyBuffer(
            "runs",
            (
                "run_id",
                "snapshot_id",
                "pipeline_name",
                "status",
                "run_body",
                "create_timestamp",
                "update_timestamp",
                "start_time",
                "end_time",
            ),
        )
        tags = _CopyBuffer("run_tags", ("run_id", "key", "value"))
        events = _CopyBuffer(
            "event_logs",
            ("id", "run_id", "event", "dagster_event_type", "timestamp", "step_key", "asset_key", "partition"),
        )
        asset_tags = _CopyBuffer("asset_event_tags", ("event_id", "asset_key", "key", "value", "event_timestamp"))
        checks = _CopyBuffer(
            "asset_check_executions",
            (
                "asset_key",
                "check_name",
                "partition",
                "run_id",
                "execution_status",
                "evaluation_event",
                "evaluation_event_timestamp",
                "evaluation_event_storage_id",
                "materialization_event_storage_id",
                "create_timestamp",
            ),
        )
        with self._conn.cursor() as cur:
            first_id = next_id = self._reserve_event_ids(cur, sum(len(template.events) for _, _, template in plan))
            for tick, scheduled, template in plan:
                next_id = self._copy(template, tick, scheduled, next_id, runs, tags, events, asset_tags, checks)
            for buffer in (runs, tags, events, asset_tags, checks):
                buffer.copy_into(cur)
            # The asset index (latest materialization, observation and planned run of each asset), as Dagster's
            # own store_asset_event keeps it, from the newest event of each kind in these runs.
            cur.execute(
                "SELECT DISTINCT ON (asset_key, dagster_event_type) id, event FROM event_logs "
                "WHERE id BETWEEN %s AND %s AND asset_key IS NOT NULL "
                "ORDER BY asset_key, dagster_event_type, id DESC",
                (first_id, next_id - 1),
            )
            latest = sorted(cur.fetchall())
        self._conn.commit()
        for event_id, body in latest:
            self._event_log.store_asset_event(deserialize_value(body, EventLogEntry), event_id)
        return {buffer.table: buffer.rows for buffer in (runs, tags, events, asset_tags, checks)}

    def _template_for(self, scheduled: Scheduled) -> RunTemplate:
        if scheduled.job == Cadence.QUARTER_HOURLY.job_name:
            self._quarter_hourly_runs += 1
            if self._quarter_hourly_runs % self._deployment.failure_every == 0:
                return self._templates[TEMPLATE_FAILED]
        return self._templates[scheduled.job]

    def _reserve_event_ids(self, cur: Any, count: int) -> int:
        """Event ids for ``count`` events, taken from the table's own sequence so Dagster's later writes follow."""
        cur.execute("SELECT nextval(pg_get_serial_sequence('event_logs', 'id'))")
        first = cur.fetchone()[0]
        if count > 1:
            cur.execute("SELECT setval(pg_get_serial_sequence('event_logs', 'id'), %s)", (first + count - 1,))
        return first

    def _copy(
        self,
        template: RunTemplate,
        tick: datetime,
        scheduled: Scheduled,
        next_id: int,
        runs: _CopyBuffer,
        tags: _CopyBuffer,
        events: _CopyBuffer,
        asset_tags: _CopyBuffer,
        checks: _CopyBuffer,
    ) -> int:
        run_id = str(uuid.uuid4())
        delta = tick - template.created
        shift = delta.total_seconds()
        run_tags = {
            **template.run.tags,
            **run_stamp_tags(tick),
            SCHEDULE_NAME_TAG: scheduled.schedule,
            REPOSITORY_LABEL_TAG: REPOSITORY_LABEL,
        }
        run = copy(template.run, run_id=run_id, tags=run_tags)
        runs.add(
            run_id,
            template.snapshot_id,
            run.job_name,
            run.status.value,
            serialize_value(run),
            template.created + delta,
            template.updated + delta,
            None if template.start_time is None else template.start_time + shift,
            None if template.end_time is None else template.end_time + shift,
        )
        for key, value in run_tags.items():
            tags.add(run_id, key, value)
        new_ids: dict[int, int] = {}
        for old_id, body, event_type, timestamp, step_key, asset_key, partition in template.events:
            new_ids[old_id] = next_id
            events.add(
                next_id,
                run_id,
                body.render(template.run_id, run_id, shift),
                event_type,
                timestamp + delta,
                step_key,
                asset_key,
                partition,
            )
            next_id += 1
        for event_id, asset_key, key, value, timestamp in template.asset_tags:
            asset_tags.add(new_ids[event_id], asset_key, key, value, timestamp + delta)
        for (
            asset_key,
            check_name,
            partition,
            status,
            body,
            timestamp,
            evaluation_id,
            materialization_id,
        ) in template.checks:
            checks.add(
                asset_key,
                check_name,
                partition,
                run_id,
                status,
                body.render(template.run_id, run_id, shift) if body else None,
                timestamp + delta,
                new_ids.get(evaluation_id),
                new_ids.get(materialization_id, materialization_id),
                template.created + delta,
            )
        return next_id


def days(first: datetime, count: int) -> Iterator[datetime]:
    for number in range(count):
        yield first + timedelta(days=number)


if __name__ == "__main__":
    _home, _uri, _database, _big_run, _tick = sys.argv[1:]
    with DagsterInstance.from_config(_home) as _instance:
        _record_templates(_instance, _uri, _database, int(_big_run), datetime.fromisoformat(_tick))
