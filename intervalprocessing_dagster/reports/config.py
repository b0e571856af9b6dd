"""Read the report configuration users already have: ``fileprocessingconfigs`` and ``storedqueries`` (spec §2.1-2.2).

The documents keep their old shape and meaning: the *first* ``fileprocessingconfigs`` document (by ``_id``, which
for ObjectIds is insertion order, where the old code took natural order) holds ``processes[]``; entries whose
``name`` or ``configurations`` is null are dropped and, on a duplicate name, the first entry wins. ``name`` is the
old processor class name (``DailyAuditInventoryProcessor``), which is how the built-in report assets find their
entry. One optional field is new: ``configurations.cadence`` (``Daily``, the default, or ``Weekly``), read only for
processes that are not one of the four built-ins (whose cadence is fixed by their old processor).

Two processes may not share a ``fileNameBase``: they would write the same file (and ``generatedfiles`` record) in
one run, the last silently replacing the other. Each of them fails with an error naming the other, while the reports
with a base of their own are still generated.

The old code crashed with ``KeyNotFoundException``, a deserialization error or a parse of ``""``; every problem here
is a ``ReportConfigError`` that names the process, the query and the field, so an operator can fix the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pymongo.database import Database

from intervalprocessing_dagster.mongo.shell_syntax import MongoQuery, parse_document, parse_query

PROCESSES_COLLECTION = "fileprocessingconfigs"
QUERIES_COLLECTION = "storedqueries"

# fileNameBase becomes a local file name and an S3 key: keep it to one plain path segment.
_FORBIDDEN_IN_FILE_NAME = ("/", "\\", "\x00", "..")


class ReportConfigError(ValueError):
    """A report's configuration is missing, incomplete or unusable; the message says which and where."""


class ReportCadence(Enum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


@dataclass(frozen=True)
class ReportProcess:
    """One ``processes[]`` entry: which query runs on which collection and how its file is named and laid out."""

    name: str
    query_name: str
    collection_name: str
    projection: str | dict[str, Any]
    file_name_base: str
    writer_type_key: str
    cadence: ReportCadence


def process_names(db: Database) -> list[str]:
    """The configured process names, in document order."""
    return list(_entries(db))


def load_process(db: Database, name: str) -> ReportProcess:
    """One process, validated on its own, so one broken entry does not stop the other reports."""
    entries = _entries(db)
    if name not in entries:
        configured = ", ".join(entries) or "none"
        raise ReportConfigError(
            f"{PROCESSES_COLLECTION}: no process named {name!r} in processes[] (configured: {configured})"
        )
    process = _parse_process(name, entries[name])
    sharing = [
        other
        for other, configurations in entries.items()
        if other != name
        and isinstance(configurations, Mapping)
        and configurations.get("fileNameBase") == process.file_name_base
    ]
    if sharing:
        others = ", ".join(repr(other) for other in sharing)
        raise ReportConfigError(
            f"{PROCESSES_COLLECTION} process {name!r}: configurations.fileNameBase {process.file_name_base!r} is also "
            f"the fileNameBase of process {others}; each run would write the same file and generatedfiles record, "
            f"so none of them is generated until each has its own fileNameBase"
        )
    return process


def _entries(db: Database) -> dict[str, Any]:
    """``configurations`` by process name: first entry per name wins, entries with a null name or config dropped."""
    document = db[PROCESSES_COLLECTION].find_one({}, sort=[("_id", 1)])
    if document is None:
        raise ReportConfigError(f"{PROCESSES_COLLECTION} is empty: no report is configured")
    entries = document.get("processes")
    if not isinstance(entries, list):
        raise ReportConfigError(f"{PROCESSES_COLLECTION} document {document['_id']!r}: processes must be a list")
    configurations: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("name") is None or entry.get("configurations") is None:
            continue
        configurations.setdefault(str(entry["name"]), entry["configurations"])
    return configurations


def load_query(db: Database, process: ReportProcess) -> MongoQuery:
    """The process's stored query, parsed; a missing or broken query names both the query and the process."""
    source = f"{QUERIES_COLLECTION} {process.query_name!r} (process {process.name!r})"
    stored = db[QUERIES_COLLECTION].find_one({"name": process.query_name}, sort=[("_id", 1)])
    if stored is None:
        raise ReportConfigError(f"{source}: no {QUERIES_COLLECTION} document has name {process.query_name!r}")
    if stored.get("query") is None:
        raise ReportConfigError(f"{source}: the document has no query field")
    return parse_query(stored["query"], source=source)


def load_projection(process: ReportProcess) -> dict[str, Any] | None:
    """The find projection (``None`` for ``{}``: all fields, as the old ``"{}"`` meant)."""
    projection = parse_document(
        process.projection, source=f"{PROCESSES_COLLECTION} process {process.name!r} projection"
    )
    return projection or None


def _parse_process(name: str, configurations: Any) -> ReportProcess:
    where = f"{PROCESSES_COLLECTION} process {name!r}"
    if not isinstance(configurations, Mapping):
        raise ReportConfigError(f"{where}: configurations must be a document")

    def text(field: str) -> str:
        value = configurations.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ReportConfigError(f"{where}: configurations.{field} must be a non-empty string, got {value!r}")
        return value

    file_name_base = text("fileNameBase")
    if any(part in file_name_base for part in _FORBIDDEN_IN_FILE_NAME):
        raise ReportConfigError(f"{where}: configurations.fileNameBase {file_name_base!r} must be a plain name")
    projection = configurations.get("projection", "{}")
    if not isinstance(projection, (str, Mapping)):
        raise ReportConfigError(f"{where}: configurations.projection must be a document string such as '{{}}'")
    cadence_text = configurations.get("cadence", ReportCadence.DAILY.value)
    cadence = next(
        (c for c in ReportCadence if isinstance(cadence_text, str) and c.value.lower() == cadence_text.lower()), None
    )
    if cadence is None:
        raise ReportConfigError(f"{where}: configurations.cadence must be 'Daily' or 'Weekly', got {cadence_text!r}")
    return ReportProcess(
        name=name,
        query_name=text("queryName"),
        collection_name=text("collectionName"),
        projection=projection if isinstance(projection, str) else dict(projection),
        file_name_base=file_name_base,
        writer_type_key=text("writerTypeKey"),
        cadence=cadence,
    )
