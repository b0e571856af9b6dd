"""Stored query + layout -> cursor: unjoined rows kept or dropped as the layout says, order by the layout's sort,
and documents fetched in bounded batches so memory stays flat."""

from __future__ import annotations

from typing import Any

import pymongo
from pymongo import monitoring
from pymongo.database import Database

from intervalprocessing_dagster.mongo.shell_syntax import parse_query
from intervalprocessing_dagster.reports.layouts import BUILT_IN_LAYOUTS, parse_layout
from intervalprocessing_dagster.reports.query import BATCH_SIZE, plan_query

LAYOUT = parse_layout({"writerTypeKey": "T", "columns": [{"header": "N", "path": "n"}], "sort": {"n": -1}})


def test_unwind_of_a_lookup_keeps_unjoined_rows_unless_the_layout_drops_them() -> None:
    query = parse_query(
        "aggregate([{$lookup:{from:'providers',localField:'provider_id',foreignField:'_id',"
        "as:'provider'}},{$unwind:'$provider'},{$unwind:'$notes'}])",
        source="test",
    )
    keep = plan_query(query, collection="m", projection=None, layout=BUILT_IN_LAYOUTS["WeeklyMRRInventoryFileWriter"])
    assert keep.pipeline[1:] == [
        {"$unwind": {"path": "$provider", "preserveNullAndEmptyArrays": True}},
        {"$unwind": "$notes"},
        {"$sort": {"_id": 1}},
    ]
    assert keep.joined_fields == ("provider",)
    drop_layout = parse_layout(
        {"writerTypeKey": "T", "columns": [{"header": "A", "path": "a"}], "keepRowsWithoutJoin": False}
    )
    drop = plan_query(query, collection="m", projection=None, layout=drop_layout)
    assert drop.pipeline[1] == {"$unwind": {"path": "$provider", "preserveNullAndEmptyArrays": False}}
    assert drop.joined_fields == ()


class _BatchSizes(monitoring.CommandListener):
    """Records how many documents each find/aggregate/getMore reply carried."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if event.command_name in ("find", "aggregate", "getMore") else None
        if cursor is not None:
            self.sizes.append(len(cursor.get("firstBatch", cursor.get("nextBatch", []))))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_cursors_fetch_bounded_batches_in_the_layouts_order(mongo_uri: str, mongo_db: Database) -> None:
    count = 2 * BATCH_SIZE + 7
    mongo_db.items.insert_many([{"n": n, "pad": "x" * 50} for n in range(count)])
    listener = _BatchSizes()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri, event_listeners=[listener])
    try:
        db = client[mongo_db.name]
        for text in ("{ n : { $gte : 0 } }", "aggregate([{$match:{n:{$gte:0}}}])"):
            listener.sizes.clear()
            plan = plan_query(parse_query(text, source="test"), collection="items", projection=None, layout=LAYOUT)
            with plan.open(db) as cursor:
                numbers = [document["n"] for document in cursor]
            assert numbers == list(range(count - 1, -1, -1))
            assert sum(listener.sizes) == count and max(listener.sizes) <= BATCH_SIZE
    finally:
        client.close()
