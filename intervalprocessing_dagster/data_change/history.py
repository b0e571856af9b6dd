"""One automation's history in the UI: each collection an automation changes is partitioned by automation name.

The collections (``audits``, ``medicalrecordrequests``, ``providers``) are external assets whose partitions are
the automations that change them, one ``DynamicPartitionsDefinition`` per collection (``<collection>_automations``),
keyed by the automation's name as stored. The loader step adds the partitions of the automations it loaded (the
instance's public dynamic-partitions API; definitions never read the database), and each automation's step records
one event on its collection's partition: a materialization when it applied (matched, modified, the version of its
document, ``config_hash``), an observation when it failed (the error). So the collection's page shows when it was
last changed and by which automation, and its **Partitions** tab lists the automations that change it. The
loader's observation of ``dataupdateconfigs`` links every automation to its history (``history_links``): two clicks
from the Catalog. docs/decisions/automation-history-in-the-ui.md says why this modelling and what it costs.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from dagster import (
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
    DynamicPartitionsDefinition,
    MetadataValue,
)

from intervalprocessing_dagster.data_change.rules import automation_label, config_hash

# Kept on a failure's observation: enough for the UI's metadata table; the step's own failure has the whole text.
ERROR_CHARS = 500


def automations_of(collection: str) -> DynamicPartitionsDefinition:
    """The partitions of ``collection``'s asset: one per automation that changes it, keyed by the automation's name."""
    return DynamicPartitionsDefinition(name=f"{collection}_automations")


def automation_name(document: Mapping[str, Any]) -> str:
    """The automation's partition key: its name as stored, or its label when the document has no usable name."""
    name = document.get("name")
    return name if isinstance(name, str) and name.strip() else automation_label(document)


def collection_of(document: Mapping[str, Any]) -> str | None:
    """The collection an automation document names (``collectionName``), or None when it names none."""
    collection = document.get("collectionName")
    return collection if isinstance(collection, str) and collection else None


def add_automation_partitions(instance: DagsterInstance, automations: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Add each (name, document) automation as a partition of its collection's asset (existing ones are kept: a
    renamed or deleted automation keeps its history; two documents of one name share one). One storage call per
    collection."""
    names: dict[str, dict[str, None]] = {}
    for name, document in automations:
        collection = collection_of(document)
        if collection is not None:
            names.setdefault(collection, {})[name] = None  # once each: the storage refuses a name twice in one call
    for collection, keys in names.items():
        instance.add_dynamic_partitions(automations_of(collection).name, list(keys))


def applied(
    name: str, collection: str, document: Mapping[str, Any], stamp: datetime, matched: int, modified: int
) -> AssetMaterialization:
    """What an applied automation records: its collection changed, on the automation's own partition."""
    return AssetMaterialization(
        asset_key=collection,
        partition=name,
        metadata={
            "matched": matched,
            "modified": modified,
            **_version(document),
            "stamp": stamp.isoformat(),
        },
    )


def failed(name: str, document: Mapping[str, Any], stamp: datetime, error: str) -> AssetObservation | None:
    """What a failed automation records on its partition (None when its document names no collection)."""
    collection = collection_of(document)
    if collection is None:
        return None
    text = error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS] + " …"
    return AssetObservation(
        asset_key=collection,
        partition=name,
        metadata={
            "failed": text,
            **_version(document),
            "stamp": stamp.isoformat(),
        },
    )


def history_path(collection: str, name: str) -> str:
    """The UI page of one automation's history: its collection's events, filtered to the automation's partition
    (every run that applied it, with matched and modified, and every failure). A path from the UI's root."""
    return f"/assets/{quote(collection, safe='')}?view=events&partitions%5B0%5D={quote(name, safe='')}"


def history_links(documents: Iterable[Mapping[str, Any]]) -> dict[str, MetadataValue]:
    """For the loader's observation of ``dataupdateconfigs``: one entry per automation (every cadence, by name),
    ``history of <name>``, linking to its history, so that the collection's page leads to each automation's history
    in one click (its metadata filter finds one by name). One short Markdown value each: the UI shows a Markdown
    value of under 1,000 characters in place, a longer one only behind a "Show Markdown" click."""
    links: dict[str, MetadataValue] = {}
    for document in sorted(documents, key=automation_name):
        name, collection = automation_name(document), collection_of(document)
        if collection is None:
            continue  # its step fails without recording history; automations_are_valid names the problem
        inactive = ", inactive" if document.get("isActive") is False else ""
        links[f"history of {name}"] = MetadataValue.md(
            f"[{_md(name)}]({history_path(collection, name)}) ({_md(str(document.get('runCadence')))}, "
            f"{_md(collection)}{inactive})"
        )
    return links


def _md(text: str) -> str:
    """``text`` as literal text in Markdown (one line)."""
    return re.sub(r"([\\`*_\[\]()<>|])", r"\\\1", " ".join(text.split()))


def _version(document: Mapping[str, Any]) -> dict[str, str]:
    """Which document, in which version: its ``_id`` and ``rules.config_hash`` (the hash ``automationruns`` and the
    change journal keep)."""
    return {"config_id": str(document.get("_id")), "config_hash": config_hash(document)}
