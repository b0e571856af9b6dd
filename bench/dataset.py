"""The benchmark's data set at size N, in the shapes the old system's users already hold (spec §2.6, §3.1).

Why it is shaped this way:

* ``audits`` holds N documents the find-based automation matches (``Pending Review`` / ``Approved``) plus N/10
  ``Closed`` ones it must skip, so the filter is selective, as it is in production, and "N" is the matched count.
* ``medicalrecordrequests`` holds N requests, every one with a provider and none ``Closed``: the aggregate-based
  automation (the stored ``dailyActiveMRRInventory`` pipeline with its ``$lookup``) matches all N, and the largest
  report (WeeklyMRRInventory) has exactly N rows.
* Every value is present, non-null and free of ``|`` and line breaks, and every address part is non-empty, so the old
  format, the platform's fixed format and the floor's plain ``csv`` writer must agree byte for byte: the benchmark can
  then check that the platform writes the same bytes as the floor instead of trusting it.
* Values are derived from the document number, never from a random generator, so every run measures the same data.

Documents are inserted in unordered chunks so generation at N = 1M takes seconds per 100k, not minutes, and the
generator never holds more than one chunk in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import FILE_PROCESSING_CONFIG, STORED_QUERIES

AUDITS = "audits"
MRRS = "medicalrecordrequests"
PROVIDERS = "providers"
REPORT_PROCESS = "WeeklyMRRInventoryProcessor"
REPORT_HEADER = (
    "Request Id",
    "Claim Number",
    "Provider Number",
    "Provider Name",
    "Provider Full Address",
    "Status",
    "Assigned Organization",
    "Request Date",
)

CADENCE = "Hourly"
"""The cadence the benchmark automations are stored under (any of the four would do)."""

PROVIDER_COUNT = 1000
INSERT_CHUNK = 5000
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_ORGANIZATIONS = ("HealthCare 123", "Transparency Health", "Blue Ridge Payers", "Clear View Health Services")
_MRR_STATUSES = ("Requested", "Received", "Overdue")
_CITIES = (
    ("Nashville", "TN", "37201"),
    ("Memphis", "TN", "38103"),
    ("Knoxville", "TN", "37902"),
    ("Atlanta", "GA", "30301"),
)

FIND_QUERY = "{ 'status' : { $in : [ 'Pending Review', 'Approved' ] } }"
"""The stored ``dailyAuditInventory`` query, verbatim: what a find-based automation looks like in the field."""
FIND_FILTER = {"status": {"$in": ["Pending Review", "Approved"]}}
"""``FIND_QUERY`` as plain pymongo writes it (the floors use no parser)."""

AGGREGATE_QUERY = (
    "aggregate([{$match:{'status':{$ne:'Closed'}}},{$lookup:{from:'providers',localField:'provider_id',"
    "foreignField:'_id',as:'provider'}},{$unwind:'$provider'}])"
)
"""The stored ``dailyActiveMRRInventory`` pipeline: an automation that needs the join cannot be a plain filter."""
AGGREGATE_PIPELINE = [
    {"$match": {"status": {"$ne": "Closed"}}},
    {"$lookup": {"from": PROVIDERS, "localField": "provider_id", "foreignField": "_id", "as": "provider"}},
    {"$unwind": "$provider"},
]
"""``AGGREGATE_QUERY`` as plain pymongo writes it."""

REPORT_PIPELINE = AGGREGATE_PIPELINE[1:]
"""The stored ``weeklyMRRInventory`` query as plain pymongo writes it: the source of the largest report (8 columns,
a join), which the platform reads from ``storedqueries`` like any other report."""

MARK_FIELD = "benchMark"
"""The field every data-change scenario sets, each to its own value, so every scenario modifies all N documents."""


def generate(db: Database, n: int) -> dict[str, int]:
    """Fill an empty database for size ``n``; return the document count per data collection.

    The report configuration (``storedqueries``, ``fileprocessingconfigs``) is the old system's, verbatim, so the
    platform's report runs from the same documents its users have.
    """
    db.storedqueries.insert_many(deepcopy(STORED_QUERIES))
    db.fileprocessingconfigs.insert_one(deepcopy(FILE_PROCESSING_CONFIG))
    provider_ids = [ObjectId.from_datetime(_EPOCH + timedelta(seconds=i)) for i in range(PROVIDER_COUNT)]
    _insert(db, PROVIDERS, (_provider(i, provider_id) for i, provider_id in enumerate(provider_ids)))
    closed = n // 10
    _insert(db, AUDITS, (_audit(i, closed=i >= n) for i in range(n + closed)))
    _insert(db, MRRS, (_mrr(i, provider_ids[i % PROVIDER_COUNT]) for i in range(n)))
    return {PROVIDERS: PROVIDER_COUNT, AUDITS: n + closed, MRRS: n}


def automation(kind: str, mark: str) -> dict[str, Any]:
    """A ``dataupdateconfigs`` document in the old schema that sets ``MARK_FIELD`` to ``mark``.

    ``kind`` is ``"find"`` (audits, the daily audit filter) or ``"aggregate"`` (MRRs, the active-MRR pipeline).
    A single-field ``Change`` is the update every cadence uses most, and its result does not depend on the
    document, which is exactly the case the platform hands to the server.
    """
    query, collection = {"find": (FIND_QUERY, AUDITS), "aggregate": (AGGREGATE_QUERY, MRRS)}[kind]
    return {
        "name": f"Benchmark {kind}-based automation",
        "query": query,
        "collectionName": collection,
        "isActive": True,
        "runCadence": CADENCE,
        "singleFieldUpdateElements": [{"elementName": MARK_FIELD, "updateType": "Change", "elementValue": mark}],
        "arrayObjectFieldUpdateElements": [],
    }


def _insert(db: Database, name: str, documents: Iterator[dict[str, Any]]) -> None:
    while chunk := list(islice(documents, INSERT_CHUNK)):
        db[name].insert_many(chunk, ordered=False)


def _day(i: int) -> datetime:
    return _EPOCH + timedelta(days=i % 365)


def _audit(i: int, *, closed: bool) -> dict[str, Any]:
    status = "Closed" if closed else ("Pending Review", "Approved")[i % 2]
    return {
        "auditId": 10000 + i,
        "claimNumber": f"{100000000 + i}",
        "status": status,
        "organization": _ORGANIZATIONS[i % len(_ORGANIZATIONS)],
        "date": _day(i),
        "amount": 500 + (i * 7919) % 5_000_000,
        "notes": [{"text": "Audit opened", "source": "bench", "date": _day(i)}],
    }


def _provider(i: int, provider_id: ObjectId) -> dict[str, Any]:
    city, state, zip_code = _CITIES[i % len(_CITIES)]
    return {
        "_id": provider_id,
        "number": f"P-{1000 + i}",
        "name": f"Provider Clinic {i}",
        "address": {
            "address1": f"{100 + i} Main St",
            "address2": f"Suite {i % 50 + 1}",
            "city": city,
            "state": state,
            "zip": zip_code,
        },
    }


def _mrr(i: int, provider_id: ObjectId) -> dict[str, Any]:
    return {
        "mrrId": f"MR{100000 + i}",
        "claimNumber": f"{200000000 + i}",
        "status": _MRR_STATUSES[i % len(_MRR_STATUSES)],
        "organization": _ORGANIZATIONS[i % len(_ORGANIZATIONS)],
        "date": _day(i),
        "provider_id": provider_id,
        "internalNotes": [{"note": "Request created", "source": "bench", "date": _day(i), "reviewed": "no"}],
    }


AUTOMATION_GROUP_FIELD = "benchGroup"
"""Which of the ``automations`` family's groups a document is in: automation ``i`` changes exactly group ``i``."""
DOCUMENTS_PER_AUTOMATION = 100


