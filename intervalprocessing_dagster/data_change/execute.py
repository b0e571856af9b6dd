"""Apply one :class:`UpdatePlan` to its collection, with memory bounded whatever the number of matched documents.

A find query (or a pipeline that only filters, :func:`filter_of`) is one server-side ``update_many`` that re-checks
the query as it writes; any other pipeline is streamed as ``_id`` s and written in unordered batches. Every call is
bounded by the run's ``deadline``, and a dry run writes nothing. The journaled write (``journal.py``) builds on this;
the plain write is what the benchmark measures it against. Why: docs/decisions/bounded-memory-writes.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pymongo
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, PyMongoError, WriteError

from intervalprocessing_dagster.data_change.plan import UpdatePlan
from intervalprocessing_dagster.mongo.shell_syntax import MongoQuery

# How many refused documents a failure message quotes; the count is always complete.
QUOTED_ERRORS = 3

# Stages that pass on every document they receive (they reshape or reorder it): after a pipeline's leading ``$match``
# stages they change nothing about which documents the pipeline returns.
_DOCUMENT_KEEPING_STAGES = frozenset({"$project", "$addFields", "$set", "$unset", "$sort"})


@dataclass(frozen=True)
class ExecutionResult:
    """What one automation did (or, in a dry run, would do)."""

    matched: int
    modified: int
    batches: int
    duration_seconds: float
    dry_run: bool
    sample_ids: list[Any] = field(default_factory=list)
    # Journaled writes: documents another writer changed between the read and the write, so read and written again;
    # and those still changing after the last try, so not written (they fail the automation).
    retried: int = 0
    contended: int = 0


class DeadlineExceeded(RuntimeError):
    """The automation ran out of its run's time; what was written stays written and the next run continues."""


class DocumentWriteErrors(RuntimeError):
    """Some documents were not written: ``failed`` the server (or MongoDB's rules) refused, ``contended`` (the first
    few ``_id`` s; ``result.contended`` counts them) another writer kept changing; the others were written (see
    ``result``)."""

    def __init__(self, result: ExecutionResult, failed: int, quoted: list[str], contended: Sequence[Any] = ()) -> None:
        self.result = result
        self.failed = failed
        parts = []
        if failed:
            parts.append(
                f"the server refused {failed} document(s) ({result.modified} modified); first errors: "
                + "; ".join(quoted)
            )
        if result.contended:
            parts.append(
                f"{result.contended} document(s) that still match were not written because another writer changed "
                f"them each time they were read and written ({result.modified} modified): "
                + ", ".join(f"_id {_id}" for _id in contended)
                + (" and more" if result.contended > len(contended) else "")
                + "; re-execute the run from failure to apply the automation to them"
            )
        super().__init__("; ".join(parts))


def execute(
    collection: Collection,
    query: MongoQuery,
    plan: UpdatePlan,
    *,
    deadline: float,
    dry_run: bool = False,
    batch_size: int = 1000,
    sample_size: int = 5,
    log: Callable[[str], None] = lambda _message: None,
) -> ExecutionResult:
    """Run ``plan`` on the documents ``query`` selects in ``collection``, unjournaled (a dry run, or the benchmark's
    measure of what journaling costs; an automation step's writes go through ``journal.ChangeJournal.apply``);
    ``deadline`` is a ``time.time()`` value."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    reach(collection)
    if query.pipeline is None:
        query_filter, described = query.filter or {}, "the query"
    elif (query_filter := filter_of(query.pipeline)) is not None:
        described = "the pipeline's $match filter"
    else:
        return _execute_pipeline(
            collection,
            query.pipeline,
            plan,
            deadline=deadline,
            dry_run=dry_run,
            batch_size=batch_size,
            sample_size=sample_size,
            log=log,
        )
    return _execute_filter(
        collection,
        query_filter,
        plan,
        described=described,
        deadline=deadline,
        dry_run=dry_run,
        batch_size=batch_size,
        sample_size=sample_size,
        log=log,
    )


def reach(collection: Collection) -> None:
    """Reach the server first, outside ``pymongo.timeout``: inside it, server selection waits for the whole time left
    instead of ``serverSelectionTimeoutMS``, so an outage would use up the run instead of failing fast (and being
    retried)."""
    collection.database.command("ping")


def filter_of(pipeline: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The find filter selecting exactly the documents ``pipeline`` returns, or None when the pipeline does more than
    filter (a ``$lookup``, ``$unwind``, ``$group``, ``$limit``, or a ``$match`` after a reshaping stage).

    ``$match`` takes the same query language as a find filter, so leading ``$match`` stages are their conjunction,
    and the stages of ``_DOCUMENT_KEEPING_STAGES`` after them keep every document.
    """
    conditions: list[dict[str, Any]] = []
    rest = list(pipeline)
    while rest and list(rest[0]) == ["$match"] and isinstance(rest[0]["$match"], dict):
        conditions.append(rest.pop(0)["$match"])
    if not all(len(stage) == 1 and next(iter(stage)) in _DOCUMENT_KEEPING_STAGES for stage in rest):
        return None
    if len(conditions) == 1:
        return dict(conditions[0])
    return {"$and": conditions} if conditions else {}


