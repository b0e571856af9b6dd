"""The run log the old app never kept: one ``automationruns`` document per automation per Dagster run.

Spec §3.4: nothing recorded that an automation ran, so "did last night's automation touch these audits?" had no
answer outside CloudWatch. Each document says which automation ran in which run, for which stamp, with what result;
it is keyed by run id and the step's mapping key, so a retried step updates its own record (``attempts`` counts
the tries) instead of adding a second one, and a re-executed run (a new run id) gets its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from intervalprocessing_dagster.data_change.execute import ExecutionResult

RUNS_COLLECTION = "automationruns"

SUCCEEDED = "succeeded"
FAILED = "failed"
RETRYING = "retrying"


@dataclass(frozen=True)
class RunRecord:
    """Everything one record holds; ``result`` is None when nothing (or nothing countable) was done."""

    run_id: str
    mapping_key: str
    automation: str
    config_id: Any
    cadence: str
    stamp: datetime
    started_at: datetime
    status: str
    dry_run: bool
    attempt: int
    result: ExecutionResult | None = None
    error: str | None = None


def ensure_run_record_index(database: Database) -> None:
    """Create the unique index on ``(runId, mappingKey)`` unless it exists (then the server does nothing).

    It makes that key a record's identity (two racing upserts cannot make two records) and keeps the lookup cheap as
    the collection grows. The loader calls this once per run rather than every record write: a cadence of hundreds of
    automations would otherwise send as many ``createIndexes`` commands (a re-execution skips the loader, and finds
    the index its original run made).
    """
    database[RUNS_COLLECTION].create_index([("runId", 1), ("mappingKey", 1)], unique=True)


def write_run_record(database: Database, record: RunRecord) -> None:
    """Insert or update the record for ``(run_id, mapping_key)`` (unique by ``ensure_run_record_index``)."""
    result = record.result
    database[RUNS_COLLECTION].update_one(
        {"runId": record.run_id, "mappingKey": record.mapping_key},
        {
            "$set": {
                "automation": record.automation,
                "configId": record.config_id,
                "cadence": record.cadence,
                "stamp": record.stamp,
                "startedAt": record.started_at,
                "finishedAt": datetime.now(UTC),
                "status": record.status,
                "dryRun": record.dry_run,
                "attempts": record.attempt,
                "matched": None if result is None else result.matched,
                "modified": None if result is None else result.modified,
                "batches": None if result is None else result.batches,
                "durationSeconds": None if result is None else round(result.duration_seconds, 3),
                "error": record.error,
            }
        },
        upsert=True,
    )
