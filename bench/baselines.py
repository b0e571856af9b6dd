"""The two yardsticks the platform is measured against: the old algorithm and the floor.

* **old**: the faithful port of the C# data-change loop (``bench.legacy``) on the same automation document.
* **floor**: the least a careful engineer could write with plain pymongo (and the standard library) to do the same
  job, with no parsing, planning, validation, rendering layer or record keeping. The platform cannot beat its floor
  by design; the ratio says how much its layers cost.

Floors, per family:

* find-based: the change as ONE ``update_many(filter, {$set})``, all work on the server.
* aggregate-based: stream the pipeline projected to ``_id`` and write every ``BATCH_SIZE`` ids as one unordered
  ``bulk_write`` of ``UpdateOne({_id}, ...)`` (``aggregate_floor``), and the same with one
  ``update_many({_id: {$in: batch}})`` per batch (``aggregate_floor_in``). Both are "batched updates by ``_id``";
  the target is judged against the faster of the two, so a slow floor cannot flatter the platform.
* find-based with the change journal (``journal``): the change as ONE ``update_many`` (``journal.update-many``, the
  same call as the find floor), and the floor proper, ``journal_floor``: that ``update_many`` plus a plain journal
  write of the same documents, their previous value read with a projection and inserted one journal document per
  changed document, ``insert_many`` of ``BATCH_SIZE`` at a time (what the issue measured: 0.38 s for 5,000 against
  0.5-0.7 s for the ``update_many``). It is not consistent with the write (a document changed between the read and
  the ``update_many`` is journaled wrongly, one that starts to match is changed without an entry): the price of
  consistency is the platform's distance from it.
* a cadence of N automations (``automations``): the same N ``update_many`` calls in a plain loop, one per
  automation's group, with none of Dagster's steps, events or records around them.
* file generation: iterate the cursor and write the same bytes with ``csv.writer(delimiter='|')``; for S3, write the
  file locally, then ``upload_file`` (boto3's managed multipart transfer), which is what the old system did too.
  The pipeline gets its ``{$sort: {_id: 1}}`` FIRST, where the server can walk the ``_id`` index instead of sorting
  the joined documents: the floor is the cheapest correct way to produce the same file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from pymongo import UpdateOne
from pymongo.collection import Collection

from bench import dataset, legacy
from bench.scenarios import Context, Work

BATCH_SIZE = 1000
"""Documents per write batch; the platform's default (``data_change.execute.execute(batch_size=1000)``)."""

JOURNAL_FLOOR_COLLECTION = "benchjournal"
"""Where ``journal_floor`` writes its plain journal (the platform's is ``automationchanges``)."""


def find_old(context: Context) -> Work:
    return Work(items=legacy.execute(context.db, dataset.automation("find", context.mark)))


def find_floor(context: Context) -> Work:
    result = context.db[dataset.AUDITS].update_many(dataset.FIND_FILTER, _mark_update(context))
    return Work(items=result.modified_count)


def journal_floor(context: Context) -> Work:
    collection = context.db[dataset.AUDITS]
    journal = context.db[JOURNAL_FLOOR_COLLECTION]
    entries: list[dict[str, Any]] = []
    for document in collection.find(dataset.FIND_FILTER, {dataset.MARK_FIELD: 1}, batch_size=BATCH_SIZE):
        entries.append(
            {
                "documentId": document["_id"],
                "mark": context.mark,
                "before": document.get(dataset.MARK_FIELD),
                "after": context.mark,
            }
        )
        if len(entries) == BATCH_SIZE:
            journal.insert_many(entries, ordered=False)
            entries = []
    if entries:
        journal.insert_many(entries, ordered=False)
    result = collection.update_many(dataset.FIND_FILTER, _mark_update(context))
    return Work(items=result.modified_count)


def aggregate_old(context: Context) -> Work:
    return Work(items=legacy.execute(context.db, dataset.automation("aggregate", context.mark)))


def aggregate_floor(context: Context) -> Work:
    collection = context.db[dataset.MRRS]
    update = _mark_update(context)
    modified = 0
    for batch in _id_batches(collection):
        modified += collection.bulk_write(
            [UpdateOne({"_id": _id}, update) for _id in batch], ordered=False
        ).modified_count
    return Work(items=modified, detail={"batch_size": BATCH_SIZE})


def aggregate_floor_in(context: Context) -> Work:
    collection = context.db[dataset.MRRS]
    update = _mark_update(context)
    modified = 0
    for batch in _id_batches(collection):
        modified += collection.update_many({"_id": {"$in": batch}}, update).modified_count
    return Work(items=modified, detail={"batch_size": BATCH_SIZE})


def automations_floor(context: Context) -> Work:
    update = _mark_update(context)
    modified = 0
    for i in range(context.n):
        modified += (
            context.db[dataset.group_collection(i)]
            .update_many({dataset.AUTOMATION_GROUP_FIELD: i}, update)
            .modified_count
        )
    return Work(items=modified)


def report_local_floor(context: Context) -> Work:
    path = context.out_dir / "WeeklyMRRInventory_floor.txt"
    rows = _write_report(context, path)
    return Work(items=rows, bytes=path.stat().st_size, output=str(path))


def report_s3_floor(context: Context) -> Work:
    path = context.out_dir / "WeeklyMRRInventory_floor.txt"
    rows = _write_report(context, path)
    key = f"bench/{context.mark}/WeeklyMRRInventory_floor.txt"
    boto3.client("s3").upload_file(str(path), context.bucket, key)
    return Work(items=rows, bytes=path.stat().st_size, output=f"s3://{context.bucket}/{key}")


def _mark_update(context: Context) -> dict[str, Any]:
    return {"$set": {dataset.MARK_FIELD: context.mark}}


def _id_batches(collection: Collection) -> Iterator[list[Any]]:
    pipeline = [*dataset.AGGREGATE_PIPELINE, {"$project": {"_id": 1}}]
    batch: list[Any] = []
    for document in collection.aggregate(pipeline, allowDiskUse=True, batchSize=BATCH_SIZE):
        batch.append(document["_id"])
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_report(context: Context, path: Path) -> int:
    """Write the WeeklyMRRInventory file with nothing but the cursor and ``csv``; return the row count."""
    cursor = context.db[dataset.MRRS].aggregate([{"$sort": {"_id": 1}}, *dataset.REPORT_PIPELINE], allowDiskUse=True)
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="|", lineterminator="\n")
        writer.writerow(dataset.REPORT_HEADER)
        for document in cursor:
            provider = document["provider"]
            address = provider["address"]
            writer.writerow(
                (
                    document["mrrId"],
                    document["claimNumber"],
                    provider["number"],
                    provider["name"],
                    f"{address['address1']} {address['address2']} {address['city']}, "
                    f"{address['state']} {address['zip']}",
                    document["status"],
                    document["organization"],
                    f"{document['date']:%m/%d/%Y}",
                )
            )
            rows += 1
    return rows
