"""The cadence jobs executed for real (Dagster in-process, SecantusDB): steps per automation, isolation, retries,
idempotency, dry run, run records, and the demo data set.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    FloatMetadataValue,
    IntMetadataValue,
)
from pymongo.database import Database
from pymongo.errors import OperationFailure

from intervalprocessing_dagster.data_change import jobs
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.history import automations_of, history_path
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS, mapping_keys
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION, StampKey
from intervalprocessing_dagster.data_change.rules import config_hash
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.runs.clock import RunClock, run_stamp_tags

TICK = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)
ASSET_EVENTS = (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION)


def automation(name: str, cadence: str = "Hourly", **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": name,
        "query": "{ status: 'Open' }",
        "collectionName": "audits",
        "isActive": True,
        "runCadence": cadence,
        "singleFieldUpdateElements": [],
        "arrayObjectFieldUpdateElements": [
            {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": name}
        ],
    }
    document.update(overrides)
    return document


def job_resources(mongo: MongoResource) -> dict[str, Any]:
    """The resources a data-change job asks for, pointed at the test's database."""
    return {"mongo": mongo, "clock": RunClock(), "guard": AutomationGuard()}


def run_job(
    cadence: Cadence, mongo: MongoResource, *, tick: datetime | None = TICK, run_config: dict[str, Any] | None = None
) -> ExecuteInProcessResult:
    return DATA_CHANGE_JOBS[cadence].execute_in_process(
        resources=job_resources(mongo),
        run_config=run_config,
        tags=run_stamp_tags(tick) if tick else None,
        raise_on_error=False,
    )


def outputs(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Output metadata of each automation step, by mapping key."""
    found = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_OUTPUT and event.step_key.startswith("apply_automation["):
            found[event.step_key[len("apply_automation[") : -1]] = event.event_specific_data.metadata
    return found


def failures(result: ExecuteInProcessResult) -> dict[str, str]:
    """Failure description of each failed step, by step key."""
    return {
        event.step_key: event.event_specific_data.user_failure_data.description
        for event in result.all_events
        if event.event_type == DagsterEventType.STEP_FAILURE
    }


def test_each_automation_is_its_own_step_with_numeric_metadata(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_many([{"status": "Open", "notes": []}, {"status": "Open"}, {"status": "Closed"}])
    mongo_db.dataupdateconfigs.insert_many([automation("First Note"), automation("Second: Note!")])
    result = run_job(Cadence.HOURLY, mongo)
    assert result.success
    metadata = outputs(result)
    assert set(metadata) == {"first_note", "second_note"}
    assert isinstance(metadata["first_note"]["matched"], IntMetadataValue)
    assert (metadata["first_note"]["matched"].value, metadata["first_note"]["modified"].value) == (2, 2)
    assert isinstance(metadata["first_note"]["duration_seconds"], FloatMetadataValue)
    assert result.dagster_run.tags["intervalprocessing/cadence"] == "hourly"
    assert int(result.dagster_run.tags["dagster/max_runtime"]) < 3600


def test_only_the_jobs_cadence_runs(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_one({"status": "Open"})
    mongo_db.dataupdateconfigs.insert_many([automation("Hourly One"), automation("Nightly One", "Nightly")])
    assert set(outputs(run_job(Cadence.NIGHTLY, mongo))) == {"nightly_one"}
    assert [n["text"] for n in mongo_db.audits.find_one()["notes"]] == ["Nightly One"]


def test_a_misspelt_cadence_is_warned_about_not_silently_ignored(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.dataupdateconfigs.insert_many([automation("Typo", "hourly"), automation("Fine")])
    with DagsterInstance.ephemeral() as instance:
        result = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources=job_resources(mongo),
            instance=instance,
            tags=run_stamp_tags(TICK),
        )
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert set(outputs(result)) == {"fine"}
    assert any("runCadence is not one of" in m and "'Typo' has 'hourly'" in m for m in messages)


def test_the_loader_observes_what_it_read_of_the_configuration(mongo: MongoResource, mongo_db: Database) -> None:
    """The UI's card of dataupdateconfigs shows when a run last read it and what it found there."""
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("First Note"),
            automation("Off", isActive=False),
            automation("Nightly Note", cadence="Nightly"),
        ]
    )
    result = run_job(Cadence.HOURLY, mongo)
    [observation] = [
        event.asset_observation_data.asset_observation
        for event in result.all_events
        if event.event_type == DagsterEventType.ASSET_OBSERVATION
        and event.asset_key.to_user_string() == "dataupdateconfigs"
    ]
    metadata = {name: value.value for name, value in observation.metadata.items()}
    # Every automation of every cadence, each linked to its own history (its partition of the collection it changes).
    assert metadata == {
        "cadence": "Hourly",
        "automations": 2,
        "active": 1,
        "history of First Note": f"[First Note]({history_path('audits', 'First Note')}) (Hourly, audits)",
        "history of Nightly Note": f"[Nightly Note]({history_path('audits', 'Nightly Note')}) (Nightly, audits)",
        "history of Off": f"[Off]({history_path('audits', 'Off')}) (Hourly, audits, inactive)",
    }


