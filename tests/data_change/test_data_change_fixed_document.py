"""A document fixed after its automation failed, then **Re-execute → From failure** in the UI (issue 24, part 3): the
re-execution applies the document as it is now, once, and a document deactivated or deleted meanwhile is withdrawn
from the stamp, saying so, instead of failing again.

What a new user does with the embedded demo: one hourly automation's query loses its closing ``}``, the cadence fails
(the other automation applied), the document is fixed, and the failed run is re-executed from failure. Every run is
launched as the UI launches it (GraphQL through the local instance's run queue and launcher, the code location in
its own server process, as in ``tests/reports/test_report_recovery.py``); the run-failure alert sensor is evaluated
tick by tick against moto SNS, as the daemon does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pymongo
import pytest
from dagster import DagsterEventType, DagsterRun, DagsterRunStatus
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION

from intervalprocessing_dagster.data_change.journal import JOURNAL_COLLECTION
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION, StampKey
from intervalprocessing_dagster.data_change.rules import config_hash
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.oncall.resources import SnsAlertChannel
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from tests.local_project import new_project, served_code_location, user_env
from tests.oncall.test_alerting import Daemon, received
from tests.reports.test_report_recovery import LocalProject

pytestmark = pytest.mark.recovery

DATABASE = "test_fixed_document"
JOB = "hourly_data_change_job"
ESCALATE = "Escalate Pending Review Audits"  # the demo's hourly automation on audits, broken here
NOTE = "Note Overdue Record Requests"  # the demo's other hourly automation, which applies whatever happens to ESCALATE
ESCALATE_STEP = "apply_automation[escalate_pending_review_audits]"
NOTE_STEP = "apply_automation[note_overdue_record_requests]"
ESCALATION_NOTE = "Escalated: high-value audit pending review"
STAMP = datetime.fromisoformat("2026-03-06T10:00:00+00:00")


@pytest.fixture(scope="module")
def project(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProject]:
    """A user's project folder with the code location as ``dagster dev`` serves it, on its own database."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    db = client[DATABASE]
    folder = new_project(tmp_path_factory.mktemp("fixed-document") / "project")
    with served_code_location(folder, user_env(mongo_uri, DATABASE)) as context:
        yield LocalProject(folder, db, context)
    client.drop_database(DATABASE)
    client.close()


@pytest.fixture()
def demo(project: LocalProject) -> LocalProject:
    """The demo data, fresh for each test."""
    project.db.client.drop_database(DATABASE)
    seed_demo_data(project.db)
    return project


