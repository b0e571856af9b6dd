"""The change journal against a real server (SecantusDB, or MONGODB_URI via the ``real_mongo`` tier): exact entries
for every update type on the find, ``$match``-only and ``_id`` paths, the undo restoring equal documents, and the
journal staying consistent with the data when other writers interfere, the server refuses, or a run dies mid-batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pymongo
import pytest
from pymongo import monitoring
from pymongo.database import Database

from intervalprocessing_dagster.data_change.changes import SetChange, UpdateShape, change_from_document
from intervalprocessing_dagster.data_change.execute import (
    DeadlineExceeded,
    DocumentWriteErrors,
    ExecutionResult,
    execute,
)
from intervalprocessing_dagster.data_change.journal import (
    JOURNAL_COLLECTION,
    TTL_INDEX,
    WRITING,
    WRITTEN,
    ChangeJournal,
    PlannedWrite,
    conjoin,
    resolve_page,
)
from intervalprocessing_dagster.data_change.plan import build_plan
from intervalprocessing_dagster.data_change.revert import revert_run
from intervalprocessing_dagster.data_change.rules import parse_automation

STAMP = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)
NOTE = {"text": "Call", "source": "Journaled Query Automation", "date": STAMP}
SEED = [
    {
        "_id": 1,
        "status": "Open",
        "meta": {"by": "seed", "old": 1},
        "notes": [{"text": "a", "reviewed": "no"}, {"text": "b", "reviewed": "yes"}],
    },
    {"_id": 2, "status": "Open", "notes": []},
    {"_id": 3, "status": "Open"},
    {"_id": 4, "status": "Closed", "notes": [{"text": "a", "reviewed": "no"}]},
]
QUERIES = {
    "find": "{ status: 'Open' }",
    "$match-only pipeline": "aggregate([{$match:{status:'Open'}},{$project:{status:1}}])",
    "pipeline (_id path)": "aggregate([{$match:{status:'Open'}},{$limit:1000}])",
}
# Each update type, single field and array element, with the exact entry expected for document 1 and the documents
# journaled (the others are no-ops for it, or not selected).
CASES: dict[str, tuple[dict[str, Any], list[dict[str, Any]], list[int]]] = {
    "single Add": (
        {"single": [{"elementName": "stage", "updateType": "Add", "elementValue": "Ready"}]},
        [{"kind": "set", "path": "stage", "after": "Ready"}],
        [1, 2, 3],
    ),
    "single Change": (
        {"single": [{"elementName": "meta.by", "updateType": "Change", "elementValue": "auto"}]},
        [{"kind": "set", "path": "meta.by", "before": "seed", "after": "auto"}],
        [1, 2, 3],
    ),
    "single Remove": (
        {"single": [{"elementName": "status", "updateType": "Remove"}]},
        [{"kind": "set", "path": "status", "before": "Open", "after": ""}],
        [1, 2, 3],
    ),
    "single Delete": (
        {"single": [{"elementName": "meta.old", "updateType": "Delete", "elementValue": ""}]},
        [{"kind": "set", "path": "meta.old", "before": 1}],
        [1],
    ),
    "array Add": (
        {
            "array": [
                {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "Call"}
            ]
        },
        [{"kind": "push", "path": "notes", "element": NOTE, "created": False}],
        [1, 2, 3],
    ),
    "array Change": (
        {
            "array": [
                {
                    "arrayProperty": "notes",
                    "matchingPropertyName": "reviewed",
                    "updateType": "Change",
                    "newValue": "done",
                    "matchingValue": "no",
                }
            ]
        },
        [
            {
                "kind": "set",
                "path": "notes.0",
                "before": {"text": "a", "reviewed": "no"},
                "after": {"text": "a", "reviewed": "done"},
            }
        ],
        [1],
    ),
    "array Remove": (
        {"array": [{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Remove"}]},
        [
            {
                "kind": "set",
                "path": "notes.0",
                "before": {"text": "a", "reviewed": "no"},
                "after": {"text": "", "reviewed": "no"},
            },
            {
                "kind": "set",
                "path": "notes.1",
                "before": {"text": "b", "reviewed": "yes"},
                "after": {"text": "", "reviewed": "yes"},
            },
        ],
        [1],
    ),
    "array Delete": (
        {
            "array": [
                {"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Delete", "newValue": "no"}
            ]
        },
        [
            {
                "kind": "pull",
                "path": "notes",
                "removed": [{"index": 0, "element": {"text": "a", "reviewed": "no"}}],
                "keptLength": 1,
            }
        ],
        [1],
    ),
}


def automation(query: str = QUERIES["find"], **elements: list[dict[str, Any]]) -> Any:
    return parse_automation(
        {
            "name": "Journaled",
            "query": query,
            "collectionName": "docs",
            "isActive": True,
            "runCadence": "Hourly",
            "singleFieldUpdateElements": elements.get("single", []),
            "arrayObjectFieldUpdateElements": elements.get("array", []),
        }
    )


def journal_of(db: Database, run_id: str = "run-1", **overrides: Any) -> ChangeJournal:
    settings: dict[str, Any] = {
        "run_id": run_id,
        "root_run_id": run_id,
        "stamp": STAMP,
        "automation": "Journaled",
        "config_id": "config-1",
        "config_hash": "hash-1",
        "history_days": 90,
        **overrides,
    }
    return ChangeJournal(db, **settings)


def run(db: Database, rule: Any, journal: ChangeJournal | None, **options: Any) -> ExecutionResult:
    options.setdefault("deadline", time.time() + 60)
    if journal is None or options.get("dry_run"):
        return execute(db.docs, rule.query, build_plan(rule, STAMP), **options)
    options.setdefault("batch_size", 1000)
    return journal.apply(
        db.docs, rule.query, build_plan(rule, STAMP), log=options.pop("log", lambda _: None), **options
    )


def revert(db: Database, root_run_id: str = "run-1", *, dry_run: bool = False) -> Any:
    conflicts: list[str] = []
    reports = revert_run(
        db,
        root_run_id,
        [],
        dry_run=dry_run,
        sample_size=2,
        log=conflicts.append,
        journal_for=lambda page: journal_of(db, "revert-1", automation=page["automation"], revert_of=root_run_id),
    )
    return reports, conflicts


def docs(db: Database) -> dict[Any, dict[str, Any]]:
    return {doc["_id"]: doc for doc in db.docs.find()}


def entries(db: Database, **selection: Any) -> dict[Any, list[dict[str, Any]]]:
    """Every journaled document's changes, by ``_id`` (a document journaled twice would fail the test)."""
    found: dict[Any, list[dict[str, Any]]] = {}
    for page in db[JOURNAL_COLLECTION].find(selection):
        assert page["state"] == WRITTEN
        for entry in page["documents"]:
            assert entry["_id"] not in found, f"_id {entry['_id']} journaled twice"
            found[entry["_id"]] = entry["changes"]
    return found


