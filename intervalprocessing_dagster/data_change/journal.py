"""The change journal: for every document an automation modifies, the values it replaced, written with the change.

Every automation write is recorded in ``automationchanges`` so that ``revert_automation_run_job`` (``revert.py``) can
put exactly those values back instead of a point-in-time restore of the whole cluster. A page is stored ``writing``
before its batch is written with filters pinned to the journaled values, and set ``written`` after; a page still
``writing`` is in doubt and is resolved (its documents read back) before the next attempt or the undo.

Page format, write steps and guarantees: docs/decisions/change-journal.md; the designs measured against it:
docs/decisions/journal-concurrent-writers.md.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import bson
from bson import ObjectId
from dagster import OpExecutionContext
from pymongo import MongoClient, UpdateMany, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DocumentTooLarge

from intervalprocessing_dagster.data_change.changes import (
    Change,
    FieldOrder,
    Refusal,
    UpdateShape,
    change_from_document,
    projection_of,
    same_value,
)
from intervalprocessing_dagster.data_change.execute import (
    QUOTED_ERRORS,
    DeadlineExceeded,
    DocumentWriteErrors,
    ExecutionResult,
    filter_of,
    quote_refusals,
    within,
)
from intervalprocessing_dagster.data_change.plan import UpdatePlan
from intervalprocessing_dagster.mongo.indexes import Lookup, ensure_history_indexes
from intervalprocessing_dagster.mongo.shell_syntax import MongoQuery
from intervalprocessing_dagster.runs.tags import LAUNCHED_BY_TAG

JOURNAL_COLLECTION = "automationchanges"
WRITING, WRITTEN = "writing", "written"
TTL_INDEX = "createdAt_ttl"
UNDO_INDEX = "rootRunId_automation"

# Ids per write statement and per read, SecantusDB's best (measured: docs/decisions/journal-concurrent-writers.md);
# MongoDB looks each id up in the _id index, and a batch's write statements travel in one bulk write either way.
IDS_PER_STATEMENT = 16
IDS_PER_READ = 50
# How many times a batch's document is written before one another writer keeps changing is given up on (contended):
# each try reads it again and writes it only while it still matches, so a busy document costs a few reads.
WRITE_TRIES = 5


@dataclass(frozen=True)
class PlannedWrite:
    """One document's write: the ``update`` that makes its ``changes``, filtered by its ``pins``."""

    document_id: Any
    changes: tuple[Change, ...]
    update: dict[str, Any] | list[dict[str, Any]]  # update operators, or a pipeline (an undo, ``changes.py``)
    array_filters: list[dict[str, Any]]
    pins: dict[str, dict[str, Any]]

    def entry(self, *, unconfirmed: bool = False) -> dict[str, Any]:
        """The document's entry on its journal page."""
        entry: dict[str, Any] = {"_id": self.document_id, "changes": [c.to_document() for c in self.changes]}
        if unconfirmed:
            entry["unconfirmed"] = True
        return entry


@dataclass(frozen=True)
class WriteOutcome:
    """What a journaled write did: documents ``written``; ``refused`` (``_id``, the server's or MongoDB's reason);
    ``skipped``, the ``_id`` s not written because another writer changed them between the read and the write (or
    they no longer match the query); and ``unconfirmed``, the ``_id`` s changed again as they were written
    (journaled, flagged: the counts cannot tell whether this write reached them)."""

    written: int
    refused: list[tuple[Any, str]]
    skipped: list[Any]
    unconfirmed: list[Any]

    def __add__(self, other: WriteOutcome) -> WriteOutcome:
        return WriteOutcome(
            self.written + other.written,
            self.refused + other.refused,
            self.skipped + other.skipped,
            self.unconfirmed + other.unconfirmed,
        )


NOTHING_WRITTEN = WriteOutcome(0, [], [], [])