def asset_events(result: ExecuteInProcessResult) -> dict[str, list[tuple[str, str, str, dict[str, Any]]]]:
    """Each automation step's asset events, by mapping key: (event type, asset, partition, metadata)."""
    found: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
    for event in result.all_events:
        if event.event_type in ASSET_EVENTS and event.step_key.startswith("apply_automation["):
            data = event.event_specific_data
            asset_event = data.materialization if event.is_step_materialization else data.asset_observation
            found.setdefault(event.step_key[len("apply_automation[") : -1], []).append(
                (
                    event.event_type.value,
                    asset_event.asset_key.to_user_string(),
                    asset_event.partition,
                    {name: value.value for name, value in asset_event.metadata.items()},
                )
            )
    return found


def test_each_automation_step_records_one_event_on_its_own_partition_of_its_collection(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """One automation's history in the UI: the loader adds each automation as a partition of its collection; an
    applied one materializes its partition (matched, modified, the document's version), a failed one observes it
    with the error, a dry run records nothing there. One event per step, as before partitions."""
    mongo_db.audits.insert_many([{"status": "Open", "notes": []}, {"status": "Open"}, {"status": "Closed"}])
    mongo_db.medicalrecordrequests.insert_one({"status": "Open"})
    documents = [
        automation("First Note"),
        automation("Requests Note", collectionName="medicalrecordrequests"),
        automation("Broken", singleFieldUpdateElements=[{"elementName": "x", "updateType": "Modify"}]),
    ]
    mongo_db.dataupdateconfigs.insert_many(documents)
    by_name = {document["name"]: document for document in documents}

    with DagsterInstance.ephemeral() as instance:
        result = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources=job_resources(mongo),
            instance=instance,
            tags=run_stamp_tags(TICK),
            raise_on_error=False,
        )
        assert instance.get_dynamic_partitions(automations_of("audits").name) == ["Broken", "First Note"]
        assert instance.get_dynamic_partitions(automations_of("medicalrecordrequests").name) == ["Requests Note"]
        [record] = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("audits"), asset_partitions=["First Note"]), limit=10
        ).records
        assert record.run_id == result.run_id
        dry = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources=job_resources(mongo),
            instance=instance,
            tags=run_stamp_tags(TICK),
            raise_on_error=False,
            run_config={"ops": {"apply_automation": {"config": {"dry_run": True}}}},
        )

    def version(name: str) -> dict[str, str]:
        return {
            "config_id": str(by_name[name]["_id"]),
            "config_hash": config_hash(by_name[name]),
            "stamp": TICK.isoformat(),
        }

    events = asset_events(result)
    assert events["first_note"] == [
        ("ASSET_MATERIALIZATION", "audits", "First Note", {"matched": 2, "modified": 2, **version("First Note")}),
    ]
    assert events["requests_note"] == [
        (
            "ASSET_MATERIALIZATION",
            "medicalrecordrequests",
            "Requests Note",
            {"matched": 1, "modified": 1, **version("Requests Note")},
        )
    ]
    [(kind, asset, partition, metadata)] = events["broken"]
    assert (kind, asset, partition) == ("ASSET_OBSERVATION", "audits", "Broken")
    assert metadata.pop("failed").startswith("automation 'Broken' in dataupdateconfigs is invalid (1 problem)")
    assert metadata == version("Broken")
    assert set(outputs(dry)) == {"first_note", "requests_note"} and asset_events(dry) == {}