def launch_hourly(project: LocalProject, stamp: datetime) -> DagsterRun:
    """The Launchpad's Launch run of the hourly cadence, stamped ``stamp`` as its schedule tick would: to its end."""
    data = project.graphql(
        LAUNCH_PIPELINE_EXECUTION_MUTATION,
        executionParams={
            "selector": {
                "repositoryLocationName": "intervalprocessing",
                "repositoryName": "__repository__",
                "jobName": JOB,
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": RUN_STAMP_TAG, "value": stamp.isoformat()}]},
        },
    )
    launched = data["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(project.context))  # the run queue launches it
    return project.wait(launched["run"]["runId"])


def messages(project: LocalProject, run_id: str) -> list[str]:
    return [entry.user_message for entry in project.instance.all_logs(run_id)]


def summary(project: LocalProject, run_id: str) -> str:
    (line,) = [m for m in messages(project, run_id) if m.startswith("Run summary: ")]
    return line.removeprefix("Run summary: ")


def record(project: LocalProject, stamp: datetime, config_id: object) -> dict:
    found = project.db[LEDGER_COLLECTION].find_one({"_id": StampKey("Hourly", stamp, False).record_id(config_id)})
    assert found is not None
    return found


def escalated(project: LocalProject) -> list[dict]:
    """The audits the escalation changed: priority High, with its note."""
    return list(project.db.audits.find({"priority": "High", "notes.text": ESCALATION_NOTE}))


def fails_on_a_missing_brace(project: LocalProject, stamp: datetime) -> tuple[DagsterRun, dict]:
    """The escalation's query without its closing ``}``, one cadence run: it fails on that automation only, with the
    parse error; ``(the failed run, the document as it was before it was broken)``."""
    good = project.db.dataupdateconfigs.find_one({"name": ESCALATE})
    project.db.dataupdateconfigs.update_one({"_id": good["_id"]}, {"$set": {"query": good["query"].rstrip()[:-1]}})
    failed = launch_hourly(project, stamp)
    assert failed.status == DagsterRunStatus.FAILURE
    assert project.steps(failed.run_id, DagsterEventType.STEP_FAILURE) == {ESCALATE_STEP}
    assert project.steps(failed.run_id, DagsterEventType.STEP_SUCCESS) >= {NOTE_STEP}
    ledger = record(project, stamp, good["_id"])
    assert ledger["status"] == "failed"
    assert "- query: " in ledger["error"] and "expected ',' or '}' to close the document" in ledger["error"]
    assert escalated(project) == []
    return failed, good


def test_from_failure_after_a_fix_applies_the_document_as_it_is_now_once(
    demo: LocalProject,
    topic: tuple[str, str],  # noqa: F811 - the fixture imported above
) -> None:
    project = demo
    topic_arn, queue_url = topic
    # The run is launched from the Launchpad, a person's: ALERT_ON_HAND_LAUNCHED_RUNS=on alerts it as a schedule's.
    daemon = Daemon(project.instance, SnsAlertChannel(topic_arn=topic_arn, hand_launched_runs=True))
    daemon.tick()  # the sensor's first tick only sets its cursor
    failed, good = fails_on_a_missing_brace(project, STAMP)
    broken = project.db.dataupdateconfigs.find_one({"_id": good["_id"]})
    daemon.tick()
    (alert,) = received(queue_url)
    assert f"- automation {ESCALATE!r} (step {ESCALATE_STEP}):" in alert["Message"]
    assert "Re-execute → From failure" in alert["Message"]  # what to do, and it works (below)

    project.db.dataupdateconfigs.replace_one({"_id": good["_id"]}, good)  # the fix: the query as it was
    fixed = project.db.dataupdateconfigs.find_one({"_id": good["_id"]})
    recovery = project.reexecute(failed, "FROM_FAILURE")

    assert recovery.status == DagsterRunStatus.SUCCESS
    assert project.steps(recovery.run_id, DagsterEventType.STEP_START) == {ESCALATE_STEP}
    assert summary(project, recovery.run_id) == "automations 1 applied, 2 matched, 2 modified, 0 failed"
    assert [len([n for n in audit["notes"] if n["text"] == ESCALATION_NOTE]) for audit in escalated(project)] == [1, 1]
    ledger = record(project, STAMP, good["_id"])
    assert ledger["status"] == "succeeded"
    assert ledger["runIds"] == [failed.run_id, recovery.run_id]
    assert config_hash(broken) != config_hash(fixed)
    assert (ledger["configHash"], ledger["config"]) == (config_hash(fixed), fixed)  # the version that ran
    pages = list(project.db[JOURNAL_COLLECTION].find({"automation": ESCALATE}))
    assert pages and {(page["runId"], page["configHash"]) for page in pages} == {(recovery.run_id, config_hash(fixed))}
    daemon.tick()
    assert received(queue_url) == []  # no second alert

    # Exactly once for the stamp: "Re-execute all" loads both documents again and applies neither a second time.
    again = project.reexecute(failed, "ALL_STEPS")
    assert again.status == DagsterRunStatus.SUCCESS
    assert summary(project, again.run_id) == "automations 0 applied, 2 already applied, 0 matched, 0 modified, 0 failed"
    assert any(
        f"automation {ESCALATE!r} was already applied for stamp {STAMP.isoformat()} by run {recovery.run_id}" in message
        for message in messages(project, again.run_id)
    )
    assert [len([n for n in audit["notes"] if n["text"] == ESCALATION_NOTE]) for audit in escalated(project)] == [1, 1]


@pytest.mark.parametrize("withdraw", ["deactivated", "deleted", "moved"])
def test_from_failure_after_the_document_was_withdrawn_says_so_and_completes_the_stamp(
    demo: LocalProject, withdraw: str
) -> None:
    project = demo
    stamp = STAMP + timedelta(hours=1)
    failed, good = fails_on_a_missing_brace(project, stamp)
    broken = project.db.dataupdateconfigs.find_one({"_id": good["_id"]})
    if withdraw == "deactivated":
        project.db.dataupdateconfigs.update_one({"_id": good["_id"]}, {"$set": {"isActive": False}})
    elif withdraw == "deleted":
        project.db.dataupdateconfigs.delete_one({"_id": good["_id"]})
    else:  # to another cadence
        project.db.dataupdateconfigs.update_one({"_id": good["_id"]}, {"$set": {"runCadence": "Nightly"}})

    recovery = project.reexecute(failed, "FROM_FAILURE")

    assert recovery.status == DagsterRunStatus.SUCCESS  # not red for ever: the stamp is complete without it
    assert project.steps(recovery.run_id, DagsterEventType.STEP_START) == {ESCALATE_STEP}
    assert summary(project, recovery.run_id) == "automations 0 applied, 1 withdrawn, 0 matched, 0 modified, 0 failed"
    why = {
        "deactivated": "its document was deactivated (isActive: false) after it was loaded for this stamp",
        "deleted": "its document was deleted from dataupdateconfigs after it was loaded for this stamp",
        "moved": "its document's runCadence is now 'Nightly', no longer 'Hourly', since it was loaded for this stamp",
    }[withdraw]
    assert any(
        message.startswith(
            f"automation {ESCALATE!r} is withdrawn from stamp {stamp.isoformat()}: {why}; nothing applied"
        )
        for message in messages(project, recovery.run_id)
    )
    (output,) = [
        e.dagster_event.event_specific_data.metadata
        for e in project.instance.all_logs(recovery.run_id, of_type=DagsterEventType.STEP_OUTPUT)
    ]
    assert output["withdrawn"].value == why
    assert output["modified"].value == 0
    ledger = record(project, stamp, good["_id"])
    assert (ledger["status"], ledger["reason"]) == ("withdrawn", why)
    assert ledger["runIds"] == [failed.run_id, recovery.run_id]
    # The version that withdrew it; a deleted document's last version loaded.
    now = project.db.dataupdateconfigs.find_one({"_id": good["_id"]})
    assert ledger["configHash"] == config_hash(broken if withdraw == "deleted" else now)
    assert escalated(project) == []
    assert project.db[JOURNAL_COLLECTION].count_documents({"automation": ESCALATE}) == 0
