"""The demo data set seeded into the embedded server on its first start.

It is written in the shapes the old system's users already have (spec §2.1, §2.2, §2.6, §3.1): the four stored
queries and the file-processing config exactly as the old ``databaseScript.js`` stored them (shell-style query
strings included), and ``dataupdateconfigs`` automations that exercise every update type at every cadence, so a
new user sees every job do something real. Values are fixed so the demo reports are the same on every machine.

Each automation's query also says "not done yet" (``recoveryStage`` absent, no escalation note yet, a note still
unread, ...), as a real rule should: the first run changes the data and every later run matches nothing, so the
hourly job does not push the same note onto the same audits every hour. Two automations push a note (escalation
and overdue follow-up), once per document.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo.database import Database

PROVIDER_IDS = [ObjectId(f"65d9f0a1b2c3d4e5f6a7b8{n:02x}") for n in range(4)]

PROVIDERS: list[dict[str, Any]] = [
    {
        "_id": PROVIDER_IDS[0],
        "number": "P-1001",
        "name": "Mountain View Clinic",
        "address": {
            "address1": "123 Main St",
            "address2": "Suite 200",
            "city": "Nashville",
            "state": "TN",
            "zip": "37201",
        },
    },
    {
        "_id": PROVIDER_IDS[1],
        "number": "P-1002",
        "name": "Riverbend Medical Group",
        "address": {"address1": "456 River Rd", "address2": "", "city": "Memphis", "state": "TN", "zip": "38103"},
    },
    {
        "_id": PROVIDER_IDS[2],
        "number": "P-1003",
        "name": "Smoky Hills Hospital",
        "address": {"address1": "789 Boulevard St", "address2": "", "city": "Knoxville", "state": "TN", "zip": "37902"},
    },
    {
        "_id": PROVIDER_IDS[3],
        "number": "P-1004",
        "name": "Lakeside Family Practice",
        "address": {"address1": "12 Lake Dr", "city": "Chattanooga", "state": "TN"},
    },
]


def _day(month: int, day: int) -> datetime:
    return datetime(2024, month, day, tzinfo=UTC)


_AUDIT_ROWS = [
    # auditId, claimNumber, status, organization, date, amount in cents
    (10000, "123456789", "Pending Review", "HealthCare 123", _day(2, 24), 1250000),
    (10001, "223456789", "Approved", "HealthCare 123", _day(2, 26), 98765),
    (10002, "323456789", "Closed", "Transparency Health", _day(1, 15), 4500),
    (10003, "423456789", "In Progress", "Transparency Health", _day(3, 1), 120000),
    (10004, "523456789", "Pending Review", "Blue Ridge Payers", _day(3, 5), 33333),
    (10005, "623456789", "Approved", "Blue Ridge Payers", _day(3, 8), 700),
    (10006, "723456789", "Pending Review", "HealthCare 123", _day(3, 11), 5000000),
    (10007, "823456789", "Closed", "HealthCare 123", _day(1, 2), 15000),
]

AUDITS: list[dict[str, Any]] = [
    {
        "auditId": audit_id,
        "claimNumber": claim,
        "status": status,
        "organization": org,
        "date": date,
        "amount": amount,
        "notes": [{"text": "Audit opened", "source": "seed", "date": date}],
        **({"priority": "Low"} if audit_id == 10002 else {}),
    }  # a stale priority for "Drop Priority" to remove
    for audit_id, claim, status, org, date, amount in _AUDIT_ROWS
]

_MRR_ROWS = [
    # mrrId, claimNumber, status, organization, date, provider index (None: no provider on file)
    ("MR100000", "123456789", "Requested", "HealthCare 123", _day(2, 20), 0),
    ("MR100001", "223456789", "Received", "Transparency Health", _day(2, 22), 1),
    ("MR100002", "323456789", "Closed", "Transparency Health", _day(1, 10), 2),
    ("MR100003", "423456789", "Requested", "Blue Ridge Payers", _day(3, 2), 2),
    ("MR100004", "523456789", "Overdue", "HealthCare 123", _day(1, 30), 3),
    ("MR100005", "623456789", "Requested", "Blue Ridge Payers", _day(3, 9), None),
]

MEDICAL_RECORD_REQUESTS: list[dict[str, Any]] = [
    {
        "mrrId": mrr_id,
        "claimNumber": claim,
        "status": status,
        "organization": org,
        "date": date,
        **({"provider_id": PROVIDER_IDS[provider]} if provider is not None else {}),
        "internalNotes": [{"note": "Request created", "source": "seed", "date": date, "reviewed": "no"}],
    }
    for mrr_id, claim, status, org, date, provider in _MRR_ROWS
]

# Exactly as the old databaseScript.js stored them (spec §2.2).
STORED_QUERIES: list[dict[str, Any]] = [
    {"name": "dailyAuditInventory", "query": "{ 'status' : { $in : [ 'Pending Review', 'Approved' ] } }"},
    {"name": "weeklyAuditInventory", "query": "{ 'status' : { $ne : 'Closed' } }"},
    {
        "name": "dailyActiveMRRInventory",
        "query": "aggregate([{$match:{'status':{$ne:'Closed'}}},{$lookup:{from:'providers',localField:'provider_id',"
        "foreignField:'_id',as:'provider'}},{$unwind:'$provider'}])",
    },
    {
        "name": "weeklyMRRInventory",
        "query": "aggregate([{$lookup:{from:'providers',localField:'provider_id',foreignField:'_id',as:'provider'}},"
        "{$unwind:'$provider'}])",
    },
]


def _process(name: str, query: str, collection: str, base: str) -> dict[str, Any]:
    return {
        "name": name,
        "configurations": {
            "queryName": query,
            "collectionName": collection,
            "projection": "{}",
            "fileNameBase": base,
            "writerTypeKey": f"{base}FileWriter",
        },
    }


# Exactly as the old databaseScript.js stored it (spec §2.1): one document, one entry per processor class.
FILE_PROCESSING_CONFIG: dict[str, Any] = {
    "processes": [
        _process("DailyAuditInventoryProcessor", "dailyAuditInventory", "audits", "DailyAuditInventory"),
        _process("WeeklyAuditInventoryProcessor", "weeklyAuditInventory", "audits", "WeeklyAuditInventory"),
        _process(
            "DailyActiveMRRInventoryProcessor",
            "dailyActiveMRRInventory",
            "medicalrecordrequests",
            "DailyActiveMRRInventory",
        ),
        _process("WeeklyMRRInventoryProcessor", "weeklyMRRInventory", "medicalrecordrequests", "WeeklyMRRInventory"),
    ]
}


def _automation(
    name: str,
    cadence: str,
    collection: str,
    query: str,
    *,
    single: list | None = None,
    array: list | None = None,
    active: bool = True,
) -> dict[str, Any]:
    return {
        "name": name,
        "runCadence": cadence,
        "collectionName": collection,
        "query": query,
        "isActive": active,
        "singleFieldUpdateElements": single or [],
        "arrayObjectFieldUpdateElements": array or [],
    }


# Old-schema automations (spec §3.1), covering Add/Change/Remove/Delete for single fields and arrays at every cadence.
DATA_UPDATE_CONFIGS: list[dict[str, Any]] = [
    _automation(
        "Mark Approved Audits Ready For Recovery",
        "Nightly",
        "audits",
        "{ 'status' : 'Approved', 'recoveryStage' : { $exists : false } }",
        single=[
            {"elementName": "recoveryStage", "updateType": "Add", "elementValue": "Ready"},
            {"elementName": "reviewedByAutomation", "updateType": "Change", "elementValue": True},
        ],
    ),
    _automation(
        "Clear Closed Audit Assignments",
        "Nightly",
        "audits",
        "{ status: 'Closed', organization: { $ne: '' } }",
        single=[{"elementName": "organization", "updateType": "Remove", "elementValue": ""}],
    ),
    _automation(
        "Note Overdue Record Requests",
        "Hourly",
        "medicalrecordrequests",
        "aggregate([{$match:{status:'Overdue',"
        "'internalNotes.note':{$ne:'Still overdue: follow up with the provider'}}},"
        "{$project:{_id:1}}])",
        array=[
            {
                "arrayProperty": "internalNotes",
                "matchingPropertyName": "note",
                "updateType": "Add",
                "newValue": "Still overdue: follow up with the provider",
            }
        ],
    ),
    _automation(
        "Escalate Pending Review Audits",
        "Hourly",
        "audits",
        "{ 'status' : 'Pending Review', 'amount' : { $gte : NumberInt(1000000) }, 'priority' : { $ne : 'High' } }",
        single=[{"elementName": "priority", "updateType": "Add", "elementValue": "High"}],
        array=[
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "text",
                "updateType": "Add",
                "newValue": "Escalated: high-value audit pending review",
            }
        ],
    ),
    _automation(
        "Mark Received Requests Reviewed",
        "HalfHourly",
        "medicalrecordrequests",
        "{ status: 'Received', 'internalNotes.reviewed': 'no' }",
        array=[
            {
                "arrayProperty": "internalNotes",
                "matchingPropertyName": "reviewed",
                "updateType": "Change",
                "newValue": "yes",
                "matchingValue": "no",
            }
        ],
    ),
    _automation(
        "Drop Priority From Closed Audits",
        "HalfHourly",
        "audits",
        "{ status: 'Closed', priority: { $exists: true } }",
        single=[{"elementName": "priority", "updateType": "Delete", "elementValue": ""}],
    ),
    _automation(
        "Blank Notes On Closed Requests",
        "QuarterHourly",
        "medicalrecordrequests",
        "{ status: 'Closed', internalNotes: { $elemMatch: { note: { $ne: '' } } } }",
        array=[
            {"arrayProperty": "internalNotes", "matchingPropertyName": "note", "updateType": "Remove", "newValue": ""}
        ],
    ),
    _automation(
        "Remove Seed Notes From Closed Audits",
        "QuarterHourly",
        "audits",
        "{ status: 'Closed', 'notes.text': 'Audit opened' }",
        array=[
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "text",
                "updateType": "Delete",
                "newValue": "Audit opened",
            }
        ],
    ),
    _automation(
        "Retired: Reopen Closed Audits",
        "QuarterHourly",
        "audits",
        "{ status: 'Closed' }",
        single=[{"elementName": "status", "updateType": "Change", "elementValue": "Pending Review"}],
        active=False,
    ),
]


def seed_demo_data(db: Database) -> None:
    """Insert the demo data set into an empty database (copies: pymongo adds ``_id`` to what it inserts)."""
    db.providers.insert_many(deepcopy(PROVIDERS))
    db.audits.insert_many(deepcopy(AUDITS))
    db.medicalrecordrequests.insert_many(deepcopy(MEDICAL_RECORD_REQUESTS))
    db.storedqueries.insert_many(deepcopy(STORED_QUERIES))
    db.fileprocessingconfigs.insert_one(deepcopy(FILE_PROCESSING_CONFIG))
    db.dataupdateconfigs.insert_many(deepcopy(DATA_UPDATE_CONFIGS))
