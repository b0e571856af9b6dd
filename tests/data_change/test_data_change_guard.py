"""The blast-radius guard in the cadence jobs (Dagster in-process, SecantusDB): an automation over its limit writes
nothing and fails saying the count, the limit and how to raise it, the alert quotes that, and the others still run.
"""

from __future__ import annotations

from typing import Any

from dagster import DagsterRunStatus, instance_for_test
from pymongo.database import Database

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS
from intervalprocessing_dagster.data_change.journal import JOURNAL_COLLECTION
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.oncall.resources import SnsAlertChannel
from intervalprocessing_dagster.runs.clock import RunClock, run_stamp_tags
from tests.data_change.test_data_change_jobs import TICK, automation, failures, outputs
from tests.oncall.test_alerting import RETRIES, Daemon, received

CLOSE = [{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}]


def run_hourly(mongo: MongoResource, guard: AutomationGuard, **options: Any) -> Any:
    return DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
        resources={"mongo": mongo, "clock": RunClock(), "guard": guard},
        tags=run_stamp_tags(TICK),
        raise_on_error=False,
        **options,
    )


def test_an_automation_over_its_limit_writes_nothing_and_fails_saying_how_to_raise_it(
    mongo: MongoResource, mongo_db: Database
) -> None:
    mongo_db.audits.insert_many([{"status": "Open", "notes": []} for _ in range(5)])
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation(
                "Close Everything", maxDocuments=3, singleFieldUpdateElements=CLOSE, arrayObjectFieldUpdateElements=[]
            ),
            automation("Note Them"),
        ]
    )
    result = run_hourly(mongo, AutomationGuard())

    assert not result.success
    assert failures(result) == {
        "apply_automation[close_everything]": (
            "automation 'Close Everything' failed: it matches 5 documents of audits, more than its limit of 3 set by "
            "maxDocuments on its dataupdateconfigs document; nothing was written. If that many is intended, set "
            "maxDocuments: 5 (or more) on its dataupdateconfigs document and run it again"
        )
    }
    assert mongo_db.audits.count_documents({"status": "Open"}) == 5  # nothing written
    assert mongo_db[JOURNAL_COLLECTION].distinct("automation") == ["Note Them"]  # nothing journaled for it
    assert mongo_db.audits.count_documents({"notes.text": "Note Them"}) == 5  # the other automation ran
    assert outputs(result)["note_them"]["modified"].value == 5
    record = mongo_db[LEDGER_COLLECTION].find_one({"automation": "Close Everything"})
    assert record["status"] == "failed" and "more than its limit of 3" in record["error"]


def test_the_platform_default_is_a_percentage_and_an_automations_own_limit_replaces_it(
    mongo: MongoResource, mongo_db: Database
) -> None:
    mongo_db.audits.insert_many([{"status": "Open" if n < 5 else "Closed"} for n in range(10)])
    pipeline = "aggregate([{$match:{status:'Open'}},{$limit:1000}])"  # counted by the pipeline itself
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("A Default Limited", singleFieldUpdateElements=CLOSE, arrayObjectFieldUpdateElements=[]),
            automation(
                "B Default Limited Pipeline",
                query=pipeline,
                singleFieldUpdateElements=CLOSE,
                arrayObjectFieldUpdateElements=[],
            ),
            automation(
                "C Allowed More",
                maxDocuments="5",
                singleFieldUpdateElements=[{"elementName": "checked", "updateType": "Add", "elementValue": True}],
                arrayObjectFieldUpdateElements=[],
            ),
        ]
    )
    result = run_hourly(mongo, AutomationGuard(max_percent=20))  # 20% of 10 documents: 2

    failed = failures(result)
    assert set(failed) == {"apply_automation[a_default_limited]", "apply_automation[b_default_limited_pipeline]"}
    assert (
        "it matches 5 documents of audits, more than its limit of 2 (20% of the collection) set by the platform "
        "default AUTOMATION_MAX_DOCUMENTS=20%" in failed["apply_automation[a_default_limited]"]
    )
    assert mongo_db.audits.count_documents({"status": "Closed"}) == 5
    assert mongo_db.audits.count_documents({"checked": True}) == 5
    assert outputs(result)["c_allowed_more"]["max_documents"].value == 5


def test_a_dry_run_over_the_limit_fails_the_same_way_and_writes_nothing(
    mongo: MongoResource, mongo_db: Database
) -> None:
    mongo_db.audits.insert_many([{"status": "Open"} for _ in range(3)])
    mongo_db.dataupdateconfigs.insert_one(
        automation("Too Wide", singleFieldUpdateElements=CLOSE, arrayObjectFieldUpdateElements=[])
    )
    result = run_hourly(
        mongo, AutomationGuard(max_documents=2), run_config={"ops": {"apply_automation": {"config": {"dry_run": True}}}}
    )
    assert "more than its limit of 2" in failures(result)["apply_automation[too_wide]"]
    assert mongo_db.audits.count_documents({"status": "Open"}) == 3


def test_the_failure_alert_quotes_the_limit(topic: tuple[str, str], mongo: MongoResource, mongo_db: Database) -> None:
    topic_arn, queue_url = topic
    mongo_db.audits.insert_many([{"status": "Open"} for _ in range(4)])
    mongo_db.dataupdateconfigs.insert_one(
        automation("Typo In Query", maxDocuments=1, singleFieldUpdateElements=CLOSE, arrayObjectFieldUpdateElements=[])
    )
    with instance_for_test(overrides=RETRIES) as instance:
        # The run is a person's (no schedule tag): ALERT_ON_HAND_LAUNCHED_RUNS=on alerts it as the schedule's would be.
        daemon = Daemon(instance, SnsAlertChannel(topic_arn=topic_arn, hand_launched_runs=True))
        daemon.tick()
        result = run_hourly(mongo, AutomationGuard(), instance=instance)
        assert instance.get_run_by_id(result.run_id).status == DagsterRunStatus.FAILURE
        daemon.tick()
    (message,) = received(queue_url)
    assert (
        "- automation 'Typo In Query' (step apply_automation[typo_in_query]):\n"
        "    automation 'Typo In Query' failed: it matches 4 documents of audits, more than its limit of 1 set by "
        "maxDocuments on its dataupdateconfigs document; nothing was written. If that many is intended, set "
        "maxDocuments: 4 (or more) on its dataupdateconfigs document and run it again"
    ) in message["Message"]
