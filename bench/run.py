"""The benchmark command: ``python -m bench [--sizes 1000,10000 | --full] [--automations 1,10,100,500] [--out ...]``.

One run measures every scenario of ``bench.scenarios`` at every size, side by side, on one server and one data set
per size, then the Dagster overhead, and writes ``latest.json`` (every figure) and ``latest.md`` (the tables, the
targets and the machine) into ``--out``. Why it is built this way:

* The server is started by the benchmark itself (a SecantusDB daemon on a free port, in a temporary folder), so a run
  never touches anyone's data and its server CPU can be read from ``/proc``; ``--mongodb-uri`` runs the same
  scenarios against a real MongoDB instead (databases ``bench_<N>`` are created there and dropped afterwards).
* S3 is moto, in this process, on a free port; the scenario processes reach it through ``AWS_ENDPOINT_URL`` and fake
  credentials, exactly as the platform's default AWS chain would.
* Each scenario runs in a fresh process (``bench.measure``) so its peak RSS is its own.
* Every data-change scenario sets one field to its own value, so each modifies all N documents of the same data and
  none depends on another having run first; the data is generated once per size.
* The ``automations`` family runs over automation counts (``--automations``), on its own data set per count. Its
  whole-run scenarios get a fresh ``DAGSTER_HOME`` each: SQLite storage, or a fresh database on a PostgreSQL server
  the benchmark starts from Debian's binaries (the one the system tests start, ``tests/postgres_cluster.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pymongo
from moto.server import ThreadedMotoServer

from bench import dataset, machine, overhead, report
from bench.measure import RESULT_PREFIX
from bench.scenarios import AUTOMATIONS_FAMILY, SCENARIOS
from intervalprocessing_dagster.mongo.embedded import secantus_command
from tests.local_project import free_port, stop_process
from tests.postgres_cluster import PostgresServer, PostgresUnavailable, running_postgres

QUICK_SIZES = (1000, 10000)
FULL_SIZES = (10000, 100000, 1000000)
AUTOMATION_COUNTS = (1, 10, 100, 500)
BUCKET = "intervalprocessing-bench"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MongoServer:
    """Where the scenarios connect, and the server's pid when this run started it (for its CPU time)."""

    uri: str
    pid: int | None
    description: str


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code (failed scenarios are reported in the results, not as an exit)."""
    args = _parse_args(argv)
    sizes = FULL_SIZES if args.full else tuple(args.sizes)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="intervalprocessing-bench-") as scratch_name:
        scratch = Path(scratch_name)
        document_scenarios = [name for name in args.scenarios if SCENARIOS[name].family != AUTOMATIONS_FAMILY]
        automation_scenarios = [name for name in args.scenarios if SCENARIOS[name].family == AUTOMATIONS_FAMILY]
        with _mongo_server(args.mongodb_uri, scratch) as server, _moto_s3(), ExitStack() as stack:
            postgres: PostgresServer | str | None = None
            if any(SCENARIOS[name].instance == "postgres" for name in automation_scenarios):
                postgres = _start_postgres(stack)
            results: list[dict[str, Any]] = []
            generation: dict[str, float] = {}
            for n in sizes if document_scenarios else ():
                database = f"bench_{n}"
                generation[str(n)] = _generate(server.uri, database, n)
                results += _run_round(document_scenarios, n, server, database, scratch, args.repeats, postgres)
                _drop(server.uri, database)
            for n in args.automations if automation_scenarios else ():
                database = f"bench_automations_{n}"
                generation[f"{n} automations"] = _generate(server.uri, database, n, automations=True)
                results += _run_round(automation_scenarios, n, server, database, scratch, args.repeats, postgres)
                _drop(server.uri, database)
            overhead_result = overhead.measure(server.uri, scratch) if args.overhead else {"error": "skipped"}
            server_version = _server_version(server.uri)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "sizes": list(sizes) if document_scenarios else [],
        "automation_counts": list(args.automations) if automation_scenarios else [],
        "repeats": args.repeats,
        "runtime_seconds": round(time.monotonic() - started, 1),
        "machine": machine.describe(server_version, server.description, load_at_start),
        "data_generation_seconds": generation,
        "results": results,
        "overhead": overhead_result,
    }
    document["targets"] = report.evaluate_targets(document)
    (out_dir / "latest.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out_dir / "latest.md").write_text(report.markdown(document))
    print(
        f"wrote {out_dir / 'latest.json'} and {out_dir / 'latest.md'} in {document['runtime_seconds']}s",
        file=sys.stderr,
    )
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=QUICK_SIZES,
        help="comma-separated N values (default: %(default)s, a couple of minutes on 2 cores)",
    )
    parser.add_argument("--full", action="store_true", help=f"run N = {', '.join(map(str, FULL_SIZES))}")
    parser.add_argument(
        "--automations",
        type=_sizes,
        default=AUTOMATION_COUNTS,
        help="comma-separated automation counts for the automations family (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "bench" / "results",
        help="folder for latest.json and latest.md (default: bench/results)",
    )
    parser.add_argument(
        "--scenarios",
        type=_scenario_names,
        default=tuple(SCENARIOS),
        help="comma-separated scenario names or families, e.g. report-s3,find.platform (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=1,
        help="runs of each scenario per size, in rounds; the median run is reported (default: 1)",
    )
    parser.add_argument(
        "--no-overhead", dest="overhead", action="store_false", help="skip the Dagster overhead figure (about 30 s)"
    )
    parser.add_argument(
        "--mongodb-uri",
        default=None,
        help="benchmark this MongoDB instead of a fresh SecantusDB (creates and drops bench_<N>)",
    )
    return parser.parse_args(argv)


def _run_round(
    names: list[str],
    n: int,
    server: MongoServer,
    database: str,
    scratch: Path,
    repeats: int,
    postgres: PostgresServer | str | None,
) -> list[dict[str, Any]]:
    """Every scenario in ``names`` at size ``n``, ``repeats`` times in rounds; the median run of each."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for repeat in range(repeats):  # rounds, so a burst of other load hits one round, not one variant
        for name in names:
            _wait_until_idle(server.pid)
            runs[name].append(_run_scenario(name, n, server, database, scratch, repeat, postgres))
            _progress(runs[name][-1])
    return [_median_run(measured) for measured in runs.values()]


