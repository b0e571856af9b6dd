"""File generation killed mid-report, then recovered the ways a local user can: the UI's "Re-execute from failure"
and "Re-execute all", and the next day's run.

Every run here is launched the way the UI's Launchpad and the schedules launch it (GraphQL through the local
instance's run queue and launcher, the code location in its own server process), because only such a run can be
re-executed: one started by ``dagster job execute`` has no code-location origin, and the UI's Re-execute refuses it
(``CheckError: Expected non-None value``). The run worker and its step processes are killed with SIGKILL while
``DailyAuditInventory`` is being written (20,000 audits make that take about a second), never after it: the
code location's MongoDB calls go through ``tests/pacing.py``'s proxy, held while the test looks for the report's
partial file, so the worker cannot finish the report however slow the test process is. Locally the code server
that started the run process notices it died and fails the run (within half a second, ``_check_for_orphaned_runs``
in ``dagster/_grpc/server.py``); then the user re-executes it. (Clicking Terminate inside that half second is what
not to do: Dagster 1.13's ``CancelExecution`` sets the run's multiprocessing Event while holding the server's
execution lock, and ``Event.set`` waits for the killed process to acknowledge, forever, so the code server stops
launching runs until it is reloaded.)

The job runs its steps in the run worker's own process (docs/decisions/small-jobs-in-process.md), so the kill takes
the report being written and every step after it, as an out-of-memory kill of the task does; with a process per
step (before) the same kill took the worker and its step processes at once. One killed run serves two recovery
paths, and the code location's server starts once. The production path (the daemon's run retry after run
monitoring fails the dead ECS task) is in tests/deploy/test_deploy_missed_ticks.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pymongo
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION, LAUNCH_PIPELINE_REEXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.reports.delivery import GENERATED_FILES_COLLECTION, PARTIAL_SUFFIX
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from tests.local_project import new_project, served_code_location, user_env
from tests.pacing import Pacing

DATABASE = "test_report_recovery"
AUDITS = 20_000
DAILY = ("DailyAuditInventory", "DailyActiveMRRInventory")  # what a Thursday is due (no weekly reports)
THURSDAY = datetime.fromisoformat("2024-03-14T03:00:00+00:00")
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
# The job's report assets without its checks (the Launchpad's "materialize selected"): half the steps, so half the
# time; a check step is re-planned like a report step.
REPORTS = [
    {"path": [name]}
    for name in (
        "daily_audit_inventory",
        "daily_active_mrr_inventory",
        "weekly_audit_inventory",
        "weekly_mrr_inventory",
        "configured_reports",
    )
]


@dataclass
class LocalProject:
    """A user's project folder: its instance, its reports folder, the code location as ``dagster dev`` loads it."""

    folder: Path
    db: Database
    context: WorkspaceProcessContext

    @property
    def instance(self) -> DagsterInstance:
        return self.context.instance

    @property
    def reports(self) -> Path:
        return self.folder / ".intervalprocessing" / "reports"

    def launch(self, stamp: datetime) -> str:
        """The Launchpad's Launch run (the job's reports, stamped ``stamp`` as its schedule tick would): the run
        queue starts it through the instance's launcher; its run id."""
        data = self.graphql(
            LAUNCH_PIPELINE_EXECUTION_MUTATION,
            executionParams={
                "selector": {
                    "repositoryLocationName": "intervalprocessing",
                    "repositoryName": "__repository__",
                    "jobName": "file_generation_job",
                    "assetSelection": REPORTS,
                    "assetCheckSelection": [],
                },
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": RUN_STAMP_TAG, "value": stamp.isoformat()}]},
            },
        )
        return self._dequeued(data["launchPipelineExecution"])

    def reexecute(self, run: DagsterRun, strategy: str) -> DagsterRun:
        """The UI's Re-execute button: the new run is queued, the run queue launches it, it runs to its end."""
        data = self.graphql(
            LAUNCH_PIPELINE_REEXECUTION_MUTATION, reexecutionParams={"parentRunId": run.run_id, "strategy": strategy}
        )
        return self.wait(self._dequeued(data["launchPipelineReexecution"]))

    def _dequeued(self, launched: dict) -> str:
        assert launched["__typename"] == "LaunchRunSuccess", launched
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(self.context))
        return launched["run"]["runId"]

    def wait(self, run_id: str) -> DagsterRun:
        deadline = time.monotonic() + 240
        while (run := self.instance.get_run_by_id(run_id)).status not in FINISHED:
            assert time.monotonic() < deadline, f"run {run_id} still {run.status}"
            time.sleep(0.5)
        return run

    def graphql(self, query: str, **variables: object) -> dict:
        result = execute_dagster_graphql(self.context.create_request_context(), query, variables=variables)
        assert not result.errors, result.errors
        return result.data

    def steps(self, run_id: str, event_type: DagsterEventType) -> set[str]:
        """The steps of ``run_id`` that logged ``event_type``."""
        return {e.step_key for e in self.instance.all_logs(run_id, of_type=event_type)}

    def assert_written_whole(self, stamp: datetime, bases: tuple[str, ...]) -> None:
        """Each report of ``stamp`` whole (its bytes are what its record's hash and row count describe), with one
        ``generatedfiles`` record, and no temporary file left in the folder."""
        assert not list(self.reports.glob(f".*{PARTIAL_SUFFIX}"))
        names = {f"{base}_{stamp:%m%d%Y_%H%M%S}.txt" for base in bases}
        assert {p.name for p in self.reports.iterdir() if p.name.endswith(f"_{stamp:%m%d%Y_%H%M%S}.txt")} == names
        for name in names:
            path = self.reports / name
            records = list(self.db[GENERATED_FILES_COLLECTION].find({"location": str(path)}))
            assert len(records) == 1, records
            content = path.read_bytes()
            assert hashlib.sha256(content).hexdigest() == records[0]["sha256"]
            assert content.count(b"\n") == records[0]["rows"] + 1  # the header line and every row, whole
        audit_rows = (self.reports / f"DailyAuditInventory_{stamp:%m%d%Y_%H%M%S}.txt").read_bytes().count(b"\n")
        assert audit_rows > AUDITS


