"""The cadence ledger: one entry per automation, cadence and run stamp, so "exactly once" holds across every run of a
stamp. Its collection keeps the old name ``automationruns`` (existing deployments have it).

The loader enters every automation it loaded ``pending`` (:func:`record_loaded`); the step claims its entry
``running`` (:func:`claim`; one that already ``succeeded`` for the stamp is not applied again) and ends it
``succeeded``, ``failed`` or ``withdrawn`` (its document was deleted, deactivated or moved after loading); an entry
not terminal after a run names an automation that did not run (:func:`unfinished_entries`). Entries expire
``AUTOMATION_HISTORY_DAYS`` after they were last written. Fields, and why ``withdrawn`` is an outcome of its own:
docs/decisions/automation-ledger.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from intervalprocessing_dagster.data_change.execute import ExecutionResult
from intervalprocessing_dagster.data_change.plan import push_date
from intervalprocessing_dagster.data_change.rules import config_hash
from intervalprocessing_dagster.mongo.indexes import Lookup, ensure_history_indexes

LEDGER_COLLECTION = "automationruns"

PENDING = "pending"
RUNNING = "running"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
FAILED = "failed"
WITHDRAWN = "withdrawn"
TERMINAL = (SUCCEEDED, FAILED, WITHDRAWN)

TTL_INDEX = "recordedAt_ttl"
LATEST_RUN_INDEX = "configId_stamp"
_DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class StampKey:
    """What a record is for: one cadence's run stamp, live or dry run. Every run of a stamp shares it."""

    cadence: str
    stamp: datetime
    dry_run: bool

    @property
    def prefix(self) -> str:
        """The start of the ``_id`` of every record of this stamp (so a range on ``_id`` finds them all)."""
        moment = push_date(self.stamp).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return f"{self.cadence}|{moment}|{'dry' if self.dry_run else 'live'}|"

    def record_id(self, config_id: Any) -> str:
        """The record ``_id`` of the automation whose config ``_id`` is ``config_id`` (any BSON value, written as
        canonical extended JSON so an ObjectId and a string of the same hex never share a record)."""
        return self.prefix + json_util.dumps(config_id, json_options=CANONICAL_JSON_OPTIONS, separators=(",", ":"))


@dataclass(frozen=True)
class LedgerEntry:
    """One write of an entry by an automation's step; ``result`` is None when nothing (countable) was done."""

    key: StampKey
    run_id: str
    mapping_key: str
    automation: str
    config: Mapping[str, Any]
    started_at: datetime
    status: str
    attempt: int
    result: ExecutionResult | None = None
    error: str | None = None
    reason: str | None = None

    @property
    def record_id(self) -> str:
        return self.key.record_id(self.config.get("_id"))


@dataclass(frozen=True)
class LoadedAutomation:
    """One automation as the loader read it, with the mapping key of its step."""

    mapping_key: str
    name: str
    config: Mapping[str, Any]


def ensure_ledger_indexes(database: Database, history_days: int) -> list[str]:
    """The ledger's indexes, ensured once per run by the loader; a warning for each the server refused.

    * the TTL index on ``recordedAt``: a record is deleted ``history_days`` after it was last written (a changed
      window is applied to the existing index with ``collMod``);
    * the unique ``(runId, mappingKey)`` index of the old layout (one record per Dagster run) stays: it still holds
      (a run writes one record per mapping key) and finds a run's records quickly;
    * ``(configId, stamp)``: an automation's latest record, which the hourly check compares its document with
      (``checks.py``: "changed since its last run").

    A refused index costs the history its expiry or a lookup, never the automations their run, so the caller only
    warns.
    """
    lookups = (
        Lookup([("runId", 1), ("mappingKey", 1)], "has no unique run index", unique=True),
        Lookup(
            [("configId", 1), ("stamp", -1)],
            "has no index on configId; an automation's last run is found by a scan",
            name=LATEST_RUN_INDEX,
        ),
    )
    return ensure_history_indexes(
        database[LEDGER_COLLECTION], ttl_field="recordedAt", days=history_days, ttl_name=TTL_INDEX, lookups=lookups
    )


