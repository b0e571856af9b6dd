"""``python -m bench.history``: the ``history`` family, a soak benchmark of Dagster's own history (issue 21).

A deployment's history is built in the system tests' Postgres (``tests/postgres_cluster.py``) from real runs of
every scheduled job (``bench.history_build``), twice:

* ``year``: ``--days`` (365) days and no retention, what the platform wrote before the retention job existed;
* ``retained``: ``--steady-days`` (120) days with the history retention job's pass after every simulated day, exactly
  as the daily job runs it (``intervalprocessing_dagster.history.retention``), so the database reaches the steady
  state of the windows (``--success-days`` 30, ``--failure-days`` 90).

On each it measures the database's size, the latency of the GraphQL queries the UI sends for the runs list, a job's
runs tab, assets' events tabs, a checks tab and the run page of a ``--big-run``-automation run (``bench.history_ui``,
on a real ``dagster-webserver``), the daemon's scheduler and run-queue iterations (``bench.history_daemon``), and the
retention pass's time to delete one day of history. The retained database is also copied and compacted (``VACUUM
FULL``) to get the size of what the windows keep, against which the target (within 1.2x) is judged. Results go to
``--out`` (``bench/results/history/``): ``latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from dagster import DagsterInstance
from secantus import SecantusDBServer

from bench import history_daemon, history_report, history_ui, machine
from bench.history_build import (
    TEMPLATE_BIG,
    Deployment,
    HistoryWriter,
    RunTemplate,
    Scheduled,
    days,
    load_templates,
    record_templates,
    seed_mongo,
)
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.history.resources import RunRetention
from intervalprocessing_dagster.history.retention import purge_history
from intervalprocessing_dagster.runs.step_outputs import LocalStepOutputStore
from tests.local_project import new_project, webserver
from tests.postgres_cluster import PostgresServer, running_postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
MONGO_DATABASE = "history"
#: The assets whose events tabs are timed: a collection every automation observes, and a daily report.
EVENT_ASSETS = ["audits", "daily_audit_inventory"]
#: The checks tab timed: the hourly config check.
CHECK = ("dataupdateconfigs", "automations_are_valid")
JOB = Cadence.QUARTER_HOURLY.job_name
PASSWORD_ENV = "HISTORY_BENCH_PG_PASSWORD"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    deployment = Deployment(*args.deployment, failure_every=args.failure_every)
    retention = RunRetention(
        success_days=args.success_days, failure_days=args.failure_days, keep_all_days=args.keep_all_days
    )
    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.history", *(sys.argv[1:] if argv is None else argv)]),
        "deployment": asdict(deployment),
        "retention": retention.model_dump(),
        "days": args.days,
        "steady_days": args.steady_days,
        "big_run_automations": args.big_run,
        "vacuum_after_each_pass": not args.without_vacuum,
    }
    with (
        tempfile.TemporaryDirectory(prefix="intervalprocessing-history-") as scratch_name,
        _load_sampler() as load,
        running_postgres() as postgres,
    ):
        scratch = Path(scratch_name)
        mongo = SecantusDBServer(storage_path=str(scratch / "secantus"))
        mongo.start()
        try:
            templates_database = postgres.create_database()
            templates_home = _instance_home(scratch / "templates", postgres, templates_database)
            env = _environment(scratch, mongo.uri)
            os.environ.update(env)  # the daemon's code server and the webserver load the code location with it
            seed_mongo(mongo.uri, MONGO_DATABASE, deployment)
            stage = time.monotonic()
            record_templates(
                templates_home,
                env,
                mongo.uri,
                MONGO_DATABASE,
                args.big_run,
                tick=datetime.now(UTC).replace(minute=0, second=0, microsecond=0),
            )
            document["template_seconds"] = round(time.monotonic() - stage, 1)
            templates_conn = _connect(postgres, templates_database)
            templates = load_templates(templates_conn)
            document["templates"] = {
                key: {"status": template.run.status.value, **template.counts} for key, template in templates.items()
            }
            document["scenarios"] = {}
            for name, scenario_days, scenario_retention in (
                ("year", args.days, None),
                ("retained", args.steady_days, retention),
            ):
                if scenario_days:
                    print(f"{name}: {scenario_days} days", file=sys.stderr)
                    document["scenarios"][name] = _scenario(
                        name,
                        scenario_days,
                        scenario_retention,
                        postgres,
                        scratch,
                        env,
                        templates,
                        templates_conn,
                        deployment,
                        args,
                    )
            templates_conn.close()
        finally:
            mongo.stop()
        document["machine"] = machine.describe(
            "PostgreSQL 15 (tests/postgres_cluster.py)", "Dagster storage", load_at_start
        )
        document["machine"]["load_average"]["during"] = load.summary()
    document["runtime_seconds"] = round(time.monotonic() - started, 1)
    document["targets"] = history_report.evaluate_targets(document)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (args.out / "latest.md").write_text(history_report.markdown(document))
    print(f"wrote {args.out / 'latest.json'} and latest.md in {document['runtime_seconds']}s", file=sys.stderr)
    return 0


def _scenario(
    name: str,
    day_count: int,
    retention: RunRetention | None,
    postgres: PostgresServer,
    scratch: Path,
    env: dict[str, str],
    templates: dict[str, RunTemplate],
    templates_conn: Any,
    deployment: Deployment,
    args: argparse.Namespace,
) -> dict[str, Any]:
    database = postgres.create_database()
    home = _instance_home(scratch / name, postgres, database)
    result: dict[str, Any] = {"days": day_count}
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    store = LocalStepOutputStore(base_dir=str(home / "storage"))
    with DagsterInstance.from_config(str(home)) as instance:  # creates Dagster's schema
        writer = HistoryWriter(postgres, database, instance.event_log_storage, templates, deployment)
        writer.copy_snapshots(templates_conn)
        rows: Counter[str] = Counter()
        build_seconds = 0.0
        passes: list[dict[str, Any]] = []
        for number, day in enumerate(days(today - timedelta(days=day_count), day_count)):
            stage = time.monotonic()
            rows.update(writer.write_day(day))
            build_seconds += time.monotonic() - stage
            if retention is not None:
                # As the daily job runs it, at the end of the day just written.
                stage = time.monotonic()
                report = purge_history(
                    instance, retention, store, now=_epoch(day + timedelta(days=1)), vacuum=not args.without_vacuum
                )
                passes.append(
                    {
                        "day": number + 1,
                        "seconds": round(time.monotonic() - stage, 2),
                        "deleted_runs": dict(report.deleted_runs),
                        "vacuum_seconds": report.vacuum_seconds,
                    }
                )
            if (number + 1) % 30 == 0:
                print(
                    f"  {name}: day {number + 1}, {rows['event_logs']:,} events, {_size(postgres, database)}",
                    file=sys.stderr,
                )
        # The newest run: the big one, whose run page is timed.
        big = templates[TEMPLATE_BIG]
        rows.update(
            writer.write_runs(
                [
                    (
                        today - timedelta(hours=1),
                        Scheduled(Cadence.HOURLY.job_name, Cadence.HOURLY.schedule_name, ()),
                        big,
                    )
                ]
            )
        )
        writer.close()
        result["build"] = {"seconds": round(build_seconds, 1), "rows": dict(rows)}
        if passes:
            result["retention_passes"] = _passes_summary(passes, retention)
        _vacuum_analyze(postgres, database)  # what autovacuum would have done by now in a live database
        result["size"] = _sizes(postgres, database)
        big_run_id = instance.get_run_records(limit=1)[0].dagster_run.run_id
        print(f"  {name}: UI queries", file=sys.stderr)
        with webserver(new_project(scratch / f"{name}-ui"), {**env, "DAGSTER_HOME": str(home)}) as url:
            result["ui"] = history_ui.measure(
                history_ui.Webserver(url),
                history_ui.page_requests(JOB, EVENT_ASSETS, CHECK),
                big_run_id,
                args.big_run,
                args.repeats,
            )
        print(f"  {name}: daemon iterations", file=sys.stderr)
        result["daemon"] = history_daemon.measure(instance, args.daemon_iterations)
        if retention is None:
            # One day out of a year-old database: windows that leave everything but the oldest day.
            oldest_day = RunRetention(
                success_days=day_count - 1, failure_days=day_count - 1, keep_all_days=min(day_count - 1, 7)
            )
            stage = time.monotonic()
            report = purge_history(instance, oldest_day, store, now=_epoch(today))
            result["one_day_deletion"] = {
                "seconds": round(time.monotonic() - stage, 2),
                "deleted_runs": dict(report.deleted_runs),
                "vacuum_seconds": report.vacuum_seconds,
            }
    if retention is not None:
        result["size"]["compacted_bytes"] = _compacted_size(postgres, database)
    return result


def _passes_summary(passes: list[dict[str, Any]], retention: RunRetention) -> dict[str, Any]:
    """The passes once both windows are full (steady state), and every pass for the record."""
    steady = [p for p in passes if p["day"] > max(retention.success_days, retention.failure_days)]
    deleting = steady or [p for p in passes if p["deleted_runs"]] or passes
    seconds = sorted(p["seconds"] for p in deleting)
    return {
        "steady_state_passes": len(steady),
        "seconds_p50": round(statistics.median(seconds), 2),
        "seconds_max": round(seconds[-1], 2),
        "deleted_runs_per_pass": round(statistics.fmean(sum(p["deleted_runs"].values()) for p in deleting), 1),
        "all": passes,
    }


def _sizes(postgres: PostgresServer, database: str) -> dict[str, Any]:
    with _session(postgres, database) as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        total = cur.fetchone()[0]
        cur.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public' "
            "ORDER BY 2 DESC LIMIT 8"
        )
        tables = {name: {"total_bytes": size, "heap_bytes": heap} for name, size, heap in cur.fetchall()}
        cur.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM event_logs)")
        runs, events = cur.fetchone()
    return {"database_bytes": total, "tables": tables, "runs": runs, "events": events}


def _compacted_size(postgres: PostgresServer, database: str) -> int:
    """The size of what the retained database holds, without the free space deletions left: a copy, rewritten."""
    compact = f"{database}_compact"
    with _session(postgres, "postgres") as cur:
        cur.execute(f'CREATE DATABASE "{compact}" TEMPLATE "{database}"')
    try:
        with _session(postgres, compact) as cur:
            cur.execute("VACUUM FULL")
            cur.execute("SELECT pg_database_size(current_database())")
            return cur.fetchone()[0]
    finally:
        with _session(postgres, "postgres") as cur:
            cur.execute(f'DROP DATABASE "{compact}"')


def _vacuum_analyze(postgres: PostgresServer, database: str) -> None:
    with _session(postgres, database) as cur:
        cur.execute("VACUUM ANALYZE")


@contextmanager
def _session(postgres: PostgresServer, database: str) -> Iterator[Any]:
    """A cursor on an autocommitting connection (VACUUM and CREATE DATABASE need one), closed afterwards."""
    conn = _connect(postgres, database)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def _connect(postgres: PostgresServer, database: str) -> Any:
    return psycopg2.connect(
        host=postgres.host, port=postgres.port, user=postgres.username, password=postgres.password, dbname=database
    )


def _size(postgres: PostgresServer, database: str) -> str:
    with _session(postgres, database) as cur:
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        return cur.fetchone()[0]


def _epoch(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def _environment(scratch: Path, mongo_uri: str) -> dict[str, str]:
    """What the code location reads: the benchmark's MongoDB, local reports and step outputs, nothing of the
    developer's shell (no DAGSTER_* variable, no AWS)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DAGSTER_", "REPORTS_", "STEP_OUTPUTS_", "RUN_HISTORY_", "ALERTS_"))
    }
    return {
        **env,
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": MONGO_DATABASE,
        "INTERVALPROCESSING_LOCAL_DIR": str(scratch / "local"),
    }


