"""The ``dataupdateconfigs`` collection as an asset, with the checks that show an automation's problems before it runs.

A broken automation used to show only when its cadence ran it (for a nightly one, up to a day later). These checks
run on their own hourly schedule (``oncall/jobs.py``) and from the UI at any time; they never apply an
update, and write nothing to the data:

* ``automations_are_valid`` validates every document with ``rules.parse_automation``, the very code each
  automation's step runs first, and names every invalid document and each field that is wrong. Severity: ERROR when
  an active automation is invalid (its next run fails); WARN when only inactive ones are (they do not run, but would
  fail once switched on). It also records an observation on ``dataupdateconfigs`` for each automation whose document
  changed since its last run (its ``automationruns`` record keeps the document as that run loaded it): which fields,
  their old and new values (of the config, not of the data), once per change.
* ``automations_within_limits`` counts, with count-only queries, what each active automation with a limit
  (``maxDocuments``, or ``AUTOMATION_MAX_DOCUMENTS``; ``guard.py``) would match now. ERROR when one exceeds its limit:
  its next run will fail without writing anything, so an over-broad query is red before its cadence fires.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetObservation,
    AssetRecordsFilter,
    MetadataValue,
    asset_check,
)
from pymongo.database import Database

from intervalprocessing_dagster.data_change.assets import DATA_UPDATE_CONFIGS
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION
from intervalprocessing_dagster.data_change.plan import build_plan
from intervalprocessing_dagster.data_change.rules import (
    CONFIG_COLLECTION,
    InvalidAutomationError,
    automation_label,
    config_hash,
    parse_automation,
)
from intervalprocessing_dagster.mongo.resources import MongoResource

# Observations read per call when looking for a config change already recorded (the loader observes the collection on
# every run, so there are many).
_OBSERVATIONS_PER_PAGE = 500


@asset_check(
    asset=DATA_UPDATE_CONFIGS.key,
    name="automations_are_valid",
    description="Every automation document passes the validation its data-change step runs first (writes nothing); "
    "automations changed since their last run are recorded as observations.",
    blocking=True,  # failed at ERROR, it fails its run too (oncall/jobs.py says why)
)
def automations_are_valid(context: AssetCheckExecutionContext, mongo: MongoResource) -> AssetCheckResult:
    database = mongo.database()
    documents = list(database[CONFIG_COLLECTION].find({}).sort([("name", 1), ("_id", 1)]))
    problems: dict[str, list[str]] = {}
    active_invalid = 0
    for document in documents:
        try:
            parse_automation(document)
        except InvalidAutomationError as exc:
            inactive = document.get("isActive") is False
            active_invalid += not inactive
            problems[automation_label(document) + (" (inactive)" if inactive else "")] = exc.problems
    changed = _observe_changes_since_last_run(context, database, documents)
    metadata = {
        "documents": len(documents),
        "invalid": len(problems),
        "invalid_active": active_invalid,
        "changed_since_last_run": changed,
    }
    if not problems:
        return AssetCheckResult(
            passed=True, metadata=metadata, description=f"all {len(documents)} automation(s) are valid"
        )
    listing = "\n".join(f"- {label}: " + "; ".join(found) for label, found in problems.items())
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR if active_invalid else AssetCheckSeverity.WARN,
        description=f"{len(problems)} of {len(documents)} automation(s) in {CONFIG_COLLECTION} are invalid:\n{listing}",
        metadata={**metadata, "problems": MetadataValue.md(listing)},
    )


@asset_check(
    asset=DATA_UPDATE_CONFIGS.key,
    name="automations_within_limits",
    description="Every active automation with a limit (maxDocuments, or AUTOMATION_MAX_DOCUMENTS) matches no more "
    "documents than it allows, counted as its next run would (count-only queries; writes nothing).",
    blocking=True,  # over its limit, an automation's next run fails: like an invalid one, it fails the check's run
)
def automations_within_limits(mongo: MongoResource, guard: AutomationGuard) -> AssetCheckResult:
    database = mongo.database()
    documents = database[CONFIG_COLLECTION].find({"isActive": True}).sort([("name", 1), ("_id", 1)])
    now = datetime.now(UTC)
    checked = 0
    over: list[str] = []
    for document in documents:
        try:
            automation = parse_automation(document)
        except InvalidAutomationError:
            continue  # automations_are_valid names it
        verdict = guard.verdict(database[automation.collection], automation, build_plan(automation, now))
        if verdict is None:
            continue
        checked += 1
        if verdict.exceeded:
            over.append(f"{automation_label(document)}: {verdict.message('its next run will fail, writing nothing')}")
    metadata = {"checked": checked, "over_limit": len(over)}
    if not over:
        return AssetCheckResult(
            passed=True, metadata=metadata, description=f"all {checked} automation(s) with a limit are within it"
        )
    listing = "\n".join(f"- {line}" for line in over)
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        metadata={**metadata, "over": MetadataValue.md(listing)},
        description=f"{len(over)} automation(s) match more documents than they may:\n{listing}",
    )


def _observe_changes_since_last_run(
    context: AssetCheckExecutionContext, database: Database, documents: list[dict[str, Any]]
) -> int:
    """Record an observation for each automation whose document differs from the one its last run loaded (once per
    version of the document); how many differ."""
    if not database.list_collection_names(filter={"name": LEDGER_COLLECTION}):
        return 0  # no automation has run yet
    runs = database[LEDGER_COLLECTION]
    changed = []  # one lookup per automation, on the index the loader ensures (ledger.ensure_ledger_indexes)
    for document in documents:
        last = runs.find_one(
            {"configId": document.get("_id"), "dryRun": False, "config": {"$exists": True}}, sort=[("stamp", -1)]
        )
        if last is not None and config_hash(last["config"]) != config_hash(document):
            changed.append((document, last))
    if not changed:
        return 0
    # A change is recorded once: an observation of it can only date from after the last run that loaded the old
    # version, so the observations since the earliest of those runs are all that need reading.
    recorded = _recorded_changes(context, min(_timestamp(last.get("stamp")) for _, last in changed))
    for document, last in changed:
        key = (str(document.get("_id")), config_hash(document))
        if key in recorded:
            continue
        fields = _field_changes(last["config"], document)
        label = automation_label(document)
        context.op_execution_context.log_event(
            AssetObservation(
                asset_key=DATA_UPDATE_CONFIGS.key,
                description=f"automation {label} changed since its last run ({last.get('runId')}, stamp "
                f"{last.get('stamp')}): {', '.join(fields)}",
                metadata={
                    "automation": label,
                    "config_id": key[0],
                    "config_hash": key[1],
                    "last_run_id": str(last.get("runId")),
                    "last_run_config_hash": config_hash(last["config"]),
                    "changed_fields": MetadataValue.json(sorted(fields)),
                    "changes": MetadataValue.json(fields),
                },
            )
        )
    return len(changed)


def _recorded_changes(context: AssetCheckExecutionContext, since: float) -> set[tuple[str, str]]:
    """(config ``_id``, config hash) of every change observed on ``dataupdateconfigs`` after ``since`` (a Unix
    time; 0: ever)."""
    records_filter = AssetRecordsFilter(asset_key=DATA_UPDATE_CONFIGS.key, after_timestamp=since or None)
    recorded: set[tuple[str, str]] = set()
    cursor = None
    while True:
        page = context.instance.fetch_observations(records_filter, limit=_OBSERVATIONS_PER_PAGE, cursor=cursor)
        for record in page.records:
            metadata = record.asset_observation.metadata
            if {"config_id", "config_hash"} <= set(metadata):
                recorded.add((str(metadata["config_id"].value), str(metadata["config_hash"].value)))
        if not page.has_more:
            return recorded
        cursor = page.cursor


def _timestamp(stamp: datetime | None) -> float:
    """A record's stamp as a Unix time (0 for an old record without one)."""
    return 0.0 if stamp is None else stamp.timestamp()


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each top-level field whose value differs, with its old and new value (absent when the field is missing)."""
    changes: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys([*old, *new]):
        if (name in old) != (name in new) or config_hash({"v": old[name]}) != config_hash({"v": new[name]}):
            change = {}
            if name in old:
                change["before"] = _plain(old[name])
            if name in new:
                change["after"] = _plain(new[name])
            changes[name] = change
    return changes


def _plain(value: Any) -> Any:
    """A BSON value as plain JSON (extended JSON for dates, ObjectIds and the like), for metadata."""
    return json.loads(json_util.dumps(value, json_options=RELAXED_JSON_OPTIONS))