@pytest.fixture()
def seeded(mongo_db: Database) -> Iterator[Database]:
    mongo_db.docs.insert_many([dict(doc) for doc in SEED])
    yield mongo_db


@pytest.mark.parametrize("query", list(QUERIES))
@pytest.mark.parametrize("case", list(CASES))
def test_every_update_type_is_journaled_exactly_and_reverted_to_equal_documents(
    seeded: Database, case: str, query: str
) -> None:
    elements, first_entry, journaled = CASES[case]
    before = docs(seeded)
    result = run(seeded, automation(QUERIES[query], **elements), journal_of(seeded))
    after = docs(seeded)

    recorded = entries(seeded)
    assert sorted(recorded) == journaled == sorted(i for i in before if before[i] != after[i])
    assert result.modified == len(journaled)
    first = [dict(change) for change in recorded[1]]
    for change in first:
        change.pop("keptFingerprint", None)
    assert first == first_entry
    for document_id, changes in recorded.items():  # every before was there, every after is there now
        for change in map(change_from_document, changes):
            assert change.holds_before(before[document_id]) and change.holds_after(after[document_id])
    page = seeded[JOURNAL_COLLECTION].find_one()
    assert {
        key: page[key] for key in ("runId", "rootRunId", "stamp", "automation", "configId", "configHash", "collection")
    } == {
        "runId": "run-1",
        "rootRunId": "run-1",
        "stamp": STAMP,
        "automation": "Journaled",
        "configId": "config-1",
        "configHash": "hash-1",
        "collection": "docs",
    }

    reports, conflicts = revert(seeded)
    assert docs(seeded) == before and not conflicts
    assert (reports["Journaled"].restored, reports["Journaled"].conflicts) == (len(journaled), 0)