def _instance_home(home: Path, postgres: PostgresServer, database: str) -> Path:
    """A DAGSTER_HOME on ``database``: production's storage class and run queue (deploy/dagster.yaml), a run
    launcher that only records launches (the daemon measurement launches nothing), local compute logs."""
    home.mkdir(parents=True, exist_ok=True)
    production = (REPO_ROOT / "deploy" / "dagster.yaml").read_text()
    run_coordinator = production[production.index("run_coordinator:") : production.index("\nrun_monitoring:")]
    os.environ[PASSWORD_ENV] = postgres.password  # read by this process, the webserver and the code servers
    (home / "dagster.yaml").write_text(
        postgres.dagster_storage(database, PASSWORD_ENV)
        + "run_launcher:\n  module: dagster._core.test_utils\n  class: MockedRunLauncher\n"
        + "telemetry:\n  enabled: false\n"
        + run_coordinator
    )
    return home


class _LoadSampler:
    """The 1-minute load average every 30 s while the benchmark runs: how busy the shared machine was."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(30):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        samples = self.samples or [os.getloadavg()[0]]
        return {
            "min": round(min(samples), 2),
            "mean": round(statistics.fmean(samples), 2),
            "max": round(max(samples), 2),
            "samples": len(samples),
        }


@contextmanager
def _load_sampler() -> Iterator[_LoadSampler]:
    sampler = _LoadSampler()
    sampler._thread.start()
    try:
        yield sampler
    finally:
        sampler._stop.set()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="days of the no-retention history (0: skip it)")
    parser.add_argument(
        "--steady-days", type=int, default=120, help="days of the retained history, a pass after each (0: skip it)"
    )
    parser.add_argument("--success-days", type=int, default=30)
    parser.add_argument("--failure-days", type=int, default=90)
    parser.add_argument("--keep-all-days", type=int, default=7)
    parser.add_argument(
        "--deployment",
        type=_counts,
        default=(20, 10, 10, 10),
        help="automations per cadence: quarter-hourly,half-hourly,hourly,nightly (default 20,10,10,10)",
    )
    parser.add_argument(
        "--failure-every", type=int, default=100, help="every Nth quarter-hourly run is a failed one (default 100)"
    )
    parser.add_argument("--big-run", type=int, default=500, help="automations of the run whose run page is timed")
    parser.add_argument(
        "--repeats", type=int, default=20, help="timed samples of each UI query (20: the p95 is the second slowest)"
    )
    parser.add_argument("--daemon-iterations", type=int, default=8, help="scheduler and run-queue iterations timed")
    parser.add_argument(
        "--without-vacuum",
        action="store_true",
        help="the daily passes without the job's VACUUM: what autovacuum alone leaves (comparison)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "history")
    return parser.parse_args(argv)


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(","))
    if len(counts) != 4 or min(counts) < 1:
        raise argparse.ArgumentTypeError("four positive counts: quarter-hourly,half-hourly,hourly,nightly")
    return counts


if __name__ == "__main__":
    sys.exit(main())
