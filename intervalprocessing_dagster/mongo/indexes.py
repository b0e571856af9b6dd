"""Retention by TTL index: the platform's own records (the change journal, the run ledger) expire after a window.

MongoDB deletes a document once its TTL field is older than the index's ``expireAfterSeconds``. Changing the window
(``AUTOMATION_HISTORY_DAYS``) must not need anyone to drop an index by hand: ``createIndexes`` with another
``expireAfterSeconds`` is refused as an option conflict, so the existing index is moved with ``collMod`` instead.
"""

from __future__ import annotations

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