def test_a_second_run_of_the_same_stamp_changes_and_journals_nothing(seeded: Database) -> None:
    """Retries and re-executions share the stamp: what the first attempt changed is a no-op for the next."""
    rule = automation(**CASES["array Add"][0], single=CASES["single Change"][0]["single"])
    assert run(seeded, rule, journal_of(seeded)).modified == 3
    assert run(seeded, rule, journal_of(seeded, "run-2", root_run_id="run-1")).modified == 0
    assert seeded[JOURNAL_COLLECTION].count_documents({}) == 1 and len(entries(seeded)) == 3


def test_a_dry_run_writes_nothing_to_the_data_or_the_journal(seeded: Database) -> None:
    before = docs(seeded)
    result = run(seeded, automation(**CASES["single Remove"][0]), journal_of(seeded), dry_run=True)
    assert (result.matched, result.modified, result.dry_run) == (3, 0, True)
    assert docs(seeded) == before
    assert JOURNAL_COLLECTION not in seeded.list_collection_names()


def test_batches_are_bounded_one_journal_page_each(mongo_db: Database) -> None:
    mongo_db.docs.insert_many([{"_id": n, "status": "Open"} for n in range(25)])
    result = run(mongo_db, automation(single=CASES["single Add"][0]["single"]), journal_of(mongo_db), batch_size=10)
    assert (result.matched, result.modified, result.batches) == (25, 25, 3)
    pages = list(mongo_db[JOURNAL_COLLECTION].find().sort("_id", 1))
    assert [len(page["documents"]) for page in pages] == [10, 10, 5]


def test_a_document_changed_between_read_and_write_is_neither_written_nor_journaled(seeded: Database) -> None:
    rule = automation(single=[{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}])
    plan = build_plan(rule, STAMP)
    shape = UpdateShape(plan)
    read = list(seeded.docs.find(plan.filter({"status": "Open"}), shape.projection))
    seeded.docs.update_one({"_id": 2}, {"$set": {"status": "Escalated"}})  # another writer, after the read

    outcome = journal_of(seeded).apply_batch(seeded.docs, shape, plan, read, [{"status": "Open"}])

    assert (outcome.written, outcome.skipped, outcome.refused) == (2, [2], [])
    assert seeded.docs.find_one({"_id": 2})["status"] == "Escalated"  # not overwritten
    assert sorted(entries(seeded)) == [1, 3]


def test_documents_the_server_refuses_are_reported_and_not_journaled(mongo_db: Database) -> None:
    """The prediction refuses what MongoDB refuses; a refusal it cannot foresee (here a unique index) is found by
    sending each document of the batch on its own."""
    mongo_db.docs.create_index("code", unique=True, sparse=True)
    mongo_db.docs.insert_many(
        [
            {"_id": 1, "status": "Open", "notes": []},
            {"_id": 2, "status": "Open", "notes": "not an array"},
            {"_id": 3, "status": "Open", "notes": []},
            {"_id": 4, "status": "Closed", "code": "X"},
        ]
    )
    note = automation(**CASES["array Add"][0])
    with pytest.raises(DocumentWriteErrors) as caught:
        run(mongo_db, note, journal_of(mongo_db))
    assert caught.value.failed == 1 and "_id 2: notes is 'not an array', not an array" in str(caught.value)
    assert sorted(entries(mongo_db)) == [1, 3]

    coded = automation(single=[{"elementName": "code", "updateType": "Add", "elementValue": "X"}])
    with pytest.raises(DocumentWriteErrors) as caught:
        run(mongo_db, coded, journal_of(mongo_db, "run-2"))
    assert caught.value.failed == 3 and "duplicate key" in str(caught.value).lower()
    assert entries(mongo_db, runId="run-2") == {}
    assert mongo_db[JOURNAL_COLLECTION].count_documents({"runId": "run-2"}) == 0
    assert [doc.get("code") for doc in mongo_db.docs.find().sort("_id", 1)] == [None, None, None, "X"]