def _execute_filter(
    collection: Collection,
    query_filter: dict[str, Any],
    plan: UpdatePlan,
    *,
    described: str,
    deadline: float,
    dry_run: bool,
    batch_size: int,
    sample_size: int,
    log: Callable[[str], None],
) -> ExecutionResult:
    started = time.monotonic()
    write_filter = plan.filter(query_filter)
    with within(deadline, f"the update of {collection.name}"):
        if dry_run:
            matched = collection.count_documents(write_filter)
            sample = [doc["_id"] for doc in collection.find(write_filter, {"_id": 1}).limit(sample_size)]
            log(f"dry run: {matched} document(s) of {collection.name} would be updated; nothing written")
            return ExecutionResult(matched, 0, 1, time.monotonic() - started, True, sample)
        try:
            result = collection.update_many(write_filter, plan.update, array_filters=plan.array_filters or None)
        except WriteError as exc:
            refused = exc
        else:
            log(
                f"{result.matched_count} matched, {result.modified_count} modified by one server-side update_many "
                f"of {collection.name} ({described} re-checked as each document is written)"
            )
            return ExecutionResult(result.matched_count, result.modified_count, 1, time.monotonic() - started, False)
    # update_many stops at the first document the server refuses (e.g. a push onto a field that is not an array),
    # leaving the rest unwritten. Finish the others one by one: documents already updated match again harmlessly
    # (every plan is idempotent for its run), and the refused ones are reported, as on the pipeline path.
    log(f"the server refused a document ({_server_message(refused)}); writing the remaining documents by _id")
    return _execute_pipeline(
        collection,
        [{"$match": write_filter}],
        plan,
        recheck=query_filter,
        deadline=deadline,
        dry_run=False,
        batch_size=batch_size,
        sample_size=sample_size,
        log=log,
    )


def _execute_pipeline(
    collection: Collection,
    pipeline: list[dict[str, Any]],
    plan: UpdatePlan,
    *,
    recheck: dict[str, Any] | None = None,
    deadline: float,
    dry_run: bool,
    batch_size: int,
    sample_size: int,
    log: Callable[[str], None],
) -> ExecutionResult:
    started = time.monotonic()
    matched = modified = batches = failed = 0
    refused: list[tuple[Any, str]] = []
    sample: list[Any] = []

    def flush(ids: list[Any]) -> None:
        nonlocal matched, modified, batches, failed
        if time.time() >= deadline:
            raise DeadlineExceeded(
                f"stopped after {batches} batch(es) of {batch_size}: {matched} matched, {modified} modified; "
                "the next run continues"
            )
        batches += 1
        if dry_run:
            batch_filter = plan.filter({"_id": {"$in": ids}})
            matched += collection.count_documents(batch_filter)
            if len(sample) < sample_size:
                cursor = collection.find(batch_filter, {"_id": 1}).limit(sample_size - len(sample))
                sample.extend(doc["_id"] for doc in cursor)
        else:
            array_filters = plan.array_filters or None
            models = [
                UpdateOne(plan.filter(_by_id(_id, recheck)), plan.update, array_filters=array_filters) for _id in ids
            ]
            try:
                result = collection.bulk_write(models, ordered=False)
                matched += result.matched_count
                modified += result.modified_count
            except BulkWriteError as exc:
                matched += exc.details.get("nMatched", 0)
                modified += exc.details.get("nModified", 0)
                errors = exc.details.get("writeErrors", [])
                failed += len(errors)
                refused.extend(
                    (ids[error["index"]], str(error.get("errmsg")))
                    for error in errors[: max(0, QUOTED_ERRORS - len(refused))]
                )
        log(
            f"batch {batches}: {len(ids)} document(s); so far {matched} matched, {modified} modified"
            f"{', ' + str(failed) + ' refused' if failed else ''} ({time.monotonic() - started:.1f}s)"
        )

    with within(deadline, f"the pipeline on {collection.name}"):
        cursor = collection.aggregate([*pipeline, {"$project": {"_id": 1}}], allowDiskUse=True, batchSize=batch_size)
        with cursor:
            ids: list[Any] = []
            for document in cursor:
                ids.append(document["_id"])
                if len(ids) == batch_size:
                    flush(ids)
                    ids = []
            if ids:
                flush(ids)
    result = ExecutionResult(matched, modified, batches, time.monotonic() - started, dry_run, sample)
    if dry_run:
        log(f"dry run: {matched} document(s) of {collection.name} would be updated; nothing written")
    if failed:
        raise DocumentWriteErrors(result, failed, quote_refusals(refused))
    return result


def quote_refusals(refused: list[tuple[Any, str]]) -> list[str]:
    """The first refused documents (``_id``, reason) as a failure message quotes them; the count is given apart."""
    return [f"_id {_id}: {message}" for _id, message in refused[:QUOTED_ERRORS]]


def _by_id(_id: Any, recheck: dict[str, Any] | None) -> dict[str, Any]:
    """One document's write filter; with ``recheck`` (a find query) the server still checks the query as it writes."""
    return {"$and": [recheck, {"_id": _id}]} if recheck else {"_id": _id}


def _server_message(exc: PyMongoError) -> str:
    """The server's own words for a refused write, without pymongo's full response dump."""
    details = getattr(exc, "details", None) or {}
    return str(details.get("errmsg") or exc)


@contextmanager
def within(deadline: float, what: str) -> Iterator[None]:
    """Run the block under a client-side timeout for the time left; a timeout then means the deadline passed."""
    remaining = deadline - time.time()
    if remaining <= 0:
        raise DeadlineExceeded(f"no time left in this run to start {what}; the next run will do it")
    try:
        with pymongo.timeout(remaining):
            yield
    except PyMongoError as exc:
        if exc.timeout and deadline - time.time() < 1:
            raise DeadlineExceeded(f"{what} hit the run's time limit: {exc}; the next run continues") from exc
        raise
