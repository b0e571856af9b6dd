"""One report, end to end, without Dagster: config → query → cursor → lines → store → ``generatedfiles``.

This is the walk the old ``BaseFileGenerationProcessor`` did (spec §2.3-2.8), kept free of Dagster so the assets
stay thin and the whole path can be tested directly. Lines go from the cursor through the renderer straight into the
store, one at a time, counted and hashed on the way, so no step holds more than a row (plus the store's one part).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from intervalprocessing_dagster.reports.config import ReportProcess, load_projection, load_query
from intervalprocessing_dagster.reports.delivery import ReportStore, StoredFile, record_generated_file
from intervalprocessing_dagster.reports.layouts import resolve_layout
from intervalprocessing_dagster.reports.query import plan_query
from intervalprocessing_dagster.reports.render import RowRenderer, field_value


@dataclass(frozen=True)
class GeneratedReport:
    """What one report run produced, for metadata and logs."""

    process: str
    file_name: str
    stored: StoredFile
    rows: int
    size: int
    sha256: str
    sanitized_values: int
    rows_without_join: int
    duration_seconds: float


def report_file_name(file_name_base: str, stamp: datetime) -> str:
    """``{fileNameBase}_{MMddyyyy_HHmmss}.txt`` on a 24-hour clock (the old 12-hour ``hh`` collided, spec §5.10)."""
    return f"{file_name_base}_{stamp:%m%d%Y_%H%M%S}.txt"


def generate_report(db: Database, store: ReportStore, process: ReportProcess, stamp: datetime) -> GeneratedReport:
    """Render ``process``'s file for the run stamped ``stamp``, deliver it, and record it."""
    started = time.monotonic()
    layout = resolve_layout(db, process.writer_type_key, process=process.name)
    query = load_query(db, process)
    plan = plan_query(
        query,
        collection=process.collection_name,
        projection=None if query.is_aggregate else load_projection(process),
        layout=layout,
    )
    file_name = report_file_name(process.file_name_base, stamp)
    renderer = RowRenderer(layout)
    tally = _Tally(plan.joined_fields)
    with plan.open(db) as cursor:
        stored = store.write(file_name, tally.lines(renderer, cursor))
    digest = tally.sha256.hexdigest()
    record_generated_file(
        db,
        stored,
        file_name=file_name,
        size=tally.size,
        source=process.name,
        created=datetime.now(UTC),
        sha256=digest,
        rows=tally.rows,
    )
    return GeneratedReport(
        process=process.name,
        file_name=file_name,
        stored=stored,
        rows=tally.rows,
        size=tally.size,
        sha256=digest,
        sanitized_values=renderer.sanitized_values,
        rows_without_join=tally.rows_without_join,
        duration_seconds=round(time.monotonic() - started, 3),
    )


class _Tally:
    """Counts and hashes the lines as they stream past, so the numbers describe exactly the bytes delivered."""

    def __init__(self, joined_fields: tuple[str, ...]) -> None:
        self._joined_fields = joined_fields
        self.rows = 0
        self.size = 0
        self.rows_without_join = 0
        self.sha256 = hashlib.sha256()

    def lines(self, renderer: RowRenderer, documents: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
        yield self._count(renderer.header())
        for document in documents:
            if any(field_value(document, field) is None for field in self._joined_fields):
                self.rows_without_join += 1
            self.rows += 1
            yield self._count(renderer.row(document))

    def _count(self, line: bytes) -> bytes:
        self.size += len(line)
        self.sha256.update(line)
        return line