def test_a_page_left_writing_is_settled_by_reading_its_documents_back(seeded: Database) -> None:
    """What a run killed between its write and the page's confirmation leaves; the next attempt and the undo settle
    it: the entry of a document holding the new value stays, one still holding the old value is dropped, and one
    holding neither is kept flagged unconfirmed (the undo leaves it alone)."""
    run(seeded, automation(single=CASES["single Remove"][0]["single"]), journal_of(seeded))
    seeded[JOURNAL_COLLECTION].update_one({}, {"$set": {"state": WRITING}})
    seeded.docs.update_one({"_id": 2}, {"$set": {"status": "Open"}})  # as if never written
    seeded.docs.update_one({"_id": 3}, {"$set": {"status": "Escalated"}})  # changed again at that moment
    page = seeded[JOURNAL_COLLECTION].find_one()

    assert resolve_page(seeded, page) == 1

    page = seeded[JOURNAL_COLLECTION].find_one()
    assert page["state"] == WRITTEN
    assert [(entry["_id"], entry.get("unconfirmed", False)) for entry in page["documents"]] == [(1, False), (3, True)]
    reports, conflicts = revert(seeded)
    assert (reports["Journaled"].restored, reports["Journaled"].conflicts) == (1, 1)
    assert "_id 3: it changed while the automation wrote it" in conflicts[0]
    assert [doc.get("status") for doc in seeded.docs.find().sort("_id", 1)] == ["Open", "Open", "Escalated", "Closed"]


def test_the_next_attempt_of_a_run_settles_its_page_in_doubt(seeded: Database) -> None:
    rule = automation(single=CASES["single Remove"][0]["single"])
    run(seeded, rule, journal_of(seeded))
    seeded[JOURNAL_COLLECTION].update_one({}, {"$set": {"state": WRITING}})
    seeded.docs.update_one({"_id": 2}, {"$set": {"status": "Open"}})

    run(seeded, rule, journal_of(seeded, resume=True))  # a step retry of the same run

    assert seeded[JOURNAL_COLLECTION].count_documents({"state": WRITING}) == 0
    assert sorted(entries(seeded)) == [1, 2, 3]  # 2 once, by the retry that changed it


def test_the_deadline_stops_between_batches_and_every_written_batch_is_journaled(mongo_db: Database) -> None:
    mongo_db.docs.insert_many([{"_id": n, "status": "Open"} for n in range(6)])
    budget = 3.0  # time enough for one batch on a starved CI machine

    def slow_progress(_message: str) -> None:
        time.sleep(budget + 0.2)  # the first batch's progress line outlasts the deadline

    with pytest.raises(DeadlineExceeded):  # between batches, or as the server-side time limit of the next getMore
        run(
            mongo_db,
            automation(single=CASES["single Add"][0]["single"]),
            journal_of(mongo_db),
            batch_size=2,
            deadline=time.time() + budget,
            log=slow_progress,
        )
    assert mongo_db.docs.count_documents({"stage": "Ready"}) == 2 == len(entries(mongo_db))  # all pages written


