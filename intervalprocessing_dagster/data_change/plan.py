"""Turn an :class:`Automation` into the one MongoDB update that carries it out (pure functions, no I/O).

One update document per automation, applied with ``update_many`` (or per ``_id`` for pipelines), so each document
changes atomically: every element of the automation, or none. The differences from the old app (spec §3.3, §5):

* Array Change/Remove use ``$[]`` (every element) or ``$[eN]`` with an ``arrayFilters`` entry on ``matchingValue``;
  the old ``$[elem]`` without a filter and the positional ``$`` without the array in the query were always refused.
* MongoDB refuses those array updates on a document that lacks the array ("The path ... must exist"), which would
  stop an ``update_many`` part-way; so such an automation only selects documents where the array exists. (Its other
  elements then skip those documents too: the price of one atomic update per document, which keeps a field change
  from altering what the query matches before the array change is applied.)
* An array Add pushes ``{<property>: value, source: "<name> Query Automation", date: <run stamp>}`` onto any array,
  guarded by "no element with this source, date and value yet", so a retry of the same run pushes nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from intervalprocessing_dagster.data_change.rules import Automation, UpdateType


@dataclass(frozen=True)
class UpdatePlan:
    """The update for one automation; ``conditions`` are ANDed with whatever selects the documents."""

    update: dict[str, dict[str, Any]]
    array_filters: list[dict[str, Any]]
    conditions: list[dict[str, Any]]

    def filter(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """The write filter: ``base`` (the automation's query, or an ``_id`` batch) plus this plan's conditions."""
        if not self.conditions:
            return dict(base)
        return {"$and": [dict(base), *self.conditions]}


def push_date(stamp: datetime) -> datetime:
    """The run stamp as BSON stores it (UTC, milliseconds), so the idempotency guard compares equal values."""
    stamp = stamp.astimezone(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def build_plan(automation: Automation, stamp: datetime) -> UpdatePlan:
    """The update, array filters and guard conditions for ``automation`` in the run stamped ``stamp``."""
    operators: dict[str, dict[str, Any]] = {}
    array_filters: list[dict[str, Any]] = []
    conditions: list[dict[str, Any]] = []

    def put(operator: str, path: str, value: Any) -> None:
        operators.setdefault(operator, {})[path] = value

    for field in automation.field_updates:
        if field.update_type in (UpdateType.ADD, UpdateType.CHANGE):
            put("$set", field.path, field.value)
        elif field.update_type is UpdateType.REMOVE:
            put("$set", field.path, "")
        else:
            put("$unset", field.path, "")

    date = push_date(stamp)
    for index, element in enumerate(automation.array_updates):
        if element.update_type is UpdateType.ADD:
            pushed = {element.property_name: element.value, "source": automation.source, "date": date}
            put("$push", element.array_path, pushed)
            conditions.append({element.array_path: {"$not": {"$elemMatch": pushed}}})
        elif element.update_type is UpdateType.DELETE:
            put("$pull", element.array_path, {element.property_name: element.value})
        else:
            value = element.value if element.update_type is UpdateType.CHANGE else ""
            if element.matching is None:
                positional = "$[]"
            else:
                identifier = f"e{index}"
                positional = f"$[{identifier}]"
                array_filters.append({f"{identifier}.{element.property_name}": element.matching.value})
            put("$set", f"{element.array_path}.{positional}.{element.property_name}", value)
            exists = {element.array_path: {"$type": "array"}}
            if exists not in conditions:
                conditions.append(exists)
    return UpdatePlan(update=operators, array_filters=array_filters, conditions=conditions)
