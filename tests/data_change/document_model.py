"""What the change model says a document becomes: the oracle the MongoDB-cases tests hold against the server."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from intervalprocessing_dagster.data_change.changes import Change, FieldOrder, path_key


def document_after(document: Mapping[str, Any], changes: Iterable[Change], order: FieldOrder) -> dict[str, Any]:
    """``document`` once ``changes`` are made, as a server applying paths in ``order`` stores it (a field a change
    creates goes at the end of its parent): what a journal entry claims the write left, field order included."""
    result = copy.deepcopy(dict(document))
    listed = sorted(changes, key=lambda change: path_key(change.path)) if order is FieldOrder.SORTED else changes
    for change in listed:
        change.make(result)
    return result