def test_a_page_over_16_mb_is_split_and_a_single_entry_over_it_is_refused(mongo_db: Database) -> None:
    big = "x" * (5 * 1024 * 1024)
    mongo_db.docs.insert_many([{"_id": n, "status": "Open", "blob": big} for n in range(4)])
    rule = automation(single=[{"elementName": "blob", "updateType": "Remove"}])
    assert run(mongo_db, rule, journal_of(mongo_db)).modified == 4
    assert sorted(len(page["documents"]) for page in mongo_db[JOURNAL_COLLECTION].find()) == [2, 2]

    outcome = journal_of(mongo_db, "run-2").write(
        mongo_db.docs,
        [PlannedWrite(0, (SetChange("blob", big * 4, ""),), {"$set": {"blob": "y"}}, [], {"blob": {"$eq": ""}})],
        [],
    )
    assert outcome.written == 0 and "16 MB" in outcome.refused[0][1]
    assert mongo_db.docs.find_one({"_id": 0})["blob"] == ""


def test_the_journal_expires_after_the_history_window_and_is_indexed_for_the_undo(mongo_db: Database) -> None:
    mongo_db.docs.insert_one({"_id": 1, "status": "Open"})
    run(mongo_db, automation(single=CASES["single Add"][0]["single"]), journal_of(mongo_db, history_days=30))
    indexes = mongo_db[JOURNAL_COLLECTION].index_information()
    assert indexes[TTL_INDEX]["key"] == [("createdAt", 1)] and indexes[TTL_INDEX]["expireAfterSeconds"] == 30 * 86400
    assert any(index["key"] == [("rootRunId", 1), ("automation", 1)] for index in indexes.values())
    assert isinstance(mongo_db[JOURNAL_COLLECTION].find_one()["createdAt"], datetime)

    run(
        mongo_db,
        automation(single=[{"elementName": "x", "updateType": "Add", "elementValue": 1}]),
        journal_of(mongo_db, "run-2", history_days=7),
    )  # a changed window moves the existing index
    assert mongo_db[JOURNAL_COLLECTION].index_information()[TTL_INDEX]["expireAfterSeconds"] == 7 * 86400


def test_a_concurrent_change_after_the_run_is_a_reported_conflict_not_overwritten(seeded: Database) -> None:
    before = docs(seeded)
    run(seeded, automation(single=CASES["single Change"][0]["single"]), journal_of(seeded))
    seeded.docs.update_one({"_id": 1}, {"$set": {"meta.by": "a person"}})

    reports, conflicts = revert(seeded, dry_run=True)
    assert (reports["Journaled"].restored, reports["Journaled"].conflicts) == (2, 1)
    reports, conflicts = revert(seeded)
    assert (reports["Journaled"].restored, reports["Journaled"].conflicts) == (2, 1)
    assert conflicts == [
        "conflicts, left as they are (Journaled, docs): _id 1: meta.by is now 'a person', the automation wrote 'auto'"
    ]
    now = docs(seeded)
    assert now[1]["meta"] == {"by": "a person", "old": 1}
    assert {i: now[i] for i in (2, 3, 4)} == {i: before[i] for i in (2, 3, 4)}


def test_a_revert_is_journaled_and_can_itself_be_reverted(seeded: Database) -> None:
    run(seeded, automation(**CASES["array Add"][0]), journal_of(seeded))
    changed = docs(seeded)
    revert(seeded)
    restoring = list(seeded[JOURNAL_COLLECTION].find({"rootRunId": "revert-1"}))
    assert [page["revertOf"] for page in restoring] == ["run-1"]
    assert sorted(entries(seeded, rootRunId="revert-1")) == [1, 2, 3]

    reports, _ = revert(seeded, "revert-1")  # undo the undo
    assert reports["Journaled"].restored == 3 and docs(seeded) == changed