def generate_automations(db: Database, n: int, mark: str) -> dict[str, int]:
    """The ``automations`` family at size ``n``: ``n`` automations of one cadence, each changing its own 100 documents.

    Even-numbered automations are find-based (``audits``), odd ones aggregate-based (``medicalrecordrequests``), so a
    cadence mixes both as users' cadences do: half of the aggregate ones a pipeline of ``$match`` alone, half a
    ``$match`` followed by a ``$lookup`` (a join no filter can express, so the platform streams ``_id`` batches for
    it); each sets ``MARK_FIELD`` to ``mark``, which the check counts. Group
    numbers are indexed so every automation's own query costs the same whatever ``n`` is: what grows with ``n`` is
    the number of automations, not the cost of each.
    """
    for name in (AUDITS, MRRS):
        db[name].create_index(AUTOMATION_GROUP_FIELD)
    for collection in (AUDITS, MRRS):
        groups = [i for i in range(n) if group_collection(i) == collection]
        _insert(
            db,
            collection,
            (
                {AUTOMATION_GROUP_FIELD: group, "status": "Open", "seq": seq}
                for group in groups
                for seq in range(DOCUMENTS_PER_AUTOMATION)
            ),
        )
    if n:
        db.dataupdateconfigs.insert_many([group_automation(i, mark) for i in range(n)])
    return {
        "dataupdateconfigs": n,
        AUDITS: db[AUDITS].estimated_document_count(),
        MRRS: db[MRRS].estimated_document_count(),
    }


def automation_kind(i: int) -> str:
    """``find``, ``aggregate`` (``$match`` stages only) or ``join`` (``$match`` then ``$lookup``), in turn."""
    return ("find", "aggregate", "find", "join")[i % 4]


def group_collection(i: int) -> str:
    return AUDITS if automation_kind(i) == "find" else MRRS


def group_automation(i: int, mark: str) -> dict[str, Any]:
    """Automation ``i`` of the ``automations`` family, in the old schema (cadence ``CADENCE``)."""
    match = f"{{$match:{{{AUTOMATION_GROUP_FIELD}:{i}}}}}"
    query = {
        "find": f"{{ {AUTOMATION_GROUP_FIELD} : {i} }}",
        "aggregate": f"aggregate([{match}])",
        "join": f"aggregate([{match},{{$lookup:{{from:'{PROVIDERS}',localField:'provider_id',foreignField:'_id',"
        "as:'provider'}}])",
    }[automation_kind(i)]
    return {
        "name": f"Bench automation {i:04d}",
        "query": query,
        "collectionName": group_collection(i),
        "isActive": True,
        "runCadence": CADENCE,
        "singleFieldUpdateElements": [{"elementName": MARK_FIELD, "updateType": "Change", "elementValue": mark}],
        "arrayObjectFieldUpdateElements": [],
    }