def _start_postgres(stack: ExitStack) -> PostgresServer | str:
    """The Postgres server for ``platform-postgres`` scenarios, or why there is none (reported as their error)."""
    try:
        return stack.enter_context(running_postgres())
    except PostgresUnavailable as exc:
        print(f"no Postgres instance: {exc}", file=sys.stderr)
        return str(exc)


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 10000,100000")
    return tuple(sorted(set(sizes)))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _scenario_names(text: str) -> tuple[str, ...]:
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    names = tuple(name for name, scenario in SCENARIOS.items() if name in wanted or scenario.family in wanted)
    unknown = set(wanted) - set(names) - {scenario.family for scenario in SCENARIOS.values()}
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return names


@contextmanager
def _mongo_server(uri: str | None, scratch: Path) -> Iterator[MongoServer]:
    """The given MongoDB, or a SecantusDB daemon of our own, stopped (by its pid) when the run ends."""
    if uri:
        yield MongoServer(uri=uri, pid=None, description="MongoDB given with --mongodb-uri")
        return
    port = free_port()
    log = open(scratch / "secantus.log", "wb")
    process = subprocess.Popen(
        secantus_command(port, scratch / "secantus-data", sync_on_commit=False),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        server_uri = f"mongodb://127.0.0.1:{port}/"
        _wait_for(server_uri, process)
        yield MongoServer(
            uri=server_uri,
            pid=process.pid,
            description="SecantusDB daemon started by the benchmark (python -m secantus)",
        )
    finally:
        stop_process(process)
        log.close()


def _wait_for(uri: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SecantusDB server at {uri} did not start") from None
            time.sleep(0.2)


@contextmanager
def _moto_s3() -> Iterator[None]:
    """An in-process moto S3 with the benchmark bucket; the environment points boto3 (ours and children's) at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log would bury the progress
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def _generate(uri: str, database: str, n: int, *, automations: bool = False) -> float:
    """Fill ``database`` for size ``n`` (documents, or automations); return the seconds it took (reported, never
    part of a scenario)."""
    started = time.perf_counter()
    with pymongo.MongoClient(uri) as client:
        client.drop_database(database)
        db = client[database]
        counts = dataset.generate_automations(db, n, mark="unset") if automations else dataset.generate(db, n)
    seconds = round(time.perf_counter() - started, 2)
    print(f"N={n}: generated {counts} in {seconds}s", file=sys.stderr)
    return seconds


def _drop(uri: str, database: str) -> None:
    with pymongo.MongoClient(uri) as client:
        client.drop_database(database)


def _wait_until_idle(pid: int | None, timeout: float = 15.0) -> None:
    """Let the server finish the previous scenario's background work (checkpoints, oplog) before the next starts.

    Without this, whichever scenario follows a big write pays for it, and the order of the table becomes a bias.
    Idle = under 5% of a core over a quarter second. Unknown for a server we did not start (``--mongodb-uri``).
    """
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    while time.monotonic() < deadline:
        before = cpu()
        time.sleep(0.25)
        if cpu() - before < 0.0125:
            return


def _run_scenario(
    name: str,
    n: int,
    server: MongoServer,
    database: str,
    scratch: Path,
    repeat: int,
    postgres: PostgresServer | str | None = None,
) -> dict[str, Any]:
    """Run one scenario in a fresh process; on failure keep the error so the run still reports the rest."""
    out_dir = scratch / "out" / f"{name}-{n}-{repeat}"
    scenario = SCENARIOS[name]
    spec = {
        "scenario": name,
        "n": n,
        "uri": server.uri,
        "database": database,
        "mark": f"{name}@{n}#{repeat}",
        "out_dir": str(out_dir),
        "bucket": BUCKET,
        "server_pid": server.pid,
        "s3_pid": os.getpid(),
    }
    env = dict(os.environ)
    if scenario.instance is not None:
        if scenario.instance == "postgres" and not isinstance(postgres, PostgresServer):
            return {
                "scenario": name,
                "family": scenario.family,
                "variant": scenario.variant,
                "n": n,
                "error": f"no Postgres server: {postgres}",
            }
        env.update(_instance_environment(scenario.instance, out_dir, server, database, postgres))
    if scenario.step_outputs_in_s3:  # the moto S3 this process serves (``_moto_s3``), as production's bucket
        env.update({"STEP_OUTPUTS_S3_BUCKET": BUCKET, "STEP_OUTPUTS_S3_PREFIX": f"step-outputs/{name}-{n}-{repeat}"})
    completed = subprocess.run(
        [sys.executable, "-m", "bench.measure", json.dumps(spec)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        error = (completed.stderr or completed.stdout).strip().splitlines()
        return {
            "scenario": name,
            "family": scenario.family,
            "variant": scenario.variant,
            "n": n,
            "error": "\n".join(error[-5:]) or f"exit code {completed.returncode}",
        }
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def _instance_environment(
    kind: str, out_dir: Path, server: MongoServer, database: str, postgres: PostgresServer | str | None
) -> dict[str, str]:
    """What a whole-run scenario's process gets: the code location pointed at the benchmark's database, and a fresh
    ``DAGSTER_HOME`` whose ``dagster.yaml`` keeps Dagster's storage in SQLite or in a new Postgres database, with
    the storage classes the project's own instances use (the repo-root ``dagster.yaml`` and
    ``deploy/dagster.yaml``). Telemetry is off so no run waits on it."""
    home = out_dir / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    config = "telemetry:\n  enabled: false\n"
    config += "storage:\n  custom:\n    module: intervalprocessing_dagster.instance.storage\n"
    if kind == "postgres":
        assert isinstance(postgres, PostgresServer)
        config += (
            "    class: PooledPostgresStorage\n    config:\n      postgres_db:\n"
            f"        hostname: {postgres.host}\n        port: {postgres.port}\n"
            f"        db_name: {postgres.create_database()}\n        username: {postgres.username}\n"
            "        password: {env: BENCH_PG_PASSWORD}\n        scheme: postgresql+psycopg2\n"
        )
    else:
        config += f"    class: PooledSqliteStorage\n    config:\n      base_dir: {home}\n"
    (home / "dagster.yaml").write_text(config)
    env = {
        "DAGSTER_HOME": str(home),
        "MONGODB_URI": server.uri,
        "MONGODB_DATABASE": database,
        "INTERVALPROCESSING_LOCAL_DIR": str(out_dir / "local"),
    }
    if isinstance(postgres, PostgresServer):
        env["BENCH_PG_PASSWORD"] = postgres.password
    return env


def _median_run(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (all its figures together), plus every run's wall time; a failure wins."""
    failed = [result for result in measured if "error" in result]
    if failed:
        return failed[0]
    ordered = sorted(measured, key=lambda result: result["wall_seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "wall_seconds_runs": [r["wall_seconds"] for r in measured]}


def _progress(result: dict[str, Any]) -> None:
    if "error" in result:
        summary = "FAILED: " + result["error"].splitlines()[-1]
    else:
        summary = (
            f"{result['wall_seconds']:.2f}s, {result['commands_total']} commands, peak RSS {result['peak_rss_mb']} MB"
        )
    print(f"N={result['n']}: {result['scenario']}: {summary}", file=sys.stderr)


def _server_version(uri: str) -> str:
    with pymongo.MongoClient(uri) as client:
        return str(client.admin.command("buildInfo").get("version", "unknown"))


if __name__ == "__main__":
    sys.exit(main())
