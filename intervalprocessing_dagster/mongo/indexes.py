"""Indexes of the platform's own history (the change journal, the run ledger): a TTL index and the lookups.

Retention by TTL index: MongoDB deletes a document once its TTL field is older than the index's
``expireAfterSeconds``. Changing the window (``AUTOMATION_HISTORY_DAYS``) must not need anyone to drop an index by
hand: ``createIndexes`` with another ``expireAfterSeconds`` is refused as an option conflict, so the existing index is
moved with ``collMod`` instead.

A refused index costs the history its expiry or a lookup its speed, never an automation its run or a change its
journal entry, so :func:`ensure_history_indexes` returns a warning for each refusal instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

# The server's codes for "an index with this key or name exists with other options" (IndexOptionsConflict,
# IndexKeySpecsConflict).
_INDEX_CONFLICT_CODES = (85, 86)


def ensure_ttl_index(collection: Collection, field: str, days: int, name: str) -> None:
    """Documents of ``collection`` expire ``days`` after their ``field`` (a date); an existing index on ``field``
    with another window gets this one. ``OperationFailure`` if the server refuses both."""
    seconds = days * 24 * 3600
    try:
        collection.create_index(field, name=name, expireAfterSeconds=seconds)
    except OperationFailure as exc:
        if exc.code not in _INDEX_CONFLICT_CODES:
            raise
        collection.database.command(
            "collMod", collection.name, index={"keyPattern": {field: 1}, "expireAfterSeconds": seconds}
        )


@dataclass(frozen=True)
class Lookup:
    """An index a history collection is read by, and what its absence costs (the warning's words)."""

    keys: Sequence[tuple[str, int]]
    if_refused: str
    name: str | None = None  # None: MongoDB's default name from the keys
    unique: bool = False


def ensure_history_indexes(
    collection: Collection, *, ttl_field: str, days: int, ttl_name: str, lookups: Sequence[Lookup]
) -> list[str]:
    """The TTL index on ``ttl_field`` (``days``) and each of ``lookups``; a warning for each the server refused."""
    warnings = []
    try:
        ensure_ttl_index(collection, ttl_field, days, ttl_name)
    except OperationFailure as exc:
        warnings.append(f"{collection.name} entries do not expire after {days} days (no TTL index): {exc}")
    for lookup in lookups:
        try:
            named = {"name": lookup.name} if lookup.name else {}
            collection.create_index(list(lookup.keys), unique=lookup.unique, **named)
        except OperationFailure as exc:
            warnings.append(f"{collection.name} {lookup.if_refused}: {exc}")
    return warnings