@dataclass(frozen=True)
class ChangeJournal:
    """Journals one automation's writes in one Dagster run (or, with ``revert_of``, one revert of a run)."""

    database: Database
    run_id: str
    root_run_id: str
    stamp: datetime
    automation: str
    config_id: Any
    config_hash: str
    history_days: int
    # Whether an earlier attempt of this run (a step retry, a re-execution) may have left a page in doubt.
    resume: bool = False
    revert_of: str | None = None
    # Who or what started the run (its ``intervalprocessing/launched_by`` tag: a person, a schedule, a retry...).
    launched_by: str | None = None
    warn: Callable[[str], None] = lambda _message: None

    @classmethod
    def for_step(
        cls,
        context: OpExecutionContext,
        database: Database,
        *,
        automation: str,
        config_id: Any,
        config_hash: str,
        stamp: datetime,
        history_days: int,
        revert_of: str | None = None,
    ) -> ChangeJournal:
        """The journal of ``automation`` (its config document's ``_id`` and ``rules.config_hash``) for the step
        running in ``context``."""
        run = context.run
        return cls(
            database,
            run_id=run.run_id,
            root_run_id=run.root_run_id or run.run_id,
            stamp=stamp,
            automation=automation,
            config_id=config_id,
            config_hash=config_hash,
            history_days=history_days,
            resume=context.retry_number > 0 or run.parent_run_id is not None,
            revert_of=revert_of,
            launched_by=run.tags.get(LAUNCHED_BY_TAG),
            warn=context.log.warning,
        )

    @property
    def pages(self) -> Collection:
        return self.database[JOURNAL_COLLECTION]

    def apply(
        self,
        collection: Collection,
        query: MongoQuery,
        plan: UpdatePlan,
        *,
        deadline: float,
        batch_size: int,
        log: Callable[[str], None],
    ) -> ExecutionResult:
        """Apply ``plan`` to the documents ``query`` selects, journaled, in batches of ``batch_size`` (every write of
        an automation step; a dry run is ``execute.execute``'s). No ping first (``execute.reach``): the step's ledger
        claim and document read have just reached the server outside ``pymongo.timeout``, so an outage fails
        fast there."""
        started = time.monotonic()
        if self.resume:
            self.resolve_unfinished(log)
        shape = UpdateShape(plan, field_order(self.database))
        query_filter = (query.filter or {}) if query.pipeline is None else filter_of(query.pipeline)
        matched = modified = batches = retried = failed = contended = 0
        # The first few refused and contended documents, for the failure message; the counts are complete.
        refused: list[tuple[Any, str]] = []
        busy: list[Any] = []
        with within(deadline, f"the journaled update of {collection.name}"):
            if query_filter is not None:  # the query (or the pipeline's $match) is re-checked as each one is written
                conditions = [query_filter, *plan.conditions]
                cursor = collection.find(plan.filter(query_filter), shape.projection, batch_size=batch_size)
                documents = _batches(cursor, batch_size)
            else:  # a pipeline cannot be re-checked in a write filter; the plan's own conditions are
                conditions = list(plan.conditions)
                cursor = collection.aggregate(
                    [*query.pipeline, {"$project": {"_id": 1}}], allowDiskUse=True, batchSize=batch_size
                )
                documents = (
                    read_documents(collection, [doc["_id"] for doc in ids], shape.projection, conditions)
                    for ids in _batches(cursor, batch_size)
                )
            with cursor:
                for batch in documents:
                    if time.time() >= deadline:
                        raise DeadlineExceeded(
                            f"stopped after {batches} batch(es) of {batch_size}: {matched} matched, {modified} "
                            "modified, every change journaled; the next run continues"
                        )
                    outcome, again = self.apply_batch_until_written(collection, shape, plan, batch, conditions)
                    batches += 1
                    matched += len(batch)
                    modified += outcome.written
                    retried += again
                    failed += len(outcome.refused)
                    contended += len(outcome.skipped)
                    refused = (refused + outcome.refused)[:QUOTED_ERRORS]
                    busy = (busy + outcome.skipped)[:QUOTED_ERRORS]
                    log(
                        f"batch {batches}: {len(batch)} document(s) read, {outcome.written} modified and journaled"
                        f"{_retried(again, outcome)}{f', {len(outcome.refused)} refused' if outcome.refused else ''}"
                        f"{_unconfirmed(outcome)} ({time.monotonic() - started:.1f}s)"
                    )
        result = ExecutionResult(
            matched, modified, batches, time.monotonic() - started, False, retried=retried, contended=contended
        )
        if failed or contended:
            raise DocumentWriteErrors(result, failed, quote_refusals(refused), contended=busy)
        return result

    def apply_batch_until_written(
        self,
        collection: Collection,
        shape: UpdateShape,
        plan: UpdatePlan,
        documents: list[Mapping[str, Any]],
        conditions: list[dict[str, Any]],
    ) -> tuple[WriteOutcome, int]:
        """:meth:`apply_batch`, then the documents another writer changed between the read and the write read again
        and written again while they still match, up to ``WRITE_TRIES`` times in all: what one ``update_many`` does
        to a document that changes under it. Returns the outcome of every try (``skipped``: the documents still
        contended after the last) and how many documents were tried again."""
        outcome = self.apply_batch(collection, shape, plan, documents, conditions)
        pending = outcome.skipped + outcome.unconfirmed
        total = replace(outcome, skipped=[])
        retried = len(pending)
        for _ in range(WRITE_TRIES - 1):
            if not pending:
                break
            again = self.apply_batch(
                collection, shape, plan, read_documents(collection, pending, shape.projection, conditions), conditions
            )
            pending = again.skipped + again.unconfirmed
            total += replace(again, skipped=[])
        return replace(total, skipped=pending), retried

    def apply_batch(
        self,
        collection: Collection,
        shape: UpdateShape,
        plan: UpdatePlan,
        documents: list[Mapping[str, Any]],
        conditions: list[dict[str, Any]],
    ) -> WriteOutcome:
        """Journal and write ``plan`` on ``documents`` (read with ``shape.projection``)."""
        writes: list[PlannedWrite] = []
        refused: list[tuple[Any, str]] = []
        for document in documents:
            effect = shape.predict(document)
            if isinstance(effect, Refusal):
                refused.append((document["_id"], effect.message))
            elif effect is not None:
                writes.append(
                    PlannedWrite(document["_id"], effect.changes, plan.update, plan.array_filters, effect.pins)
                )
        return self.write(collection, writes, conditions) + WriteOutcome(0, refused, [], [])

    def write(
        self, collection: Collection, writes: list[PlannedWrite], conditions: list[dict[str, Any]]
    ) -> WriteOutcome:
        """Journal ``writes`` on one page and make them (steps 3-5 of docs/decisions/change-journal.md)."""
        if not writes:
            return NOTHING_WRITTEN
        self._ensure_indexes()
        page_id = ObjectId()
        try:
            self.pages.insert_one(self._page(page_id, collection.name, [write.entry() for write in writes]))
        except DocumentTooLarge:  # a page holds at most 16 MB: halve it (a single document's entry cannot be split)
            if len(writes) == 1:
                return WriteOutcome(
                    0,
                    [
                        (
                            writes[0].document_id,
                            "its journal entry would exceed MongoDB's 16 MB document limit, so it was not written",
                        )
                    ],
                    [],
                    [],
                )
            half = len(writes) // 2
            return self.write(collection, writes[:half], conditions) + self.write(collection, writes[half:], conditions)
        written, refused, doubtful, modified = _write(collection, writes, conditions)
        if not refused and not doubtful:
            self.pages.update_one({"_id": page_id}, {"$set": {"state": WRITTEN}})
            return WriteOutcome(len(writes), [], [], [])
        confirmed, unconfirmed = _settle(collection, [w for w in writes if w.document_id in doubtful])
        if len(written) + len(confirmed) == modified:
            unconfirmed = set()  # every document the server modified holds its new value: the others were not written
        kept = [w.entry() for w in writes if w.document_id in written or w.document_id in confirmed]
        kept += [w.entry(unconfirmed=True) for w in writes if w.document_id in unconfirmed]
        self._finish(page_id, kept)
        skipped = [w.document_id for w in writes if w.document_id in doubtful - confirmed - unconfirmed]
        return WriteOutcome(
            len(written) + len(confirmed),
            list(refused.items()),
            skipped,
            [w.document_id for w in writes if w.document_id in unconfirmed],
        )

    def resolve_unfinished(self, log: Callable[[str], None]) -> None:
        """Settle this run's pages for this automation still ``writing`` (an earlier attempt died mid-batch)."""
        for page in self.pages.find({"rootRunId": self.root_run_id, "automation": self.automation, "state": WRITING}):
            count = resolve_page(self.database, page)
            log(
                f"journal page {page['_id']} of an earlier attempt was left in doubt; {count} of its "
                f"{len(page['documents'])} document(s) hold the journaled change and keep their entries"
            )

    def _page(self, page_id: ObjectId, collection: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        page = {
            "_id": page_id,
            "runId": self.run_id,
            "rootRunId": self.root_run_id,
            "stamp": self.stamp,
            "automation": self.automation,
            "configId": self.config_id,
            "configHash": self.config_hash,
            "collection": collection,
            "createdAt": datetime.now(UTC),
            "state": WRITING,
        }
        if self.revert_of is not None:
            page["revertOf"] = self.revert_of
        if self.launched_by is not None:
            page["launchedBy"] = self.launched_by
        page["documents"] = entries
        return page

    def _finish(self, page_id: ObjectId, entries: list[dict[str, Any]]) -> None:
        if entries:
            self.pages.update_one({"_id": page_id}, {"$set": {"state": WRITTEN, "documents": entries}})
        else:
            self.pages.delete_one({"_id": page_id})

    def _ensure_indexes(self) -> None:
        """The TTL and undo indexes, once per process and database (``createIndexes`` is a no-op when they exist,
        but not free)."""
        key = (id(self.database.client), self.database.name, self.history_days)
        if key in _indexed:
            return
        for warning in ensure_journal_indexes(self.database, self.history_days):
            self.warn(f"the change is journaled, but {warning}")
        _indexed.add(key)


_indexed: set[tuple[int, str, int]] = set()


# By the client's identity (MongoClient compares equal to any client of the same address), with a weak reference to
# tell a live client from a dead one whose id was reused.
_field_orders: dict[int, tuple[weakref.ref[MongoClient], FieldOrder]] = {}


def field_order(database: Database) -> FieldOrder:
    """Where the server of ``database`` puts the fields one update creates (``changes.FieldOrder``), asked once per
    client: SecantusDB says so in ``buildInfo`` (``secantusVersion``) and applies an update's paths in its order;
    MongoDB (5.0 and later) sorts them (docs/decisions/update-model-and-field-order.md)."""
    client = database.client
    known = _field_orders.get(id(client))
    if known is not None and known[0]() is client:
        return known[1]
    order = FieldOrder.UPDATE if "secantusVersion" in client.admin.command("buildInfo") else FieldOrder.SORTED
    _field_orders[id(client)] = (weakref.ref(client), order)
    return order


def ensure_journal_indexes(database: Database, history_days: int) -> list[str]:
    """The journal's indexes; a warning for each the server refused (a refused index costs retention or undo speed,
    never a journal entry)."""
    undo = Lookup(
        [("rootRunId", 1), ("automation", 1)], "has no index for the undo, which will scan it", name=UNDO_INDEX
    )
    return ensure_history_indexes(
        database[JOURNAL_COLLECTION], ttl_field="createdAt", days=history_days, ttl_name=TTL_INDEX, lookups=(undo,)
    )


def resolve_page(database: Database, page: Mapping[str, Any]) -> int:
    """Settle a page left ``writing`` by reading its documents back; returns how many entries it keeps as written."""
    writes = [
        PlannedWrite(entry["_id"], tuple(change_from_document(c) for c in entry["changes"]), {}, [], {})
        for entry in page["documents"]
    ]
    confirmed, unconfirmed = _settle(database[page["collection"]], writes)
    kept = [w.entry() for w in writes if w.document_id in confirmed]
    kept += [w.entry(unconfirmed=True) for w in writes if w.document_id in unconfirmed]
    pages = database[JOURNAL_COLLECTION]
    if kept:
        pages.update_one({"_id": page["_id"]}, {"$set": {"state": WRITTEN, "documents": kept}})
    else:
        pages.delete_one({"_id": page["_id"]})
    return len(confirmed)


def read_documents(
    collection: Collection, ids: list[Any], projection: Mapping[str, Any], conditions: list[dict[str, Any]]
) -> list[Mapping[str, Any]]:
    """The documents with these ``_id`` s that meet ``conditions``, projected, ``IDS_PER_READ`` ids per query."""
    found: list[Mapping[str, Any]] = []
    for chunk in _chunks(ids, IDS_PER_READ):
        found.extend(collection.find(conjoin([_ids_clause(chunk), *conditions]), projection))
    return found


def conjoin(filters: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One filter requiring all of ``filters``, merged field by field where they do not contradict each other (the
    query's ``{status: "Open"}`` and a pin ``{status: {$eq: "Open"}}`` are one condition), ``$and`` for the rest.

    Flat is not only shorter: SecantusDB uses the ``_id`` index only for a filter without a top-level operator (with
    ``$and`` it scans the collection for every statement); MongoDB plans both alike.
    """
    merged: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    pending = list(filters)
    while pending:
        for key, condition in pending.pop(0).items():
            if key == "$and":
                pending.extend(condition)
            elif key.startswith("$"):
                rest.append({key: condition})
            elif key not in merged:
                merged[key] = condition
            else:
                combined = _combine(merged[key], condition)
                if combined is None:
                    rest.append({key: condition})
                else:
                    merged[key] = combined
    if rest:
        merged["$and"] = rest
    return merged


def _combine(left: Any, right: Any) -> dict[str, Any] | Any | None:
    """Two conditions on one field as one, or None when they cannot share a document of operators."""
    if same_value(left, right):
        return left
    left_ops, right_ops = _operators(left), _operators(right)
    for operator, value in right_ops.items():
        if operator in left_ops and not same_value(left_ops[operator], value):
            return None
    return {**left_ops, **right_ops}


def _operators(condition: Any) -> dict[str, Any]:
    """A field condition as a document of operators (a literal value is ``$eq``)."""
    if isinstance(condition, Mapping) and condition and all(str(key).startswith("$") for key in condition):
        return dict(condition)
    return {"$eq": condition}


def _write(
    collection: Collection, writes: list[PlannedWrite], conditions: list[dict[str, Any]]
) -> tuple[set[Any], dict[Any, str], set[Any], int]:
    """Step 4 and the first half of step 5: the ``_id`` s certainly written, those refused (with the reason), those
    in doubt (to be read back), and how many documents the server modified in all."""
    groups: dict[bytes, list[PlannedWrite]] = {}
    for write in writes:
        key = bson.encode({"u": write.update, "f": write.array_filters, "p": write.pins})
        groups.setdefault(key, []).append(write)
    statements = [
        UpdateMany(
            conjoin([_ids_clause([w.document_id for w in chunk]), *_pin_filters(members[0]), *conditions]),
            members[0].update,
            array_filters=members[0].array_filters or None,
        )
        for members in groups.values()
        for chunk in _chunks(members, IDS_PER_STATEMENT)
    ]
    modified, errors = _bulk(collection, statements)
    ids = {write.document_id for write in writes}
    if not errors and modified == len(writes):
        return ids, {}, set(), modified
    # Some document was not modified. Send each on its own: one already written no longer matches its pins, and the
    # server's refusal of one now names it.
    singles = [
        UpdateOne(
            conjoin([{"_id": w.document_id}, *_pin_filters(w), *conditions]),
            w.update,
            array_filters=w.array_filters or None,
        )
        for w in writes
    ]
    resent, errors = _bulk(collection, singles)
    refused = {writes[error["index"]].document_id: _server_message(error) for error in errors}
    if modified + resent + len(refused) == len(writes):
        return ids - set(refused), refused, set(), modified + resent
    return set(), refused, ids - set(refused), modified + resent


def _settle(collection: Collection, writes: list[PlannedWrite]) -> tuple[set[Any], set[Any]]:
    """Read ``writes`` back: the ``_id`` s holding every recorded *after* value (written), and those holding neither
    the *after* nor the *before* values (changed again at that moment: unconfirmed). The rest were not written."""
    if not writes:
        return set(), set()
    paths = [change.path for write in writes for change in write.changes]
    current = {
        doc["_id"]: doc for doc in read_documents(collection, [w.document_id for w in writes], projection_of(paths), [])
    }
    confirmed, unconfirmed = set(), set()
    for write in writes:
        document = current.get(write.document_id)
        if document is None:
            continue  # deleted since: nothing of it to undo
        if all(change.holds_after(document) for change in write.changes):
            confirmed.add(write.document_id)
        elif not all(change.holds_before(document) for change in write.changes):
            unconfirmed.add(write.document_id)
    return confirmed, unconfirmed


def _retried(again: int, outcome: WriteOutcome) -> str:
    if not again:
        return ""
    left = f", {len(outcome.skipped)} still contended" if outcome.skipped else ""
    return f" ({again} changed by another writer meanwhile, read and written again{left})"


def _unconfirmed(outcome: WriteOutcome) -> str:
    if not outcome.unconfirmed:
        return ""
    return (
        f", {len(outcome.unconfirmed)} changed by another writer as they were written (journaled, flagged unconfirmed)"
    )


def _bulk(collection: Collection, statements: list[UpdateOne | UpdateMany]) -> tuple[int, list[dict[str, Any]]]:
    """One unordered bulk write: documents modified, and the server's errors (each with its statement's index)."""
    try:
        return collection.bulk_write(statements, ordered=False).modified_count, []
    except BulkWriteError as exc:
        return exc.details.get("nModified", 0), exc.details.get("writeErrors", [])


def _pin_filters(write: PlannedWrite) -> list[dict[str, Any]]:
    return [{path: condition} for path, condition in write.pins.items()]


def _ids_clause(ids: list[Any]) -> dict[str, Any]:
    return {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}


def _server_message(error: Mapping[str, Any]) -> str:
    return str(error.get("errmsg") or error)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batches(cursor: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in cursor:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
