"""A killed data-change run is recovered completely, through Dagster's own re-execution (issue 18).

The run worker (``killed_worker.py``: the real job, Dagster's execution, SQLite instance, SecantusDB; forked from a
process that imported them once) dies with SIGKILL at a chosen point; what run monitoring then does is one call
(``report_run_failed``: the daemon's own monitoring and retry machinery are driven in
``tests/deploy/test_deploy_recovery.py``), and recovery is Dagster's
re-execution from failure (``ReexecutionOptions.from_failure``, which goes through the same
``KnownExecutionState.build_resume_retry_reexecution`` as the daemon's retries and the UI's button) on the project's
own instance configuration (``dagster.yaml``: ``RecoveringDagsterInstance``). After recovery: every automation
applied once for the stamp (its ``Change`` and one note of its array ``Add``), one terminal ``automationruns`` record
per automation, and the final run's status agrees with the data.

Kill points are random (``RECOVERY_SEED`` repeats a series; each failure message names the seed) plus four that every
series has: inside the loader, between two automations, inside an update, and during the run's last event writes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path

import pymongo
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    JobExecutionResult,
    ReexecutionOptions,
    RunsFilter,
    execute_job,
    reconstructable,
)
from dagster._core.execution.plan.state import KnownExecutionState
from pymongo.database import Database

from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION, StampKey
from intervalprocessing_dagster.instance.reexecution import dagster_resume_retry_reexecution
from intervalprocessing_dagster.mongo.embedded import secantus_command
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from tests.data_change.killed_worker import KillPoint, hourly_data_change_job, start_worker
from tests.local_project import free_port

pytestmark = pytest.mark.recovery

REPO = Path(__file__).resolve().parents[2]
AUTOMATIONS = 20
KILL_POINTS = 20
# One database for the module: a reconstructable job is built once per process (see test_data_change_cadence_run.py).
DATABASE = "test_recovery"
FIRST_TICK = datetime(2026, 3, 6, 0, 0, tzinfo=UTC)
LOADER = "load_hourly_automations"
SEED = int(os.environ.get("RECOVERY_SEED", random.randrange(10**6)))


def name(number: int) -> str:
    return f"Auto {number:02d}"


def step(number: int) -> str:
    return f"apply_automation[auto_{number:02d}]"


def automation(number: int) -> dict:
    """Automation ``number``: a ``Change`` of its group's ``flag`` and an array ``Add`` of a note naming it."""
    return {
        "name": name(number),
        "query": f"{{ group: {number} }}",
        "collectionName": "audits",
        "isActive": True,
        "runCadence": "Hourly",
        "singleFieldUpdateElements": [{"elementName": "flag", "updateType": "Change", "elementValue": name(number)}],
        "arrayObjectFieldUpdateElements": [
            {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": name(number)}
        ],
    }


@dataclass
class Cadence:
    """The test's deployment: the project's instance on a temporary folder, a worker instance on the same files that
    dies at its kill point, and the cadence's database."""

    db: Database
    home: Path
    worker_home: Path
    env: dict[str, str]
    instance: DagsterInstance
    workers: int = 0

    def reset(self) -> None:
        """Every group's ``flag`` unset, so the next stamp's ``Change`` shows whether it was applied."""
        self.db.audits.update_many({}, {"$set": {"flag": "unset"}})

    def worker(self, stamp: datetime, kill: KillPoint | None, *, reexecute_from: str | None = None) -> Worker:
        """The run worker in its own process: a new run of ``stamp``, or a re-execution from failure."""
        self.workers += 1
        log = self.home.parent / f"worker-{self.workers}.log"
        env = {**self.env, "DAGSTER_HOME": str(self.worker_home)}
        return Worker(start_worker(env, log, kill, stamp=stamp, reexecute_from=reexecute_from), log)

    def wait_until_applied(self, worker: Worker, stamp: datetime, count: int) -> None:
        """Until ``count`` automations have succeeded for ``stamp`` (while ``worker`` goes on)."""
        deadline = time.monotonic() + 120
        while self.db[LEDGER_COLLECTION].count_documents({"stamp": stamp, "status": "succeeded"}) < count:
            assert worker.running() and time.monotonic() < deadline, worker.output()[-3000:]
            time.sleep(0.02)

    def runs(self, stamp: datetime) -> list[DagsterRun]:
        """The stamp's runs, oldest first: the run its tick started and the re-executions after it (by root run id:
        a re-execution through the Python API carries neither the stamp tag nor Dagster's run-group tag)."""
        (first,) = self.instance.get_runs(RunsFilter(tags={RUN_STAMP_TAG: stamp.isoformat()}), limit=1, ascending=True)
        return [run for run in self.instance.get_runs(ascending=True) if first.run_id in (run.run_id, run.root_run_id)]

    def mark_dead(self, run: DagsterRun) -> None:
        """What run monitoring does when a run's worker is gone."""
        if self.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED:
            self.instance.report_run_failed(run, "the run worker died (SIGKILL)")

    def reexecute_from_failure(self, run: DagsterRun) -> JobExecutionResult:
        options = ReexecutionOptions.from_failure(run.run_id, self.instance)
        with execute_job(reconstructable(hourly_data_change_job), self.instance, reexecution_options=options) as result:
            return result

    def records(self, stamp: datetime) -> list[dict]:
        prefix = StampKey("Hourly", stamp, False).prefix
        return list(self.db[LEDGER_COLLECTION].find({"_id": {"$regex": f"^{prefix.replace('|', '[|]')}"}}))

    def problems(self, stamp: datetime) -> list[str]:
        """What is wrong with the stamp's data: automations not applied, notes pushed twice, records not one
        succeeded per automation."""
        found = []
        for audit in self.db.audits.find():
            expected = name(audit["group"])
            notes = [n["text"] for n in audit.get("notes", []) if n["date"] == stamp]
            if notes != [expected]:
                found.append(f"audit {audit['_id']} has notes {notes} for the stamp, expected [{expected!r}]")
            if audit["flag"] != expected:
                found.append(f"audit {audit['_id']} has flag {audit['flag']!r}, expected {expected!r}")
        statuses = sorted((r["automation"], r["status"]) for r in self.records(stamp))
        if statuses != [(name(g), "succeeded") for g in range(AUTOMATIONS)]:
            found.append(f"records for the stamp: {statuses}")
        return found


@pytest.fixture()
def cadence(mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cadence]:
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    client.drop_database(DATABASE)
    db = client[DATABASE]
    db.audits.insert_many(
        [{"group": g, "seq": s, "flag": "unset", "notes": []} for g in range(AUTOMATIONS) for s in range(2)]
    )
    db.dataupdateconfigs.insert_many([automation(g) for g in range(AUTOMATIONS)])
    env = {
        **os.environ,
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": DATABASE,
        "INTERVALPROCESSING_LOCAL_DIR": str(tmp_path / "local"),
    }
    for variable in ("MONGODB_URI", "MONGODB_DATABASE", "INTERVALPROCESSING_LOCAL_DIR"):
        monkeypatch.setenv(variable, env[variable])
    storage = tmp_path / "dagster_storage"
    project_config = (REPO / "dagster.yaml").read_text().replace(".intervalprocessing/dagster_home", str(storage))
    home, worker_home = tmp_path / "home", tmp_path / "worker_home"
    home.mkdir()
    worker_home.mkdir()
    (home / "dagster.yaml").write_text(project_config + "telemetry:\n  enabled: false\n")
    # The worker's instance: the same configuration and files; only its storage class also watches for the kill.
    worker_config = project_config.replace(
        "module: intervalprocessing_dagster.instance.storage", "module: tests.data_change.killed_worker"
    )
    worker_config = worker_config.replace("class: PooledSqliteStorage", "class: KillingSqliteStorage")
    (worker_home / "dagster.yaml").write_text(worker_config + "telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        yield Cadence(db, home, worker_home, env, instance)
    client.drop_database(DATABASE)
    client.close()


@dataclass
class Worker:
    process: BaseProcess
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        return self.process.is_alive()

    def wait_until_stopped(self, timeout: float = 120) -> None:
        """Until the worker has stopped itself (its kill point sends SIGSTOP): the state ``T`` in /proc."""
        deadline = time.monotonic() + timeout
        stat = Path(f"/proc/{self.process.pid}/stat")
        while stat.read_text().rpartition(")")[2].split()[0] != "T":
            assert self.running() and time.monotonic() < deadline, self.output()[-3000:]
            time.sleep(0.02)


def finish(worker: Worker, timeout: float = 120) -> tuple[int, str]:
    """Wait for the worker to end: its exit code (negative: the signal that ended it) and its output."""
    worker.process.join(timeout)
    assert worker.process.exitcode is not None, f"the worker still runs after {timeout} s:\n{worker.output()[-3000:]}"
    return worker.process.exitcode, worker.output()


def kill_points(rng: random.Random) -> list[KillPoint]:
    """``KILL_POINTS`` points across a 20-automation cadence: the four every series must have, then random ones."""
    k = rng.randrange(AUTOMATIONS - 1)
    required = [
        KillPoint(f"inside the loader, after its output {k + 1}", "after_event", k + 1, "STEP_OUTPUT", LOADER),
        KillPoint(f"between {name(k)} and {name(k + 1)}", "after_event", 1, "STEP_SUCCESS", step(k)),
        KillPoint(
            f"inside the update of {name(k)}, applied but unanswered",
            "mongo_succeeded",
            k + 1,
            command="update",
            collection="audits",
        ),
        KillPoint("during the run's last event writes (before RUN_SUCCESS)", "before_event", 1, "RUN_SUCCESS"),
    ]

    def random_point() -> KillPoint:
        k = rng.randrange(AUTOMATIONS)
        return rng.choice(
            [
                KillPoint(f"inside the loader, after its output {k + 1}", "after_event", k + 1, "STEP_OUTPUT", LOADER),
                KillPoint(
                    "before the loader wrote the pending records",
                    "mongo_started",
                    1,
                    command="insert",
                    collection=LEDGER_COLLECTION,
                ),
                KillPoint("between the loader and the first automation", "after_event", 1, "STEP_SUCCESS", LOADER),
                KillPoint(f"between {name(k)} and the next", "after_event", 1, "STEP_SUCCESS", step(k)),
                KillPoint(f"as {name(k)} starts", "after_event", 1, "STEP_START", step(k)),
                # The steps' record writes alternate: the claim (running), then the outcome; 2k + 1 is Auto k's claim.
                KillPoint(
                    f"{name(k)} claimed running, nothing applied",
                    "mongo_succeeded",
                    2 * k + 1,
                    command="update",
                    collection=LEDGER_COLLECTION,
                ),
                KillPoint(
                    f"inside the update of {name(k)}, before it is sent",
                    "mongo_started",
                    k + 1,
                    command="update",
                    collection="audits",
                ),
                KillPoint(
                    f"inside the update of {name(k)}, applied but unanswered",
                    "mongo_succeeded",
                    k + 1,
                    command="update",
                    collection="audits",
                ),
                KillPoint(
                    f"{name(k)} applied and recorded, before its step's success",
                    "before_event",
                    1,
                    "STEP_SUCCESS",
                    step(k),
                ),
                KillPoint(
                    "after the last automation, before the run's end",
                    "after_event",
                    1,
                    "STEP_SUCCESS",
                    step(AUTOMATIONS - 1),
                ),
                KillPoint("during the closing check", "mongo_started", 1, command="find", collection=LEDGER_COLLECTION),
                KillPoint("during the run's last event writes (before RUN_SUCCESS)", "before_event", 1, "RUN_SUCCESS"),
            ]
        )

    points = required + [random_point() for _ in range(KILL_POINTS - len(required))]
    rng.shuffle(points)
    return points


def test_a_worker_killed_at_twenty_points_is_recovered_completely_each_time(cadence: Cadence) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    for iteration, point in enumerate(kill_points(rng)):
        stamp = FIRST_TICK + timedelta(hours=iteration)
        where = f"seed {SEED}, kill point {iteration} ({point.label})"
        cadence.reset()
        code, output = finish(cadence.worker(stamp, point))
        assert code == -signal.SIGKILL, f"{where}: the worker was not killed (exit {code}):\n{output[-3000:]}"
        (killed,) = cadence.runs(stamp)
        cadence.mark_dead(killed)
        last = killed
        # A quarter of the time the re-execution dies too (a retry whose task is lost): recovery is then from it.
        if rng.random() < 0.25:
            again = KillPoint(
                "the re-execution, after its first update", "mongo_succeeded", 1, command="update", collection="audits"
            )
            finish(cadence.worker(stamp, again, reexecute_from=killed.run_id))
            last = cadence.runs(stamp)[-1]
            cadence.mark_dead(last)
            where += ", then the re-execution killed after its first update"
        last = cadence.instance.get_run_by_id(last.run_id)
        if last.status != DagsterRunStatus.SUCCESS:
            recovered = cadence.reexecute_from_failure(last)
            assert recovered.success, f"{where}: the re-execution failed"
        assert cadence.problems(stamp) == [], where
        final = cadence.runs(stamp)[-1]
        assert final.status == DagsterRunStatus.SUCCESS, where  # the data is complete, and so is the run
    print(f"{KILL_POINTS} kill points (seed {SEED}) recovered in {time.monotonic() - started:.0f} s")


def log_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def summary_line(instance: DagsterInstance, run_id: str) -> str:
    (line,) = [m for m in log_messages(instance, run_id) if m.startswith("Run summary: ")]
    return line.removeprefix("Run summary: ")


def test_a_re_execution_that_leaves_automations_out_ends_red_naming_them(
    cadence: Cadence, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never green while incomplete, whatever plans the re-execution: here Dagster's own plan (the correction taken
    away), which re-runs only the automation that was in progress."""
    stamp = FIRST_TICK
    code, output = finish(
        cadence.worker(stamp, KillPoint("as Auto 05 starts", "after_event", 1, "STEP_START", step(5)))
    )
    assert code == -signal.SIGKILL, output[-3000:]
    (killed,) = cadence.runs(stamp)
    cadence.mark_dead(killed)

    with monkeypatch.context() as dagster_as_shipped:
        dagster_as_shipped.setattr(
            KnownExecutionState, "build_resume_retry_reexecution", staticmethod(dagster_resume_retry_reexecution)
        )
        partial = cadence.reexecute_from_failure(killed)

    assert not partial.success
    ran = {e.step_key for e in partial.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}
    assert ran == {step(5)}
    not_run = ", ".join(repr(name(g)) for g in range(6, 16))
    assert summary_line(cadence.instance, partial.run_id) == (
        f"automations 1 applied, 2 matched, 2 modified, 0 failed, 14 not run ({not_run} and 4 more)"
    )
    (failure,) = cadence.instance.all_logs(partial.run_id, of_type=DagsterEventType.RUN_FAILURE)
    error = failure.get_dagster_event().job_failure_data.error
    assert error.message.startswith(
        f"intervalprocessing_dagster.runs.run_summary.IncompleteRunError: 14 automation(s) loaded for this run's "
        f"stamp did not run: {not_run} and 4 more."
    )
    assert len(error.message) < 400  # bounded, however many automations are missing
    statuses = {r["automation"]: r["status"] for r in cadence.records(stamp)}
    assert [statuses[name(g)] for g in range(20)] == ["succeeded"] * 6 + ["pending"] * 14

    # Recovery from the red re-execution, with the correction back, completes the stamp.
    assert cadence.reexecute_from_failure(cadence.instance.get_run_by_id(partial.run_id)).success
    assert cadence.problems(stamp) == []


def test_re_execute_all_after_a_kill_applies_each_automation_once(cadence: Cadence) -> None:
    """The UI's "Re-execute all": a new loader, every automation's step; the ledger skips those already applied."""
    stamp = FIRST_TICK
    code, _ = finish(
        cadence.worker(stamp, KillPoint("between Auto 07 and Auto 08", "after_event", 1, "STEP_SUCCESS", step(7)))
    )
    assert code == -signal.SIGKILL
    (killed,) = cadence.runs(stamp)
    cadence.mark_dead(killed)

    with execute_job(
        reconstructable(hourly_data_change_job),
        cadence.instance,
        reexecution_options=ReexecutionOptions(parent_run_id=killed.run_id),
    ) as again:
        assert again.success
        started = {e.step_key for e in again.all_events if e.event_type == DagsterEventType.STEP_START}
    assert started == {LOADER, *(step(g) for g in range(AUTOMATIONS))}
    assert summary_line(cadence.instance, again.run_id) == (
        "automations 12 applied, 8 already applied, 24 matched, 24 modified, 0 failed"
    )
    assert any(
        f"automation 'Auto 03' was already applied for stamp {stamp.isoformat()} by run {killed.run_id}" in message
        for message in log_messages(cadence.instance, again.run_id)
    )
    assert cadence.problems(stamp) == []
    records = {r["automation"]: r for r in cadence.records(stamp)}
    assert records[name(3)]["runIds"] == [killed.run_id]  # written by the first run only
    assert records[name(12)]["runIds"] == [killed.run_id, again.run_id]  # loaded by the first, applied by the second


def test_a_run_terminated_mid_cadence_then_re_executed_applies_each_automation_once(cadence: Cadence) -> None:
    """What the UI's Terminate does to a run in production: the run is marked canceling and its task is stopped,
    which sends the worker SIGTERM (ECS StopTask); the worker turns it into Dagster's interrupt."""
    stamp = FIRST_TICK
    # The worker stops itself once the sixth automation has succeeded, so the termination lands there however slow
    # this process is (a free-running worker applies the other 14 in about half a second).
    sixth = KillPoint(f"after {name(5)}", "after_event", 1, "STEP_SUCCESS", step(5), sends=signal.SIGSTOP)
    worker = cadence.worker(stamp, sixth)
    worker.wait_until_stopped()
    (run,) = cadence.runs(stamp)
    cadence.instance.report_run_canceling(run)
    worker.process.terminate()  # SIGTERM, delivered when it continues
    os.kill(worker.process.pid, signal.SIGCONT)
    finish(worker)
    canceled = cadence.instance.get_run_by_id(run.run_id)
    assert canceled.status == DagsterRunStatus.CANCELED
    applied = cadence.db[LEDGER_COLLECTION].count_documents({"stamp": stamp, "status": "succeeded"})
    assert applied < AUTOMATIONS, "the run finished before it was terminated"

    recovered = cadence.reexecute_from_failure(canceled)

    assert recovered.success
    assert cadence.problems(stamp) == []
    # Only what the terminated run had not applied; a step it was interrupted in after applying only says so.
    assert summary_line(cadence.instance, recovered.run_id).startswith(f"automations {AUTOMATIONS - applied} applied, ")


def test_a_mongodb_restart_in_the_middle_of_a_cadence_is_ridden_out(cadence: Cadence, tmp_path: Path) -> None:
    """The server (SecantusDB's daemon) stops part-way and starts again on the same storage and port: the steps
    caught by it retry (``jobs.py``: transient errors), the run ends green, nothing lost or doubled."""
    storage, port = tmp_path / "restarted-mongo", free_port()
    server = start_secantus(storage, port)
    try:
        uri = f"mongodb://127.0.0.1:{port}/"
        client = pymongo.MongoClient(uri, tz_aware=True)
        for collection in ("audits", "dataupdateconfigs"):
            client[DATABASE][collection].insert_many(list(cadence.db[collection].find()))
        cadence.db = client[DATABASE]
        cadence.env["MONGODB_URI"] = uri
        stamp = FIRST_TICK
        worker = cadence.worker(stamp, None)
        cadence.wait_until_applied(worker, stamp, 5)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        time.sleep(2)
        server = start_secantus(storage, port)
        code, output = finish(worker, timeout=300)
        assert code == 0, output[-3000:]
        (run,) = cadence.runs(stamp)
        assert run.status == DagsterRunStatus.SUCCESS
        assert cadence.problems(stamp) == []
        client.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def start_secantus(storage: Path, port: int) -> subprocess.Popen:
    """SecantusDB's server as its own process (as ``mongo/embedded.py`` starts it), answering on ``port``."""
    server = subprocess.Popen(
        secantus_command(port, storage),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=500) as probe:
                probe.admin.command("ping")
            return server
        except pymongo.errors.PyMongoError:
            assert server.poll() is None and time.monotonic() < deadline, "SecantusDB did not start"
            time.sleep(0.2)