@dataclass
class KillableProject(LocalProject):
    """A :class:`LocalProject` whose code location reaches MongoDB through ``pacing``'s proxies, so a run can be
    killed at a point of its own."""

    pacing: Pacing

    def kill_while_writing(self, stamp: datetime) -> DagsterRun:
        """A run stamped ``stamp`` whose worker is killed (SIGKILL, with its step processes) once
        ``DailyAuditInventory`` is being written; the dead run, once the code server has failed it."""
        self.pacing.hold()
        run_id = self.launch(stamp)
        target = f"DailyAuditInventory_{stamp:%m%d%Y_%H%M%S}.txt"

        def writing(_: str) -> bool:
            return bool(list(self.reports.glob(f".{target}.*{PARTIAL_SUFFIX}")))

        deadline = time.monotonic() + 180
        while not self.pacing.ask(writing):
            assert self.instance.get_run_by_id(run_id).status not in FINISHED, "the run ended before the report"
            assert time.monotonic() < deadline, "the report was never being written"
            time.sleep(0.01)
        (start,) = self.instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
        _kill_process_tree(start.dagster_event.pid)
        self.pacing.release()
        assert not (self.reports / target).exists()  # never a partial file under the report's name
        run = self.wait(run_id)  # the code server fails the run whose process it lost
        assert run.status == DagsterRunStatus.FAILURE
        crash = [e.message for e in self.instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)]
        assert any("was terminated by signal 9 (SIGKILL)" in message for message in crash), crash
        return run


@pytest.fixture(scope="module")
def project(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillableProject]:
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    client.drop_database(DATABASE)
    db = client[DATABASE]
    seed_demo_data(db)
    pending = db.audits.find_one({"status": "Pending Review"}, {"_id": 0})
    db.audits.insert_many([{**pending, "auditId": 200_000 + n} for n in range(AUDITS)])
    folder = new_project(tmp_path_factory.mktemp("recovery") / "project")
    with Pacing() as pacing, served_code_location(folder, pacing.environment(user_env(mongo_uri, DATABASE))) as context:
        yield KillableProject(folder, db, context, pacing)
    client.drop_database(DATABASE)
    client.close()


def test_a_killed_report_after_the_next_days_run_and_a_re_execution_from_failure(project: KillableProject) -> None:
    """The next day's run writes its own files whole (it does not write the killed run's: they are named for
    another day) and removes the killed writer's leftover; "Re-execute from failure" on the killed run, as on call
    would the next morning, then writes the killed run's files whole."""
    killed = project.kill_while_writing(THURSDAY)
    finished = project.steps(killed.run_id, DagsterEventType.STEP_SUCCESS)
    assert list(project.reports.glob(f".*{PARTIAL_SUFFIX}"))

    next_day = project.wait(project.launch(THURSDAY + timedelta(weeks=1)))

    assert next_day.status == DagsterRunStatus.SUCCESS
    project.assert_written_whole(THURSDAY + timedelta(weeks=1), DAILY)
    assert not (project.reports / f"DailyAuditInventory_{THURSDAY:%m%d%Y_%H%M%S}.txt").exists()

    recovery = project.reexecute(killed, "FROM_FAILURE")

    assert recovery.status == DagsterRunStatus.SUCCESS
    assert recovery.tags[RUN_STAMP_TAG] == THURSDAY.isoformat()  # the killed run's files, not new ones
    project.assert_written_whole(THURSDAY, DAILY)
    rerun = project.steps(recovery.run_id, DagsterEventType.STEP_START)
    # Reports are plain steps: Dagster re-plans the one cut off and those never started, and nothing that finished.
    assert "daily_audit_inventory" in rerun and not rerun & finished


def test_a_killed_report_after_re_execute_all(project: KillableProject) -> None:
    stamp = THURSDAY + timedelta(weeks=2)
    killed = project.kill_while_writing(stamp)

    recovery = project.reexecute(killed, "ALL_STEPS")

    assert recovery.status == DagsterRunStatus.SUCCESS and recovery.tags[RUN_STAMP_TAG] == stamp.isoformat()
    project.assert_written_whole(stamp, DAILY)
    assert project.steps(killed.run_id, DagsterEventType.STEP_START) <= project.steps(
        recovery.run_id, DagsterEventType.STEP_START
    )


def _kill_process_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process under it (the run worker and its step processes), children first listed
    before any can exit: what an out-of-memory kill or a stopped container does to all of them at once."""
    tree, pending = [], [pid]
    while pending:
        parent = pending.pop()
        tree.append(parent)
        listing = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True)
        pending.extend(int(child) for child in listing.stdout.split())
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