class EditedOnceLoaded(MongoResource):
    """The platform's resource, with the test's automation document edited just after the loader read it (its second
    ``database()`` call is the first step's), as a person fixing a document between a run's loader and its step."""

    def database(self) -> Database:
        database = super().database()
        EDITS_AFTER_LOADING["calls"] += 1
        if EDITS_AFTER_LOADING["calls"] == 2:
            database.dataupdateconfigs.update_one({}, {"$set": {"comment": "edited after loading"}})
        return database


EDITS_AFTER_LOADING = {"calls": 0}


def test_a_failure_is_recorded_with_the_version_of_the_document_the_step_applied(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """The step reads its document again (the loader's copy may be older, as in a re-execution from failure), and the
    failure on the automation's partition names that version."""
    mongo_db.dataupdateconfigs.insert_one(
        automation("Broken", singleFieldUpdateElements=[{"elementName": "x", "updateType": "Modify"}])
    )
    loaded = mongo_db.dataupdateconfigs.find_one()
    EDITS_AFTER_LOADING["calls"] = 0
    edited_mongo = EditedOnceLoaded(uri=mongo.uri, database_name=mongo.database_name)
    result = run_job(Cadence.HOURLY, edited_mongo)
    edited = mongo_db.dataupdateconfigs.find_one()
    assert edited["comment"] == "edited after loading" and config_hash(edited) != config_hash(loaded)
    [(kind, asset, partition, metadata)] = asset_events(result)["broken"]
    assert (kind, asset, partition, metadata["config_hash"]) == (
        "ASSET_OBSERVATION",
        "audits",
        "Broken",
        config_hash(edited),
    )


def test_inactive_automations_do_not_run(mongo: MongoResource, mongo_db: Database) -> None:
    """Spec §5.3: the old code ignored isActive."""
    mongo_db.audits.insert_one({"status": "Open"})
    mongo_db.dataupdateconfigs.insert_many([automation("Active"), automation("Retired", isActive=False)])
    result = run_job(Cadence.HOURLY, mongo)
    assert result.success and set(outputs(result)) == {"active"}
    assert [n["text"] for n in mongo_db.audits.find_one()["notes"]] == ["Active"]
    assert mongo_db[LEDGER_COLLECTION].distinct("automation") == ["Active"]


def test_one_broken_automation_does_not_stop_the_others(mongo: MongoResource, mongo_db: Database) -> None:
    """Spec §5.6: the first exception ended the whole cadence."""
    mongo_db.audits.insert_many([{"_id": 1, "status": "Open", "notes": []}, {"_id": 2, "status": "Open", "tags": "x"}])
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("A Good One"),
            automation(
                "B Invalid",
                singleFieldUpdateElements=[{"elementName": "x", "updateType": "Modify"}],
                arrayObjectFieldUpdateElements=None,
            ),
            automation(
                "C Refused By The Server",
                query="{ _id: 2 }",
                arrayObjectFieldUpdateElements=[
                    {"arrayProperty": "tags", "matchingPropertyName": "t", "updateType": "Add", "newValue": "y"}
                ],
            ),
            automation("D Good Too"),
        ]
    )
    result = run_job(Cadence.HOURLY, mongo)
    assert not result.success
    assert set(outputs(result)) == {"a_good_one", "d_good_too"}
    assert [n["text"] for n in mongo_db.audits.find_one({"_id": 1})["notes"]] == ["A Good One", "D Good Too"]
    failed = failures(result)
    assert set(failed) == {"apply_automation[b_invalid]", "apply_automation[c_refused_by_the_server]"}
    invalid = failed["apply_automation[b_invalid]"]
    assert invalid.startswith("automation 'B Invalid' in dataupdateconfigs is invalid (2 problems)")
    assert "singleFieldUpdateElements[0].updateType" in invalid
    assert "arrayObjectFieldUpdateElements: must be an array" in invalid
    run_failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    assert "apply_automation[b_invalid]" in run_failure.message
    assert "apply_automation[c_refused_by_the_server]" in run_failure.message
    records = {r["automation"]: r for r in mongo_db[LEDGER_COLLECTION].find()}
    assert {name: r["status"] for name, r in records.items()} == {
        "A Good One": "succeeded",
        "B Invalid": "failed",
        "C Refused By The Server": "failed",
        "D Good Too": "succeeded",
    }
    assert "updateType" in records["B Invalid"]["error"]


