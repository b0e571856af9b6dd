"""Executing plans against a real server (SecantusDB, or MONGODB_URI via the ``real_mongo`` tier).

Covers every update type and its edge cases, and the execution bugs of spec §5: array Change/Remove that never worked
(§5.2), unbounded memory (§5.4), the write not re-checking the query (§5.7), string-only values (§5.14).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from pymongo import monitoring
from pymongo.database import Database

from intervalprocessing_dagster.data_change.execute import (
    DeadlineExceeded,
    DocumentWriteErrors,
    ExecutionResult,
    execute,
    filter_of,
)
from intervalprocessing_dagster.data_change.plan import build_plan
from intervalprocessing_dagster.data_change.rules import parse_automation

STAMP = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)


class CommandLog(monitoring.CommandListener):
    """Every command the client sent, by name, with its body."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [body for command, body in self.commands if command == name]


@pytest.fixture()
def listened(mongo_uri: str, mongo_db: Database) -> Iterator[tuple[Database, CommandLog]]:
    """The test database on a client whose commands are recorded."""
    log = CommandLog()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[log])
    yield client[mongo_db.name], log
    client.close()


def run(
    db: Database,
    *,
    query: Any = "{}",
    single: list[dict[str, Any]] | None = None,
    array: list[dict[str, Any]] | None = None,
    stamp: datetime = STAMP,
    deadline: float | None = None,
    **options: Any,
) -> ExecutionResult:
    """Validate, plan and execute one automation on ``db.docs``."""
    automation = parse_automation(
        {
            "name": "Exec Test",
            "query": query,
            "collectionName": "docs",
            "isActive": True,
            "runCadence": "Hourly",
            "singleFieldUpdateElements": single or [],
            "arrayObjectFieldUpdateElements": array or [],
        }
    )
    return execute(
        db.docs,
        automation.query,
        build_plan(automation, stamp),
        deadline=time.time() + 60 if deadline is None else deadline,
        **options,
    )


def docs(db: Database) -> dict[Any, dict[str, Any]]:
    return {doc["_id"]: doc for doc in db.docs.find()}


def test_single_field_add_change_remove_delete_on_dotted_paths(mongo_db: Database) -> None:
    mongo_db.docs.insert_many(
        [
            {"_id": 1, "status": "Open", "meta": {"by": "seed", "old": 1}, "organization": "Org"},
            {"_id": 2, "status": "Closed", "meta": {"by": "seed", "old": 1}, "organization": "Org"},
        ]
    )
    result = run(
        mongo_db,
        query="{ status: 'Open' }",
        single=[
            {"elementName": "stage", "updateType": "Add", "elementValue": "Ready"},
            {"elementName": "meta.by", "updateType": "Change", "elementValue": "automation"},
            {"elementName": "organization", "updateType": "Remove", "elementValue": "ignored"},
            {"elementName": "meta.old", "updateType": "Delete", "elementValue": ""},
        ],
    )
    assert (result.matched, result.modified, result.dry_run) == (1, 1, False)
    after = docs(mongo_db)
    assert after[1] == {"_id": 1, "status": "Open", "meta": {"by": "automation"}, "organization": "", "stage": "Ready"}
    assert after[2]["meta"] == {"by": "seed", "old": 1}  # not matched, not touched


def test_values_keep_their_bson_type(mongo_db: Database) -> None:
    """Spec §5.14: the old system could only write strings."""
    mongo_db.docs.insert_one({"_id": 1})
    values = {
        "flag": True,
        "count": 7,
        "big": Int64(2**40),
        "ratio": 0.5,
        "when": datetime(2026, 1, 2, tzinfo=UTC),
        "ref": ObjectId("65d9f0a1b2c3d4e5f6a7b800"),
        "money": Decimal128("12.50"),
        "nothing": None,
        "sub": {"a": [1, "two"]},
    }
    run(mongo_db, single=[{"elementName": k, "updateType": "Change", "elementValue": v} for k, v in values.items()])
    stored = mongo_db.docs.find_one({"_id": 1})
    for key, value in values.items():
        assert stored[key] == value and type(stored[key]) is type(value), key
    typed = {
        key: mongo_db.docs.count_documents({key: {"$type": bson_type}})
        for key, bson_type in [
            ("flag", "bool"),
            ("count", "int"),
            ("big", "long"),
            ("when", "date"),
            ("ref", "objectId"),
            ("money", "decimal"),
        ]
    }
    assert typed == dict.fromkeys(typed, 1)


