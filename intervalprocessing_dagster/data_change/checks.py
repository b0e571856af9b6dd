"""The ``dataupdateconfigs`` collection as an asset, with a check that every automation in it would run.

A broken automation used to show only when its cadence ran it (for a nightly one, up to a day later). This check
validates every document with ``rules.parse_automation``, the very code each automation's step runs first, on its
own hourly schedule (``oncall/config_checks.py``) and from the UI at any time; it reads and writes nothing else and never
applies an update. A failing check names every invalid document and each field that is wrong.

Severity: ERROR when an active automation is invalid (its next run fails); WARN when only inactive ones are (they
do not run, but would fail once switched on).
"""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, AssetSpec, MetadataValue, asset_check

from intervalprocessing_dagster.data_change.rules import (
    CONFIG_COLLECTION,
    InvalidAutomationError,
    automation_label,
    parse_automation,
)
from intervalprocessing_dagster.mongo.resource import MongoResource

#: The one asset group of the code location: the collections, the configuration and the reports. The UI's global
#: lineage opens with every group collapsed when there are several (dagster-webserver 1.13), which hid the
#: ``dataupdateconfigs -> collections -> reports`` chain behind clicks; with one group it is the first thing shown.
ASSET_GROUP = "intervalprocessing"

DATA_UPDATE_CONFIGS = AssetSpec(
    CONFIG_COLLECTION, group_name=ASSET_GROUP, kinds={"mongodb"},
    description=f"MongoDB collection `{CONFIG_COLLECTION}`: the data-change automations (one document each).",
)


@asset_check(
    asset=DATA_UPDATE_CONFIGS.key,
    name="automations_are_valid",
    description="Every automation document passes the validation its data-change step runs first (writes nothing).",
    blocking=True,  # failed at ERROR, it fails its run too (oncall/config_checks.py says why)
)
def automations_are_valid(mongo: MongoResource) -> AssetCheckResult:
    documents = list(mongo.database()[CONFIG_COLLECTION].find({}).sort([("name", 1), ("_id", 1)]))
    problems: dict[str, list[str]] = {}
    active_invalid = 0
    for document in documents:
        try:
            parse_automation(document)
        except InvalidAutomationError as exc:
            inactive = document.get("isActive") is False
            active_invalid += not inactive
            problems[automation_label(document) + (" (inactive)" if inactive else "")] = exc.problems
    metadata = {"documents": len(documents), "invalid": len(problems), "invalid_active": active_invalid}
    if not problems:
        return AssetCheckResult(passed=True, metadata=metadata,
                                description=f"all {len(documents)} automation(s) are valid")
    listing = "\n".join(f"- {label}: " + "; ".join(found) for label, found in problems.items())
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR if active_invalid else AssetCheckSeverity.WARN,
        description=f"{len(problems)} of {len(documents)} automation(s) in {CONFIG_COLLECTION} are invalid:\n{listing}",
        metadata={**metadata, "problems": MetadataValue.md(listing)},
    )
