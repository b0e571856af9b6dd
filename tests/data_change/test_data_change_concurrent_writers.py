"""A cadence run while the application keeps writing the same fields (Dagster in-process, SecantusDB or the
``real_mongo`` tier): every automation changes every document it selects, as one ``update_many`` would, none is
skipped, the journal records exactly what each write replaced, and an undo restores every document nobody touched
since while leaving the others' values alone.

The application is played by writer threads, each with its own client, bounded in time: one toggles ``status``
between ``Open`` and ``Reopened`` on documents not closed yet (find and pipeline automations close them), one pushes
notes onto the arrays an element update, a push and a pull work on.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pymongo
from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable
from pymongo.database import Database

from intervalprocessing_dagster.data_change.journal import JOURNAL_COLLECTION, WRITTEN, ChangeJournal
from intervalprocessing_dagster.data_change.revert import revert_run
from intervalprocessing_dagster.runs.clock import run_stamp_tags
from tests.data_change.test_data_change_cadence_run import (
    hourly_data_change_job,
    summary_line,
)

TICK = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)
CLOSING = 1000  # documents the find automation closes (kind a)
PIPELINE = 200  # documents the pipeline automation closes (kind c)
ARRAYS = 200  # documents whose arrays three automations change (kind b)
SEEDED_NOTES = [{"text": "first", "reviewed": "no"}, {"text": "second", "reviewed": "yes"}]
SEEDED_TAGS = [{"name": "keep"}, {"name": "old"}, {"name": "keep too"}]
WRITERS_FOR_AT_MOST = 120.0  # seconds: the writers stop by themselves even if the test does not stop them


def config(name: str, query: str, *, single: list[dict[str, Any]] = (), array: list[dict[str, Any]] = ()) -> dict:
    return {
        "name": name,
        "query": query,
        "collectionName": "cases",
        "isActive": True,
        "runCadence": "Hourly",
        "singleFieldUpdateElements": list(single),
        "arrayObjectFieldUpdateElements": list(array),
    }


CLOSE = [{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}]
AUTOMATIONS = [
    config("Close A", "{ kind: 'a' }", single=CLOSE),
    config("Close C by pipeline", "aggregate([{ $match: { kind: 'c' } }, { $limit: 100000 }])", single=CLOSE),
    config(
        "Drop old tags",
        "{ kind: 'b' }",
        array=[{"arrayProperty": "tags", "matchingPropertyName": "name", "updateType": "Delete", "newValue": "old"}],
    ),
    config(
        "Note B",
        "{ kind: 'b' }",
        array=[{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "auto"}],
    ),
    config(
        "Review B",
        "{ kind: 'b' }",
        array=[
            {"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Change", "newValue": "done"}
        ],
    ),
]


class Writers:
    """The application's writes during the run; ``pushed`` keeps, per document, what it appended to each array."""

    def __init__(self, uri: str, database: str) -> None:
        self.client = pymongo.MongoClient(uri, tz_aware=True)
        self.collection = self.client[database].cases
        self.stop = threading.Event()
        self.pushed: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
        self.writes = 0
        self.errors: list[BaseException] = []

    def toggle_status(self) -> None:
        rng = random.Random(1)
        ids = list(range(CLOSING)) + list(range(2 * CLOSING, 2 * CLOSING + PIPELINE))
        while not self.stop.is_set():
            self.collection.update_one(
                {"_id": rng.choice(ids), "status": {"$ne": "Closed"}},
                [{"$set": {"status": {"$cond": [{"$eq": ["$status", "Open"]}, "Reopened", "Open"]}}}],
            )
            self.writes += 1

    def push_notes(self) -> None:
        rng = random.Random(2)
        count = 0
        while not self.stop.is_set():
            document_id, array = CLOSING + rng.randrange(ARRAYS), rng.choice(["notes", "tags"])
            count += 1
            element = {"text": f"app {count}", "reviewed": "no"} if array == "notes" else {"name": f"app {count}"}
            self.collection.update_one({"_id": document_id}, {"$push": {array: element}})
            self.pushed[(document_id, array)].append(element)
            self.writes += 1

    @contextmanager
    def running(self) -> Iterator[None]:
        threads = [
            threading.Thread(target=self._bounded(work), daemon=True) for work in (self.toggle_status, self.push_notes)
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=30)
            self.client.close()
        assert not self.errors, self.errors

    def _bounded(self, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            timer = threading.Timer(WRITERS_FOR_AT_MOST, self.stop.set)
            timer.start()
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - reported by running()
                self.errors.append(exc)
            finally:
                timer.cancel()

        return run


def seed(db: Database) -> None:
    db.cases.insert_many(
        [{"_id": n, "kind": "a", "status": "Open"} for n in range(CLOSING)]
        + [
            {
                "_id": CLOSING + n,
                "kind": "b",
                "notes": [dict(note) for note in SEEDED_NOTES],
                "tags": [dict(tag) for tag in SEEDED_TAGS],
            }
            for n in range(ARRAYS)
        ]
        + [{"_id": 2 * CLOSING + n, "kind": "c", "status": "Open"} for n in range(PIPELINE)]
    )
    db.dataupdateconfigs.insert_many([dict(automation) for automation in AUTOMATIONS])


def step_counts(result: Any) -> dict[str, dict[str, int]]:
    """matched / modified / retried / contended of each automation step, by automation name."""
    counts = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_OUTPUT and event.step_key.startswith("apply_automation["):
            metadata = event.event_specific_data.metadata
            counts[metadata["automation"].value] = {
                key: metadata[key].value for key in ("matched", "modified", "retried", "contended")
            }
    return counts


def journal_entries(db: Database, run_id: str) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Each automation's journaled changes by document; a document journaled twice by one automation fails."""
    found: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(dict)
    for page in db[JOURNAL_COLLECTION].find({"rootRunId": run_id}):
        assert page["state"] == WRITTEN
        for entry in page["documents"]:
            assert not entry.get("unconfirmed"), entry
            assert entry["_id"] not in found[page["automation"]], f"{entry['_id']} journaled twice"
            found[page["automation"]][entry["_id"]] = entry["changes"]
    return found


def test_a_cadence_changes_every_selected_document_while_the_application_writes_the_same_fields(
    mongo_uri: str, cadence_db: Database, instance: DagsterInstance
) -> None:
    mongo_db = cadence_db
    seed(mongo_db)
    writers = Writers(mongo_uri, mongo_db.name)
    with writers.running():
        time.sleep(0.2)  # the writers are busy before the run reads anything
        result = execute_job(reconstructable(hourly_data_change_job), instance=instance, tags=run_stamp_tags(TICK))
    assert result.success
    assert writers.writes > 0

    # As update_many: every selected document changed, none skipped, nothing left contended.
    counts = step_counts(result)
    assert {name: (c["matched"], c["modified"], c["contended"]) for name, c in counts.items()} == {
        "Close A": (CLOSING, CLOSING, 0),
        "Close C by pipeline": (PIPELINE, PIPELINE, 0),
        "Drop old tags": (ARRAYS, ARRAYS, 0),
        "Note B": (ARRAYS, ARRAYS, 0),
        "Review B": (ARRAYS, ARRAYS, 0),
    }
    statuses = {doc["_id"]: doc["status"] for doc in mongo_db.cases.find({"kind": {"$in": ["a", "c"]}})}
    assert set(statuses.values()) == {"Closed"}
    for doc in mongo_db.cases.find({"kind": "b"}):
        assert {"name": "old"} not in doc["tags"]
        assert [note["text"] for note in doc["notes"]].count("auto") == 1
        assert doc["notes"][0]["reviewed"] == doc["notes"][1]["reviewed"] == "done"
    retried = sum(c["retried"] for c in counts.values())
    assert summary_line(instance, result.run_id) == (
        f"automations 5 applied, {CLOSING + PIPELINE + 3 * ARRAYS} matched, {CLOSING + PIPELINE + 3 * ARRAYS} "
        "modified, " + (f"{retried} retried (changed by another writer meanwhile), " if retried else "") + "0 failed"
    )

    # The journal recorded exactly what each write replaced: the status each document held when it was closed.
    recorded = journal_entries(mongo_db, result.run_id)
    assert {name: len(documents) for name, documents in recorded.items()} == {
        name: counts[name]["modified"] for name in counts
    }
    for name in ("Close A", "Close C by pipeline"):
        for changes in recorded[name].values():
            assert [(c["path"], c["after"]) for c in changes] == [("status", "Closed")]
            assert changes[0]["before"] in ("Open", "Reopened")

    # Someone changes a few documents after the run; the undo leaves those alone and restores every other one.
    touched_after = list(range(0, CLOSING, 100))
    mongo_db.cases.update_many({"_id": {"$in": touched_after}}, {"$set": {"status": "Escalated"}})
    mongo_db.cases.update_one({"_id": CLOSING}, {"$push": {"notes": {"text": "after the run"}}})
    conflicts: list[str] = []
    reports = revert_run(
        mongo_db,
        result.run_id,
        [],
        dry_run=False,
        sample_size=0,
        log=conflicts.append,
        journal_for=lambda page: ChangeJournal(
            mongo_db,
            run_id="revert",
            root_run_id="revert",
            stamp=TICK,
            automation=page["automation"],
            config_id=page["configId"],
            config_hash=page["configHash"],
            history_days=90,
            revert_of=result.run_id,
        ),
    )
    assert reports["Close A"].conflicts == len(touched_after)
    assert reports["Close A"].restored == CLOSING - len(touched_after)
    assert reports["Close C by pipeline"].restored == PIPELINE
    for name in ("Close A", "Close C by pipeline"):
        for document_id, changes in recorded[name].items():
            expected = "Escalated" if document_id in touched_after else changes[0]["before"]
            assert statuses.get(document_id) == "Closed"
            assert mongo_db.cases.find_one({"_id": document_id})["status"] == expected, document_id
    for doc in mongo_db.cases.find({"kind": "b"}):
        added_after = [{"text": "after the run"}] if doc["_id"] == CLOSING else []
        assert doc["notes"] == SEEDED_NOTES + writers.pushed[(doc["_id"], "notes")] + added_after, doc["_id"]
        assert doc["tags"] == SEEDED_TAGS + writers.pushed[(doc["_id"], "tags")], doc["_id"]