def test_array_add_pushes_onto_any_array_and_creates_a_missing_one(mongo_db: Database) -> None:
    mongo_db.docs.insert_many([{"_id": 1, "followUps": [{"text": "old"}]}, {"_id": 2}])
    result = run(
        mongo_db,
        array=[{"arrayProperty": "followUps", "matchingPropertyName": "text", "updateType": "Add", "newValue": "Call"}],
    )
    assert (result.matched, result.modified) == (2, 2)
    pushed = {"text": "Call", "source": "Exec Test Query Automation", "date": STAMP}
    after = docs(mongo_db)
    assert after[1]["followUps"] == [{"text": "old"}, pushed]
    assert after[2]["followUps"] == [pushed]


def test_array_add_is_idempotent_per_stamp(mongo_db: Database) -> None:
    """Spec §5.5: notes were pushed again on every run and every retry."""
    mongo_db.docs.insert_one({"_id": 1, "notes": []})
    note = [{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "Hi"}]
    assert run(mongo_db, array=note).modified == 1
    assert run(mongo_db, array=note).modified == 0  # a retry of the same run
    assert len(mongo_db.docs.find_one()["notes"]) == 1
    assert run(mongo_db, array=note, stamp=datetime(2026, 3, 6, 3, 0, tzinfo=UTC)).modified == 1  # the next run
    assert len(mongo_db.docs.find_one()["notes"]) == 2


def seed_notes(db: Database) -> None:
    db.docs.insert_many(
        [
            {
                "_id": 1,
                "notes": [
                    {"text": "a", "reviewed": "no"},
                    {"text": "b", "reviewed": "yes"},
                    {"text": "c", "reviewed": "no"},
                ],
            },
            {"_id": 2, "notes": []},
            {"_id": 3},  # no array: MongoDB refuses positional updates here, so it must not be selected
        ]
    )


def test_array_change_with_matching_value_changes_only_matching_elements(mongo_db: Database) -> None:
    """Spec §5.2: the old Change had no arrayFilters and always failed."""
    seed_notes(mongo_db)
    result = run(
        mongo_db,
        array=[
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "reviewed",
                "updateType": "Change",
                "newValue": "done",
                "matchingValue": "no",
            }
        ],
    )
    assert (result.matched, result.modified) == (2, 1)
    assert [n["reviewed"] for n in docs(mongo_db)[1]["notes"]] == ["done", "yes", "done"]
    assert docs(mongo_db)[3] == {"_id": 3}


def test_array_change_without_matching_value_changes_every_element(mongo_db: Database) -> None:
    seed_notes(mongo_db)
    run(
        mongo_db,
        array=[{"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Change", "newValue": 1}],
    )
    assert [n["reviewed"] for n in docs(mongo_db)[1]["notes"]] == [1, 1, 1]