@pytest.mark.parametrize(
    ("filters", "merged"),
    [
        (
            [{"_id": {"$in": [1, 2]}}, {"status": {"$eq": "Open"}}, {"status": "Open"}],
            {"_id": {"$in": [1, 2]}, "status": {"$eq": "Open"}},
        ),
        (
            [{"notes": {"$type": "array"}}, {"notes": {"$not": {"$elemMatch": {"a": 1}}}}],
            {"notes": {"$type": "array", "$not": {"$elemMatch": {"a": 1}}}},
        ),
        ([{"status": "Open"}, {"status": "Closed"}], {"status": "Open", "$and": [{"status": "Closed"}]}),
        ([{"_id": 1}, {"$or": [{"a": 1}, {"b": 1}]}], {"_id": 1, "$and": [{"$or": [{"a": 1}, {"b": 1}]}]}),
        ([{"$and": [{"a": 1}, {"b": 2}]}, {"a": {"$gt": 0}}], {"a": {"$eq": 1, "$gt": 0}, "b": 2}),
    ],
)
def test_write_filters_are_merged_flat_where_they_do_not_contradict(
    filters: list[dict[str, Any]], merged: dict[str, Any]
) -> None:
    assert conjoin(filters) == merged


def test_a_document_changed_between_read_and_write_is_read_and_written_again_while_it_matches(
    seeded: Database,
) -> None:
    """What ``update_many`` does to a document another writer changes under it: the write applies to the document as
    it is when written, and the journal records the value it replaced then."""
    rule = automation(
        "{ status: { $in: ['Open', 'Reopened'] } }",
        single=[{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}],
    )
    plan = build_plan(rule, STAMP)
    shape = UpdateShape(plan)
    query = {"status": {"$in": ["Open", "Reopened"]}}
    read = list(seeded.docs.find(plan.filter(query), shape.projection))
    seeded.docs.update_one({"_id": 2}, {"$set": {"status": "Reopened"}})  # still matches: written again
    seeded.docs.update_one({"_id": 3}, {"$set": {"status": "Escalated"}})  # no longer matches: left alone

    outcome, retried = journal_of(seeded).apply_batch_until_written(seeded.docs, shape, plan, read, [query])

    assert (outcome.written, outcome.skipped, outcome.refused, retried) == (2, [], [], 2)
    assert [doc["status"] for doc in seeded.docs.find().sort("_id", 1)] == ["Closed", "Closed", "Escalated", "Closed"]
    assert entries(seeded) == {
        1: [{"kind": "set", "path": "status", "before": "Open", "after": "Closed"}],
        2: [{"kind": "set", "path": "status", "before": "Reopened", "after": "Closed"}],
    }


class _Interferer(monitoring.CommandListener):
    """Another writer that changes one document's status just before each journaled write reaches the server."""

    def __init__(self, uri: str, database: str, document_id: Any) -> None:
        self.other = pymongo.MongoClient(uri)
        self.collection = self.other[database].docs
        self.document_id = document_id
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == "docs":
            self.count += 1
            self.collection.update_one({"_id": self.document_id}, {"$set": {"status": f"Open {self.count}"}})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_document_another_writer_keeps_changing_is_named_and_fails_the_automation(
    mongo_uri: str, seeded: Database
) -> None:
    """Never a green run with a silent skip: after ``WRITE_TRIES`` the document is counted and named, every other
    document is written and journaled, and the contended one keeps the other writer's value."""
    interferer = _Interferer(mongo_uri, seeded.name, 2)
    client = pymongo.MongoClient(mongo_uri, event_listeners=[interferer])
    try:
        with pytest.raises(DocumentWriteErrors) as caught:
            run(
                client[seeded.name],
                automation(
                    "{ status: { $ne: 'Closed' } }",
                    single=[{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}],
                ),
                journal_of(seeded),
            )
    finally:
        client.close()
        interferer.other.close()
    result = caught.value.result
    assert (result.matched, result.modified, result.retried, result.contended) == (3, 2, 1, 1)
    assert "1 document(s) that still match were not written because another writer changed them" in str(caught.value)
    assert "_id 2" in str(caught.value) and caught.value.failed == 0
    assert [doc["status"] for doc in seeded.docs.find().sort("_id", 1)] == [
        "Closed",
        f"Open {interferer.count}",
        "Closed",
        "Closed",
    ]
    assert sorted(entries(seeded)) == [1, 3]