def test_a_retry_of_the_same_run_pushes_once(mongo: MongoResource, mongo_db: Database) -> None:
    """Spec §5.5: a retried run pushed every note again. A retry or re-execution shares the run's stamp."""
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    mongo_db.dataupdateconfigs.insert_one(automation("Once Per Run"))
    first, retry = run_job(Cadence.HOURLY, mongo), run_job(Cadence.HOURLY, mongo)
    assert outputs(first)["once_per_run"]["modified"].value == 1
    assert outputs(retry)["once_per_run"]["modified"].value == 0
    notes = mongo_db.audits.find_one()["notes"]
    assert notes == [{"text": "Once Per Run", "source": "Once Per Run Query Automation", "date": TICK}]
    run_job(Cadence.HOURLY, mongo, tick=datetime(2026, 3, 6, 3, 0, tzinfo=UTC))  # the next hour's run
    assert len(mongo_db.audits.find_one()["notes"]) == 2


class FlakyMongo(MongoResource):
    """The test database, except that the first ``unreachable_calls`` automation attempts get an unreachable server.

    The loader's call (the first) always gets the real database; calls are counted on the class because Dagster may
    copy resource instances.
    """

    unreachable_calls: int
    calls: ClassVar[list[int]] = [0]

    def database(self) -> Database:
        FlakyMongo.calls[0] += 1
        if 1 < FlakyMongo.calls[0] <= 1 + self.unreachable_calls:
            return MongoResource(uri="mongodb://127.0.0.1:9", server_selection_timeout_ms=100).database()
        return super().database()


def test_transient_connection_errors_are_retried_until_they_pass(
    mongo_uri: str, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "RETRY_BASE_SECONDS", 0.0)
    monkeypatch.setattr(FlakyMongo, "calls", [0])
    mongo_db.audits.insert_one({"status": "Open"})
    mongo_db.dataupdateconfigs.insert_one(automation("Flaky"))
    result = run_job(Cadence.HOURLY, FlakyMongo(uri=mongo_uri, database_name=mongo_db.name, unreachable_calls=2))
    assert result.success
    assert len([e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]) == 2
    record = mongo_db[LEDGER_COLLECTION].find_one()
    assert (record["status"], record["attempts"]) == ("succeeded", 3)
    assert len(mongo_db.audits.find_one()["notes"]) == 1


def test_transient_connection_errors_fail_the_automation_after_three_retries(
    mongo_uri: str, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "RETRY_BASE_SECONDS", 0.0)
    monkeypatch.setattr(FlakyMongo, "calls", [0])
    mongo_db.audits.insert_one({"status": "Open"})
    mongo_db.dataupdateconfigs.insert_one(automation("Down"))
    result = run_job(Cadence.HOURLY, FlakyMongo(uri=mongo_uri, database_name=mongo_db.name, unreachable_calls=9))
    assert not result.success
    assert len([e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]) == 3
    assert failures(result)["apply_automation[down]"].startswith("automation 'Down' failed: 127.0.0.1:9")
    assert "notes" not in mongo_db.audits.find_one()