def test_array_remove_blanks_matching_or_all_elements(mongo_db: Database) -> None:
    """Spec §5.2: the old Remove used positional $ with an _id-only filter and always failed."""
    seed_notes(mongo_db)
    run(
        mongo_db,
        array=[
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "text",
                "updateType": "Remove",
                "newValue": "",
                "matchingValue": "b",
            }
        ],
    )
    assert [n["text"] for n in docs(mongo_db)[1]["notes"]] == ["a", "", "c"]
    run(mongo_db, array=[{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Remove"}])
    assert [n["text"] for n in docs(mongo_db)[1]["notes"]] == ["", "", ""]


def test_array_delete_pulls_elements_equal_to_new_value(mongo_db: Database) -> None:
    seed_notes(mongo_db)
    result = run(
        mongo_db,
        array=[
            {"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Delete", "newValue": "no"}
        ],
    )
    assert result.modified == 1
    assert docs(mongo_db)[1]["notes"] == [{"text": "b", "reviewed": "yes"}]
    assert docs(mongo_db)[3] == {"_id": 3}


def test_find_query_is_one_server_side_update_filtered_by_the_query(
    listened: tuple[Database, CommandLog],
) -> None:
    """Spec §5.7: the old write filtered on _id only, so a document that stopped matching was changed anyway."""
    db, log = listened
    db.docs.insert_many([{"_id": n, "status": "Open" if n % 2 else "Closed"} for n in range(10)])
    log.commands.clear()
    result = run(
        db, query="{ status: 'Open' }", single=[{"elementName": "seen", "updateType": "Add", "elementValue": True}]
    )
    assert [name for name, _ in log.commands if name != "ping"] == ["update"]  # no read, no per-document trips
    (statement,) = log.named("update")[0]["updates"]
    assert statement["q"] == {"status": "Open"} and statement["multi"] is True
    assert (result.matched, result.modified) == (5, 5)


def test_aggregate_query_streams_ids_and_writes_bounded_unordered_batches(
    listened: tuple[Database, CommandLog],
) -> None:
    """Spec §5.4: the old app kept one update model per document in memory and sent one unbatched bulk write."""
    db, log = listened
    db.docs.insert_many([{"_id": n, "status": "Overdue" if n < 25 else "Open"} for n in range(30)])
    log.commands.clear()
    result = run(  # the $limit makes it more than a filter, so it takes the _id path
        db,
        query="aggregate([{$match:{status:'Overdue'}},{$limit:1000}])",
        batch_size=10,
        single=[{"elementName": "flagged", "updateType": "Add", "elementValue": True}],
    )
    assert (result.matched, result.modified, result.batches) == (25, 25, 3)
    (aggregate,) = log.named("aggregate")
    assert aggregate["cursor"] == {"batchSize": 10} and aggregate["pipeline"][-1] == {"$project": {"_id": 1}}
    updates = log.named("update")
    assert [len(u["updates"]) for u in updates] == [10, 10, 5]
    assert all(u["ordered"] is False for u in updates)
    assert log.named("getMore") and all(getmore["batchSize"] == 10 for getmore in log.named("getMore"))
    assert db.docs.count_documents({"flagged": True}) == 25


def test_a_pipeline_that_only_filters_is_one_server_side_update_filtered_by_its_match_stages(
    listened: tuple[Database, CommandLog],
) -> None:
    """Reading the _id values back and writing them one by one costs the server more than one update_many, and the
    filter is re-checked as each document is written, which the _id path cannot do (spec §5.7)."""
    db, log = listened
    db.docs.insert_many([{"_id": n, "status": "Open" if n % 2 else "Closed"} for n in range(10)])
    log.commands.clear()
    result = run(
        db,
        query="aggregate([{$match:{status:'Open'}},{$match:{_id:{$lt:7}}},{$project:{_id:1}}])",
        single=[{"elementName": "seen", "updateType": "Add", "elementValue": True}],
    )
    assert [name for name, _ in log.commands if name != "ping"] == ["update"]
    (statement,) = log.named("update")[0]["updates"]
    assert statement["q"] == {"$and": [{"status": "Open"}, {"_id": {"$lt": 7}}]} and statement["multi"] is True
    assert (result.matched, result.modified, result.batches) == (3, 3, 1)
    assert sorted(doc["_id"] for doc in db.docs.find({"seen": True})) == [1, 3, 5]


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ([{"$match": {"a": 1}}], {"a": 1}),
        ([{"$match": {"a": 1}}, {"$match": {"b": 2}}], {"$and": [{"a": 1}, {"b": 2}]}),
        ([{"$match": {"a": 1}}, {"$project": {"_id": 1}}, {"$sort": {"b": 1}}], {"a": 1}),
        ([{"$set": {"x": 1}}], {}),
        ([], {}),
        ([{"$match": {"a": 1}}, {"$limit": 5}], None),
        ([{"$match": {"a": 1}}, {"$lookup": {"from": "p", "localField": "p", "foreignField": "_id", "as": "p"}}], None),
        ([{"$match": {"a": 1}}, {"$project": {"b": "$c"}}, {"$match": {"b": 2}}], None),  # matches a reshaped doc
        ([{"$sort": {"a": 1}}, {"$match": {"a": 1}}], None),
        ([{"$unwind": "$items"}], None),
    ],
)
def test_filter_of_a_pipeline_only_where_it_selects_the_same_documents(
    pipeline: list[dict[str, Any]], expected: dict[str, Any] | None
) -> None:
    assert filter_of(pipeline) == expected


def test_aggregate_refused_documents_do_not_stop_the_others(mongo_db: Database) -> None:
    mongo_db.docs.insert_many([{"_id": 1, "notes": []}, {"_id": 2, "notes": "not an array"}, {"_id": 3}])
    with pytest.raises(DocumentWriteErrors) as caught:
        run(
            mongo_db,
            query="aggregate([{$match:{}},{$limit:1000}])",
            array=[{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "x"}],
        )
    assert caught.value.failed == 1 and "_id 2" in str(caught.value)
    assert caught.value.result.modified == 2
    assert [len(d.get("notes")) for d in mongo_db.docs.find({"_id": {"$in": [1, 3]}})] == [1, 1]


def test_dry_run_counts_and_samples_but_writes_nothing(listened: tuple[Database, CommandLog]) -> None:
    db, log = listened
    db.docs.insert_many([{"_id": n, "status": "Open"} for n in range(12)])
    before = docs(db)
    log.commands.clear()
    change = [{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}]
    found = run(db, query="{ status: 'Open' }", single=change, dry_run=True, sample_size=3)
    piped = run(
        db,
        query="aggregate([{$match:{status:'Open'}},{$limit:1000}])",
        single=change,
        dry_run=True,
        batch_size=5,
        sample_size=3,
    )
    for result in (found, piped):
        assert (result.matched, result.modified, result.dry_run, len(result.sample_ids)) == (12, 0, True, 3)
    assert piped.batches == 3
    assert docs(db) == before
    assert not [name for name, _ in log.commands if name in ("update", "delete", "insert", "findAndModify")]


def test_a_passed_deadline_writes_nothing(mongo_db: Database) -> None:
    mongo_db.docs.insert_one({"_id": 1})
    with pytest.raises(DeadlineExceeded):
        run(mongo_db, single=[{"elementName": "x", "updateType": "Add", "elementValue": 1}], deadline=time.time() - 1)
    assert mongo_db.docs.find_one() == {"_id": 1}


def test_batches_stop_once_the_deadline_passes(mongo_db: Database) -> None:
    """A run never outlives its interval: what is written stays written, and the rest waits for the next run."""
    mongo_db.docs.insert_many([{"_id": n} for n in range(6)])
    budget = 3.0  # time enough for one batch on a starved CI machine

    def slow_progress(_message: str) -> None:
        time.sleep(budget + 0.2)  # the first batch's progress line outlasts the deadline

    with pytest.raises(DeadlineExceeded):  # between batches, or as the server-side time limit of the next getMore
        run(
            mongo_db,
            query="aggregate([{$sort:{_id:1}},{$limit:100}])",
            batch_size=2,
            deadline=time.time() + budget,
            single=[{"elementName": "x", "updateType": "Add", "elementValue": 1}],
            log=slow_progress,
        )
    assert mongo_db.docs.count_documents({"x": 1}) == 2


def test_find_refused_documents_do_not_stop_the_others(mongo_db: Database) -> None:
    """Spec §3.4: one bad document lost the rest of the automation's writes. update_many stops at the first document
    the server refuses; the documents after it must still be written, the query still re-checked."""
    mongo_db.docs.insert_many(
        [
            {"_id": 1, "status": "Open", "notes": []},
            {"_id": 2, "status": "Open", "notes": "not an array"},
            {"_id": 3, "status": "Open", "notes": []},
            {"_id": 4, "status": "Closed", "notes": []},
        ]
    )
    with pytest.raises(DocumentWriteErrors) as caught:
        run(
            mongo_db,
            query="{ status: 'Open' }",
            single=[{"elementName": "seen", "updateType": "Add", "elementValue": True}],
            array=[{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "x"}],
        )
    assert caught.value.failed == 1 and "_id 2" in str(caught.value)
    after = docs(mongo_db)
    assert [len(after[n]["notes"]) for n in (1, 3)] == [1, 1]  # pushed once each, the first pass's push not repeated
    assert after[1]["seen"] is True and after[3]["seen"] is True
    assert after[2] == {"_id": 2, "status": "Open", "notes": "not an array"}
    assert after[4] == {"_id": 4, "status": "Closed", "notes": []}