def record_loaded(database: Database, key: StampKey, run_id: str, loaded: Sequence[LoadedAutomation]) -> int:
    """Write a ``pending`` record for each loaded automation that has none for this stamp yet; an existing record,
    terminal or not, is left as it is. Returns how many were new.

    One unordered ``insert_many``: the server refuses the records whose ``_id`` exists (duplicate key), which is the
    point, and inserts the rest; cheaper than an upsert each (about a quarter of the time on SecantusDB).
    """
    if not loaded:
        return 0
    now = datetime.now(UTC)
    records = [
        {
            "_id": key.record_id(automation.config.get("_id")),
            **_identity(key, run_id, automation.mapping_key, automation.name, automation.config, now),
            "runIds": [run_id],
            "status": PENDING,
            "attempts": 0,
            "startedAt": None,
            "finishedAt": None,
            **_outcome(None, None),
        }
        for automation in loaded
    ]
    try:
        return len(database[LEDGER_COLLECTION].insert_many(records, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        refused = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or any(error.get("code") != _DUPLICATE_KEY for error in refused):
            raise
        return int(exc.details.get("nInserted", 0))


def claim(database: Database, record: LedgerEntry) -> dict[str, Any] | None:
    """Mark the record ``running`` for ``record``'s try, unless it already ``succeeded`` for this stamp: then return
    that record (the automation is not to be applied again) and change nothing. A dry run always runs.

    One round trip in the usual case (the loader wrote the record): an update that matches only a record that has not
    succeeded. When it matches nothing, one read says why: succeeded, or no record at all (the loader could not write
    it), which is then created ``running``. The document and its hash are the loader's and the final write's to set.
    """
    collection = database[LEDGER_COLLECTION]
    record_filter: dict[str, Any] = {"_id": record.record_id}
    if not record.key.dry_run:
        record_filter["status"] = {"$ne": SUCCEEDED}
    now = datetime.now(UTC)
    running = {
        "runId": record.run_id,
        "mappingKey": record.mapping_key,
        "automation": record.automation,
        "status": RUNNING,
        "attempts": record.attempt,
        "startedAt": record.started_at,
        "finishedAt": None,
        "recordedAt": now,
        **_outcome(None, None),
    }
    if collection.update_one(record_filter, {"$set": running, "$addToSet": {"runIds": record.run_id}}).matched_count:
        return None
    existing = collection.find_one({"_id": record.record_id})
    if existing is not None and existing.get("status") == SUCCEEDED and not record.key.dry_run:
        return existing
    collection.update_one(
        {"_id": record.record_id},
        {
            "$set": {
                **_identity(record.key, record.run_id, record.mapping_key, record.automation, record.config, now),
                **running,
            },
            "$addToSet": {"runIds": record.run_id},
        },
        upsert=True,
    )
    return None


def write_entry(database: Database, record: LedgerEntry) -> None:
    """Record how ``record``'s try ended (``succeeded``, ``failed``, ``withdrawn`` or ``retrying``) and what it did."""
    finished = datetime.now(UTC)
    database[LEDGER_COLLECTION].update_one(
        {"_id": record.record_id},
        {
            "$set": {
                **_identity(record.key, record.run_id, record.mapping_key, record.automation, record.config, finished),
                "status": record.status,
                "attempts": record.attempt,
                "startedAt": record.started_at,
                "finishedAt": finished,
                **_outcome(record.result, record.error, record.reason),
            },
            "$addToSet": {"runIds": record.run_id},
        },
        upsert=True,
    )


def unfinished_entries(database: Database, key: StampKey) -> list[dict[str, Any]]:
    """The records of ``key``'s stamp that are not terminal: automations loaded for it that have not run (``pending``),
    were cut off (``running``) or are still waiting for a retry (``retrying``); by ``_id`` (the ``_id`` index)."""
    return list(
        database[LEDGER_COLLECTION]
        .find(
            {"_id": {"$gte": key.prefix, "$lt": key.prefix + "\uffff"}, "status": {"$nin": list(TERMINAL)}},
            {"automation": 1, "configId": 1, "mappingKey": 1, "status": 1},
        )
        .sort("_id", 1)
    )


def _identity(
    key: StampKey, run_id: str, mapping_key: str, name: str, config: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "runId": run_id,
        "mappingKey": mapping_key,
        "automation": name,
        "configId": config.get("_id"),
        "cadence": key.cadence,
        "stamp": key.stamp,
        "dryRun": key.dry_run,
        "recordedAt": now,
        "configHash": config_hash(config),
        "config": dict(config),
    }


def _outcome(result: ExecutionResult | None, error: str | None, reason: str | None = None) -> dict[str, Any]:
    return {
        "matched": None if result is None else result.matched,
        "modified": None if result is None else result.modified,
        "batches": None if result is None else result.batches,
        "durationSeconds": None if result is None else round(result.duration_seconds, 3),
        "error": error,
        "reason": reason,
    }