def test_dry_run_writes_nothing_but_reports_and_records(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_many([{"status": "Open"} for _ in range(3)])
    mongo_db.dataupdateconfigs.insert_one(
        automation(
            "Dry",
            singleFieldUpdateElements=[{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}],
        )
    )
    before = list(mongo_db.audits.find())
    result = run_job(Cadence.HOURLY, mongo, run_config={"ops": {"apply_automation": {"config": {"dry_run": True}}}})
    assert result.success
    assert list(mongo_db.audits.find()) == before
    metadata = outputs(result)["dry"]
    assert (metadata["matched"].value, metadata["modified"].value, metadata["dry_run"].value) == (3, 0, True)
    assert len(metadata["sample_ids"].value) == 3
    record = mongo_db[LEDGER_COLLECTION].find_one()
    assert (record["dryRun"], record["matched"], record["status"]) == (True, 3, "succeeded")


def test_every_automation_run_is_recorded(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_many([{"status": "Open"}, {"status": "Open"}])
    config_id = mongo_db.dataupdateconfigs.insert_one(automation("Recorded")).inserted_id
    config = mongo_db.dataupdateconfigs.find_one()
    result = run_job(Cadence.HOURLY, mongo)
    record = mongo_db[LEDGER_COLLECTION].find_one()
    assert record.pop("_id") == f'Hourly|2026-03-06T02:00:00.000Z|live|{{"$oid":"{config_id}"}}'
    assert record.pop("startedAt") <= record.pop("finishedAt") <= record.pop("recordedAt")
    assert isinstance(record.pop("durationSeconds"), float)
    assert record == {
        "runId": result.run_id,
        "mappingKey": "recorded",
        "automation": "Recorded",
        "configId": config_id,
        "cadence": "Hourly",
        "stamp": TICK,
        "status": "succeeded",
        "dryRun": False,
        "attempts": 1,
        "matched": 2,
        "modified": 2,
        "batches": 1,
        "error": None,
        "reason": None,
        # The ledger's own fields: every run that wrote it, and the document as its step read it and applied it.
        "runIds": [result.run_id],
        "configHash": config_hash(config),
        "config": config,
    }


def test_run_records_are_unique_per_run_and_automation(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.dataupdateconfigs.insert_one(automation("Indexed"))
    run_job(Cadence.HOURLY, mongo)
    indexes = mongo_db[LEDGER_COLLECTION].index_information().values()
    assert any(i["key"] == [("runId", 1), ("mappingKey", 1)] and i.get("unique") for i in indexes)


def test_a_run_index_the_server_refuses_is_warned_about_and_the_automations_still_run(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """The index is ensured once, by the loader; a failure there must not cost the automations their run (as a run
    record that cannot be written does not)."""
    mongo_db[LEDGER_COLLECTION].insert_many([{"runId": "old", "mappingKey": "twice"} for _ in range(2)])
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    mongo_db.dataupdateconfigs.insert_one(automation("Still Applied"))
    with DagsterInstance.ephemeral() as instance:
        result = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources=job_resources(mongo),
            instance=instance,
            tags=run_stamp_tags(TICK),
        )
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    assert outputs(result)["still_applied"]["modified"].value == 1
    assert any(f"{LEDGER_COLLECTION} has no unique run index" in message for message in messages)
    assert mongo_db[LEDGER_COLLECTION].count_documents({"automation": "Still Applied", "status": "succeeded"}) == 1


def test_no_automations_is_a_successful_empty_run(mongo: MongoResource, mongo_db: Database) -> None:
    assert run_job(Cadence.QUARTER_HOURLY, mongo).success
    assert mongo_db[LEDGER_COLLECTION].count_documents({}) == 0


def test_mapping_keys_are_sanitized_and_unique() -> None:
    assert mapping_keys(["Escalate: High $", "escalate high", "!!!", "Ünïcode"]) == [
        "escalate_high",
        "escalate_high_2",
        "automation",
        "n_code",
    ]


def test_hourly_job_on_the_demo_data_changes_it_and_a_second_run_sees_the_first(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """The "done when" check, on the demo data set the embedded server is seeded with: the first run pushes each
    note once; the second sees those changes, so its queries match nothing and it pushes nothing again."""
    seed_demo_data(mongo_db)
    first = run_job(Cadence.HOURLY, mongo, tick=None)  # a manual run: stamped with its creation time
    assert first.success, failures(first)
    assert {key: (m["matched"].value, m["modified"].value) for key, m in outputs(first).items()} == {
        "escalate_pending_review_audits": (2, 2),
        "note_overdue_record_requests": (1, 1),
    }
    escalated = list(mongo_db.audits.find({"priority": "High"}, {"auditId": 1, "notes": 1}))
    assert sorted(a["auditId"] for a in escalated) == [10000, 10006]
    assert all(a["notes"][-1]["source"] == "Escalate Pending Review Audits Query Automation" for a in escalated)
    overdue = mongo_db.medicalrecordrequests.find_one({"status": "Overdue"})
    assert overdue["internalNotes"][-1]["note"] == "Still overdue: follow up with the provider"

    second = run_job(Cadence.HOURLY, mongo, tick=None)
    assert second.success
    assert {key: (m["matched"].value, m["modified"].value) for key, m in outputs(second).items()} == {
        "escalate_pending_review_audits": (0, 0),
        "note_overdue_record_requests": (0, 0),
    }
    overdue = mongo_db.medicalrecordrequests.find_one({"status": "Overdue"})
    assert [n["source"] for n in overdue["internalNotes"]] == ["seed", "Note Overdue Record Requests Query Automation"]
    for audit in mongo_db.audits.find({"priority": "High"}):
        assert [n["text"] for n in audit["notes"]].count("Escalated: high-value audit pending review") == 1
    assert mongo_db[LEDGER_COLLECTION].count_documents({"status": "succeeded"}) == 4


def test_demo_data_every_cadence_runs_green_and_a_second_round_modifies_nothing(
    mongo: MongoResource, mongo_db: Database
) -> None:
    seed_demo_data(mongo_db)
    first_round = {}
    for cadence in Cadence:
        result = run_job(cadence, mongo)
        assert result.success, (cadence, failures(result))
        first_round.update(outputs(result))
    assert all(m["modified"].value > 0 for m in first_round.values()), first_round  # every demo does something
    assert mongo_db.audits.count_documents({"status": "Closed"}) == 2  # the inactive "Reopen Closed Audits" did not run
    received = mongo_db.medicalrecordrequests.find_one({"status": "Received"})
    assert [n["reviewed"] for n in received["internalNotes"]] == ["yes"]
    closed = mongo_db.medicalrecordrequests.find_one({"status": "Closed"})
    assert [n["note"] for n in closed["internalNotes"]] == [""]
    assert mongo_db.audits.count_documents({"reviewedByAutomation": True}) == 2  # a typed (boolean) value
    assert mongo_db.audits.count_documents({"status": "Closed", "notes.text": "Audit opened"}) == 0
    assert mongo_db.audits.count_documents({"status": "Closed", "priority": {"$exists": True}}) == 0
    assert mongo_db.audits.count_documents({"status": "Closed", "organization": ""}) == 2

    for cadence in Cadence:
        result = run_job(cadence, mongo, tick=datetime(2026, 3, 6, 3, 0, tzinfo=UTC))
        assert result.success, (cadence, failures(result))
        assert {key: m["modified"].value for key, m in outputs(result).items()} == dict.fromkeys(outputs(result), 0)


def test_a_run_record_that_cannot_be_written_does_not_fail_an_applied_automation(
    mongo: MongoResource, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = jobs.write_entry

    def refuse_success_records(database: Database, record: Any) -> None:
        if record.status == "succeeded":
            raise OperationFailure("not authorized on automationruns")
        real_write(database, record)

    monkeypatch.setattr(jobs, "write_entry", refuse_success_records)
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    mongo_db.dataupdateconfigs.insert_one(automation("Recorded Or Not"))
    result = run_job(Cadence.HOURLY, mongo)
    assert result.success
    assert mongo_db.audits.find_one()["notes"][0]["text"] == "Recorded Or Not"


def test_an_automation_already_applied_for_its_stamp_is_not_applied_again_and_says_so(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """The ledger, not only the push guard: a second run of the same stamp (a retry, a re-execution, the next
    EventBridge attempt of processToRun) applies nothing, not even a Change whose value was edited back by hand."""
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    mongo_db.dataupdateconfigs.insert_one(
        automation(
            "Once",
            singleFieldUpdateElements=[{"elementName": "priority", "updateType": "Change", "elementValue": "High"}],
        )
    )
    first = run_job(Cadence.HOURLY, mongo)
    mongo_db.audits.update_one({}, {"$set": {"priority": "Low"}})  # someone edits the document in between

    with DagsterInstance.ephemeral() as instance:
        again = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources=job_resources(mongo), instance=instance, tags=run_stamp_tags(TICK)
        )
        messages = [entry.user_message for entry in instance.all_logs(again.run_id)]

    assert again.success
    metadata = outputs(again)["once"]
    assert (metadata["already_applied"].value, metadata["applied_by_run"].value) == (True, first.run_id)
    assert metadata["modified"].value == 0 and metadata["automation"].value == "Once"
    assert any(
        m.startswith(
            f"automation 'Once' was already applied for stamp {TICK.isoformat()} by run "
            f"{first.run_id} (1 matched, 1 modified); not applied again"
        )
        for m in messages
    )
    audit = mongo_db.audits.find_one()
    assert audit["priority"] == "Low" and len(audit["notes"]) == 1
    (record,) = mongo_db[LEDGER_COLLECTION].find()
    assert (record["runId"], record["runIds"], record["status"]) == (first.run_id, [first.run_id], "succeeded")
    assert not [
        e for e in again.all_events if e.event_type in ASSET_EVENTS and e.step_key.startswith("apply_automation[")
    ]  # audits' history: nothing changed


def test_the_loader_records_each_loaded_automation_pending_and_leaves_existing_records_alone(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """What the loader read is in MongoDB with the data: a pending record per automation, carrying the document and
    its hash. A record the stamp already has, terminal or not, is not reset by a later loader."""
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    done_id, waiting_id = mongo_db.dataupdateconfigs.insert_many(
        [automation("Done"), automation("Waiting")]
    ).inserted_ids
    stamp = StampKey("Hourly", TICK, False)
    mongo_db[LEDGER_COLLECTION].insert_many(
        [
            {
                "_id": stamp.record_id(done_id),
                "status": "succeeded",
                "runId": "earlier",
                "automation": "Done",
                "matched": 7,
                "modified": 7,
            },
            {"_id": stamp.record_id(waiting_id), "status": "running", "runId": "killed", "automation": "Waiting"},
        ]
    )
    new_id = mongo_db.dataupdateconfigs.insert_one(automation("New")).inserted_id

    loaded = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
        resources=job_resources(mongo),
        tags=run_stamp_tags(TICK),
        op_selection=["load_hourly_automations"],
    )

    assert loaded.success
    records = {r["_id"]: r for r in mongo_db[LEDGER_COLLECTION].find()}
    assert records[stamp.record_id(done_id)] == {
        "_id": stamp.record_id(done_id),
        "status": "succeeded",
        "runId": "earlier",
        "automation": "Done",
        "matched": 7,
        "modified": 7,
    }
    assert (records[stamp.record_id(waiting_id)]["status"], records[stamp.record_id(waiting_id)]["runId"]) == (
        "running",
        "killed",
    )
    pending = records[stamp.record_id(new_id)]
    config = mongo_db.dataupdateconfigs.find_one({"_id": new_id})
    assert pending["status"] == "pending" and pending["attempts"] == 0 and pending["mappingKey"] == "new"
    assert (pending["runId"], pending["runIds"], pending["stamp"]) == (loaded.run_id, [loaded.run_id], TICK)
    assert (pending["config"], pending["configHash"]) == (config, config_hash(config))

    applied = run_job(Cadence.HOURLY, mongo)  # the whole cadence, same stamp
    assert set(outputs(applied)) == {"done", "waiting", "new"}
    assert outputs(applied)["done"]["already_applied"].value is True
    statuses = {r["automation"]: (r["status"], r.get("runIds")) for r in mongo_db[LEDGER_COLLECTION].find()}
    assert statuses == {
        "Done": ("succeeded", None),
        "Waiting": ("succeeded", [applied.run_id]),
        "New": ("succeeded", [loaded.run_id, applied.run_id]),
    }


def test_a_dry_run_keeps_its_own_records_and_is_never_skipped(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    mongo_db.dataupdateconfigs.insert_one(automation("Previewed"))
    dry = {"ops": {"apply_automation": {"config": {"dry_run": True}}}}
    run_job(Cadence.HOURLY, mongo)
    previewed = run_job(Cadence.HOURLY, mongo, run_config=dry)  # after the live run of the same stamp: still counts
    assert outputs(previewed)["previewed"]["matched"].value == 0  # the note is there: nothing left to match
    assert "already_applied" not in outputs(previewed)["previewed"]
    assert sorted((r["dryRun"], r["status"], r["_id"].split("|")[2]) for r in mongo_db[LEDGER_COLLECTION].find()) == [
        (False, "succeeded", "live"),
        (True, "succeeded", "dry"),
    ]


def test_records_expire_after_the_configured_days_and_a_new_window_is_applied(
    mongo_uri: str, mongo_db: Database
) -> None:
    mongo_db.dataupdateconfigs.insert_one(automation("Kept"))
    for days in (90, 30):
        run_job(Cadence.HOURLY, MongoResource(uri=mongo_uri, database_name=mongo_db.name, history_days=days))
        ttl = mongo_db[LEDGER_COLLECTION].index_information()["recordedAt_ttl"]
        assert (ttl["key"], ttl["expireAfterSeconds"]) == ([("recordedAt", 1)], days * 24 * 3600)


def test_records_of_the_old_layout_stay_readable_beside_the_ledger(mongo: MongoResource, mongo_db: Database) -> None:
    """One record per Dagster run, keyed by an ObjectId: what the collection held before the ledger."""
    old = {
        "runId": "an-old-run",
        "mappingKey": "kept",
        "automation": "Kept",
        "configId": "x",
        "cadence": "Hourly",
        "stamp": TICK,
        "status": "succeeded",
        "dryRun": False,
        "attempts": 1,
        "matched": 1,
        "modified": 1,
        "batches": 1,
        "durationSeconds": 0.01,
        "error": None,
    }
    old_id = mongo_db[LEDGER_COLLECTION].insert_one(dict(old)).inserted_id
    mongo_db.dataupdateconfigs.insert_one(automation("Kept"))
    assert run_job(Cadence.HOURLY, mongo).success
    assert mongo_db[LEDGER_COLLECTION].find_one({"_id": old_id}) == {"_id": old_id, **old}
    assert mongo_db[LEDGER_COLLECTION].count_documents({"automation": "Kept"}) == 2


def test_a_loaded_set_that_cannot_be_recorded_is_warned_about_and_the_automations_still_run(
    mongo: MongoResource, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending records are for the closing check; without them each step still creates its own record."""

    def refuse(*_args: Any) -> None:
        raise OperationFailure("not authorized on automationruns")

    monkeypatch.setattr(jobs, "record_loaded", refuse)
    mongo_db.audits.insert_one({"status": "Open", "notes": []})
    config_id = mongo_db.dataupdateconfigs.insert_one(automation("Unrecorded Load")).inserted_id
    with DagsterInstance.ephemeral() as instance:
        result = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources=job_resources(mongo), instance=instance, tags=run_stamp_tags(TICK)
        )
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    assert any("the loaded set is not in automationruns" in message for message in messages)
    (record,) = mongo_db[LEDGER_COLLECTION].find()
    assert (record["_id"], record["status"], record["runIds"]) == (
        StampKey("Hourly", TICK, False).record_id(config_id),
        "succeeded",
        [result.run_id],
    )
    assert record["config"] == mongo_db.dataupdateconfigs.find_one()
