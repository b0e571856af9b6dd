"""Fixtures for the file-generation tests: the old config documents, awkward report data, and a job runner."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from dagster import Definitions, ExecuteInProcessResult
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import FILE_PROCESSING_CONFIG, STORED_QUERIES
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.reports.definitions import report_definitions
from intervalprocessing_dagster.reports.delivery import LocalReportStore, ReportStore
from intervalprocessing_dagster.runs.clock import RunClock, run_stamp_tags
from intervalprocessing_dagster.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")
# A Friday 03:00 in New York: the daily schedule's tick, on a day the weekly reports are due.
FRIDAY_TICK = datetime(2024, 3, 15, 3, 0, 0, tzinfo=NEW_YORK)


@pytest.fixture()
def config_db(mongo_db: Database) -> Database:
    """A database holding the old file-generation config, exactly as the old databaseScript.js stored it."""
    mongo_db.fileprocessingconfigs.insert_one(deepcopy(FILE_PROCESSING_CONFIG))
    mongo_db.storedqueries.insert_many(deepcopy(STORED_QUERIES))
    return mongo_db


@pytest.fixture()
def report_db(config_db: Database) -> Database:
    """The old config plus report data full of awkward cases (see the data below)."""
    seed_report_data(config_db)
    return config_db


@pytest.fixture()
def reports_dir(tmp_path: Path) -> Path:
    return tmp_path / "reports"


@pytest.fixture()
def run_reports(mongo: MongoResource, reports_dir: Path) -> Callable[..., ExecuteInProcessResult]:
    """Run ``file_generation_job`` in process, stamped with ``tick`` (and ``tags``), writing to ``store`` (default:
    reports_dir)."""

    def run(
        tick: datetime = FRIDAY_TICK,
        *,
        store: ReportStore | None = None,
        timezone: str = "America/New_York",
        run_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> ExecuteInProcessResult:
        resources = {
            "mongo": mongo,
            "clock": RunClock(timezone=timezone),
            "report_store": store or LocalReportStore(directory=str(reports_dir)),
        }
        defs = Definitions.merge(report_definitions(Settings.from_env({})), Definitions(resources=resources))
        job = defs.resolve_job_def("file_generation_job")
        return job.execute_in_process(
            run_config=run_config or {}, tags={**run_stamp_tags(tick), **(tags or {})}, raise_on_error=False
        )

    return run


def _oid(n: int) -> ObjectId:
    return ObjectId(f"{n:024x}")


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("UTC"))


# Documents in the old data shapes (spec §2.6). Inserted in *descending* _id order, so a file in _id order proves
# the sort. Awkward cases: missing and null fields, a pipe and a line break in values, an empty and a missing
# address2, an MRR without provider_id and one whose provider does not exist, an exact and a near-miss
# "Transparency Health", an audit that already has the weekly constant's field, a date late in the UTC day.
AUDITS: list[dict[str, Any]] = [
    {
        "_id": _oid(0xA1),
        "auditId": 10000,
        "claimNumber": "123456789",
        "status": "Pending Review",
        "organization": "HealthCare 123",
        "date": _utc(2024, 2, 24),
        "amount": 1250000,
    },
    {
        "_id": _oid(0xA2),
        "auditId": 10001,
        "claimNumber": "223456789",
        "status": "Approved",
        "date": _utc(2024, 2, 26),
        "organization": None,
    },  # no amount, null organization
    {
        "_id": _oid(0xA3),
        "auditId": 10002,
        "claimNumber": None,
        "status": "Pending Review",
        "organization": "Acme | Partners",
        "amount": 5,
    },  # null claim, no date, a pipe in a value
    {
        "_id": _oid(0xA4),
        "auditId": 10003,
        "claimNumber": "42345\n6789",
        "status": "Approved",
        "organization": "Transparency Health",
        "date": _utc(2024, 3, 2, 4, 30),
        "amount": 123456789012,
    },
    {
        "_id": _oid(0xA5),
        "auditId": 10004,
        "claimNumber": "523456789",
        "status": "Closed",
        "organization": "HealthCare 123",
        "date": _utc(2024, 1, 15),
        "amount": 4500,
    },
    {
        "_id": _oid(0xA6),
        "auditId": 10005,
        "claimNumber": "623456789",
        "status": "In Progress",
        "organization": "Blue Ridge Payers",
        "date": _utc(2024, 3, 8),
        "amount": 700,
        "resourceCode": "OLD-CODE",
        "externalId": "old",
    },  # the old weekly processor threw on these
]

PROVIDERS: list[dict[str, Any]] = [
    {
        "_id": _oid(0xB1),
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
        "_id": _oid(0xB2),
        "number": "P-1003",
        "name": "Smoky Hills Hospital",
        "address": {"address1": "789 Boulevard St", "address2": "", "city": "Knoxville", "state": "TN", "zip": "37902"},
    },
    {
        "_id": _oid(0xB3),
        "number": "P-1004",
        "name": "Smith | Jones Clinic",
        "address": {"address1": "  12 Lake Dr ", "city": "Chattanooga", "state": "TN", "zip": None},
    },
    {"_id": _oid(0xB4), "number": None, "name": "No Address Practice"},
]

MEDICAL_RECORD_REQUESTS: list[dict[str, Any]] = [
    {
        "_id": _oid(0xC1),
        "mrrId": "MR100000",
        "claimNumber": "123456789",
        "status": "Requested",
        "organization": "Transparency Health",
        "date": _utc(2024, 2, 20),
        "provider_id": _oid(0xB1),
    },
    {
        "_id": _oid(0xC2),
        "mrrId": "MR100001",
        "claimNumber": "223456789",
        "status": "Received",
        "organization": "HealthCare 123",
        "date": _utc(2024, 2, 22),
        "provider_id": _oid(0xB2),
    },
    {
        "_id": _oid(0xC3),
        "mrrId": "MR100002",
        "claimNumber": "323456789",
        "status": "Requested",
        "organization": "Blue Ridge Payers",
        "date": _utc(2024, 3, 2),
    },  # no provider_id
    {
        "_id": _oid(0xC4),
        "mrrId": "MR100003",
        "claimNumber": "423456789",
        "status": "Overdue",
        "organization": "Transparency Health Inc",
        "date": _utc(2024, 1, 30),
        "provider_id": _oid(0xBF),
    },  # dangling
    {
        "_id": _oid(0xC5),
        "mrrId": "MR100004",
        "claimNumber": "523456789",
        "status": "Closed",
        "organization": "Transparency Health",
        "date": _utc(2024, 1, 10),
        "provider_id": _oid(0xB2),
    },
    {
        "_id": _oid(0xC6),
        "mrrId": "MR100005",
        "claimNumber": "623456789",
        "status": None,
        "organization": "HealthCare 123",
        "provider_id": _oid(0xB3),
    },  # null status, no date
    {
        "_id": _oid(0xC7),
        "mrrId": "MR100006",
        "claimNumber": "723456789",
        "status": "Requested",
        "organization": "Blue Ridge Payers",
        "date": _utc(2024, 3, 9),
        "provider_id": _oid(0xB4),
    },
]


def seed_report_data(db: Database) -> None:
    for name, documents in (
        ("audits", AUDITS),
        ("providers", PROVIDERS),
        ("medicalrecordrequests", MEDICAL_RECORD_REQUESTS),
    ):
        db[name].insert_many(deepcopy(list(reversed(documents))))
