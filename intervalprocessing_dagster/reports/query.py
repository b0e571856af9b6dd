"""A report's stored query plus its layout → the cursor that feeds the file, in a deterministic order.

Two things change from the old ``MongoCursor`` (spec §2.3), both driven by the layout:

* Order: the old reports had no sort, so row order depended on the server (spec §5.12). A filter runs as
  ``find(filter, projection).sort(layout sort)``; a pipeline gets ``{$sort: layout sort}`` appended, so the layout
  decides the file's order even when the pipeline sorts for its own purposes (e.g. before a ``$limit``).
* Rows whose join found nothing: an ``$unwind`` of a field that an earlier ``$lookup`` stage wrote (``as``) is run
  with ``preserveNullAndEmptyArrays`` set to the layout's ``keepRowsWithoutJoin``, so the stored pipelines the old
  system used keep their provider-less MRRs unless the layout says otherwise. Those joined fields are returned so
  the caller can count rows that have none.

As before, a pipeline runs with ``allowDiskUse`` and ignores the ``projection`` config; the cursor is iterated, never
listed, in batches of ``BATCH_SIZE``, so memory stays flat whatever the row count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.command_cursor import CommandCursor
from pymongo.cursor import Cursor
from pymongo.database import Database

from intervalprocessing_dagster.mongo.shell_syntax import MongoQuery
from intervalprocessing_dagster.reports.layouts import ReportLayout

BATCH_SIZE = 1000


@dataclass(frozen=True)
class ReportQuery:
    """What to run: exactly one of ``filter`` / ``pipeline``, ready for the server."""

    collection: str
    filter: dict[str, Any] | None
    projection: dict[str, Any] | None
    pipeline: list[dict[str, Any]] | None
    sort: tuple[tuple[str, int], ...]
    joined_fields: tuple[str, ...]

    def open(self, db: Database) -> Cursor | CommandCursor:
        """The cursor, fetching ``BATCH_SIZE`` documents per round trip.

        An explicit batch size is what keeps memory flat: without one, the server decides, and the embedded
        SecantusDB answers the first ``getMore`` with every remaining document.
        """
        collection = db[self.collection]
        if self.pipeline is not None:
            return collection.aggregate(self.pipeline, allowDiskUse=True, batchSize=BATCH_SIZE)
        cursor = collection.find(self.filter, self.projection, allow_disk_use=True, batch_size=BATCH_SIZE)
        return cursor.sort(list(self.sort))


def plan_query(
    query: MongoQuery, *, collection: str, projection: dict[str, Any] | None, layout: ReportLayout
) -> ReportQuery:
    if query.pipeline is None:
        return ReportQuery(
            collection=collection,
            filter=query.filter,
            projection=projection,
            pipeline=None,
            sort=layout.sort,
            joined_fields=(),
        )
    pipeline, joined = _with_join_policy(query.pipeline, keep=layout.keep_rows_without_join)
    pipeline.append({"$sort": dict(layout.sort)})
    return ReportQuery(
        collection=collection,
        filter=None,
        projection=None,
        pipeline=pipeline,
        sort=layout.sort,
        joined_fields=tuple(joined) if layout.keep_rows_without_join else (),
    )


def _with_join_policy(pipeline: list[dict[str, Any]], *, keep: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Copy of ``pipeline`` whose ``$unwind`` of each ``$lookup`` output preserves unjoined rows iff ``keep``."""
    looked_up: set[str] = set()
    unwound: list[str] = []
    stages: list[dict[str, Any]] = []
    for stage in pipeline:
        lookup = stage.get("$lookup")
        if isinstance(lookup, Mapping) and isinstance(lookup.get("as"), str):
            looked_up.add(lookup["as"])
        spec = _unwind_spec(stage)
        path = spec.get("path") if spec else None
        if spec is not None and isinstance(path, str) and path.startswith("$") and path[1:] in looked_up:
            stages.append({"$unwind": {**spec, "preserveNullAndEmptyArrays": keep}})
            unwound.append(path[1:])
        else:
            stages.append(stage)
    return stages, unwound


def _unwind_spec(stage: Mapping[str, Any]) -> dict[str, Any] | None:
    """An ``$unwind`` stage in its document form (``'$f'`` is short for ``{path: '$f'}``), else None."""
    unwind = stage.get("$unwind")
    if isinstance(unwind, str):
        return {"path": unwind}
    return dict(unwind) if isinstance(unwind, Mapping) else None
