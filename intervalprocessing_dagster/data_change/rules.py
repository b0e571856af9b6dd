"""Read one ``dataupdateconfigs`` document (the old schema, spec §3.1) into a validated :class:`Automation`.

The old app deserialized these documents without checking them: a missing element array crashed mid-run, an unknown
``updateType`` threw half-way through the writes, two elements on one path silently overwrote each other, and an
empty update reached the server as an invalid command (spec §3.3-§3.4). Here a document is checked completely before
anything is written, and *every* problem is reported at once, each naming the automation and the field, so an
operator fixes a config in one pass instead of one crash at a time.

Compatibility: the field names, the ``updateType`` spellings (enum name or its number 0-3) and the exact
``runCadence`` strings are the old ones; unknown fields are ignored as before. New and optional: ``matchingValue`` on
an array element (which elements a Change/Remove applies to), non-string values, which keep their BSON type, and
``maxDocuments`` (the most documents one run of the automation may match: a whole number, a percentage of its
collection such as ``"5%"``, or both, ``"5000, 5%"``; the smaller applies; see ``guard.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.mongo.shell_syntax import MongoQuery, parse_query
from intervalprocessing_dagster.settings import Limit, parse_limit

CONFIG_COLLECTION = "dataupdateconfigs"

# Fields a pushed array element gets from the automation itself (spec §3.3); the configured property may not be one.
PUSH_METADATA_FIELDS = ("source", "date")

_Problem = Callable[[str, str], None]  # reports one problem: ``problem(field, message)``


class UpdateType(Enum):
    """The old C# enum; its number is what an int-stored ``updateType`` means."""

    ADD = 0
    CHANGE = 1
    REMOVE = 2
    DELETE = 3

    @property
    def label(self) -> str:
        """The stored spelling, e.g. ``Add``."""
        return self.name.capitalize()


@dataclass(frozen=True)
class FieldUpdate:
    """One ``singleFieldUpdateElements`` entry: Add/Change set ``value``, Remove blanks, Delete unsets."""

    path: str
    update_type: UpdateType
    value: Any


@dataclass(frozen=True)
class Matching:
    """Which array elements a Change/Remove applies to: those whose property equals ``value``."""

    value: Any


@dataclass(frozen=True)
class ArrayUpdate:
    """One ``arrayObjectFieldUpdateElements`` entry; ``matching`` is None when it applies to every element."""

    array_path: str
    property_name: str
    update_type: UpdateType
    value: Any
    matching: Matching | None


@dataclass(frozen=True)
class Automation:
    """A validated automation, ready to plan."""

    name: str
    collection: str
    query: MongoQuery
    cadence: Cadence
    is_active: bool
    field_updates: tuple[FieldUpdate, ...]
    array_updates: tuple[ArrayUpdate, ...]
    max_documents: Limit | None = None

    @property
    def source(self) -> str:
        """The ``source`` written on pushed array elements, as the old app wrote it."""
        return f"{self.name} Query Automation"


class InvalidAutomationError(ValueError):
    """A config document that cannot run; ``problems`` lists each one as ``<field>: <what is wrong>``."""

    def __init__(self, label: str, problems: list[str]) -> None:
        self.label = label
        self.problems = problems
        listing = "\n".join(f"- {problem}" for problem in problems)
        count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
        super().__init__(f"automation {label} in {CONFIG_COLLECTION} is invalid ({count}):\n{listing}")


def automation_label(document: Mapping[str, Any]) -> str:
    """How messages name a config document: its quoted name, or its ``_id`` when it has no usable name."""
    name = document.get("name")
    if isinstance(name, str) and name.strip():
        return repr(name)
    return f"<unnamed, _id {document.get('_id')}>"


def config_hash(document: Mapping[str, Any]) -> str:
    """A short fingerprint of a config document exactly as stored (every field, BSON types included).

    Run records and journal entries carry it, so "which version of the automation did this?" has an answer after
    the document has been edited: equal documents hash alike whatever their key order, and a changed value, field or
    type changes the hash.
    """
    canonical = json_util.dumps(_sorted(document), json_options=CANONICAL_JSON_OPTIONS, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _sorted(value: Any) -> Any:
    """``value`` with every sub-document's keys in sorted order (array order is meaningful and kept)."""
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def parse_automation(document: Mapping[str, Any]) -> Automation:
    """Validate ``document`` completely; raise :class:`InvalidAutomationError` listing every problem found."""
    label = automation_label(document)
    problems: list[str] = []

    def problem(field: str, message: str) -> None:
        problems.append(f"{field}: {message}")

    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        problem("name", f"must be a non-empty string, got {_describe(document, 'name')}")

    collection = document.get("collectionName")
    collection_problem = _collection_name_problem(collection)
    if collection_problem:
        problem("collectionName", collection_problem)

    query: MongoQuery | None = None
    if "query" not in document:
        problem("query", "is missing")
    else:
        try:
            query = parse_query(document["query"], source=f"{CONFIG_COLLECTION} {label} field 'query'")
        except ValueError as exc:  # QuerySyntaxError / ForbiddenQueryError: the message has source and position
            problem("query", str(exc))

    is_active = document.get("isActive")
    if not isinstance(is_active, bool):
        problem("isActive", f"must be true or false, got {_describe(document, 'isActive')}")

    cadence_value = document.get("runCadence")
    cadence = next((c for c in Cadence if c.value == cadence_value), None)
    if cadence is None:
        valid = ", ".join(c.value for c in Cadence)
        problem("runCadence", f"must be exactly one of {valid}, got {_describe(document, 'runCadence')}")

    max_documents: Limit | None = None
    if "maxDocuments" in document:
        try:
            max_documents = parse_limit(document["maxDocuments"])
        except ValueError as exc:
            problem("maxDocuments", str(exc))

    field_updates = _parse_field_updates(document, problem)
    array_updates = _parse_array_updates(document, problem)
    if (
        isinstance(document.get("singleFieldUpdateElements"), list)
        and isinstance(document.get("arrayObjectFieldUpdateElements"), list)
        and not document["singleFieldUpdateElements"]
        and not document["arrayObjectFieldUpdateElements"]
    ):
        problem("singleFieldUpdateElements/arrayObjectFieldUpdateElements", "both are empty: nothing to update")
    _check_overlaps(field_updates, array_updates, problem)

    if problems:
        raise InvalidAutomationError(label, problems)
    return Automation(
        name=cast(str, name),
        collection=cast(str, collection),
        query=cast(MongoQuery, query),
        cadence=cast(Cadence, cadence),
        is_active=cast(bool, is_active),
        field_updates=tuple(update for _, update in field_updates),
        array_updates=tuple(update for _, update in array_updates),
        max_documents=max_documents,
    )


def _parse_field_updates(document: Mapping[str, Any], problem: _Problem) -> list[tuple[str, FieldUpdate]]:
    """Each valid single-field element with the field label used in messages (invalid ones are reported)."""
    updates: list[tuple[str, FieldUpdate]] = []
    for where, element in _elements(document, "singleFieldUpdateElements", problem):
        path = element.get("elementName")
        update_type = _update_type(element, where, problem)
        path_problem = _path_problem(path)
        if path_problem:
            problem(f"{where}.elementName", path_problem)
        value = element.get("elementValue")
        if update_type in (UpdateType.ADD, UpdateType.CHANGE):
            if "elementValue" not in element:
                problem(f"{where}.elementValue", f"is missing ({update_type.label} sets it)")
            else:
                _check_value(value, f"{where}.elementValue", problem)
        if update_type is not None and not path_problem:
            updates.append((where, FieldUpdate(path=path, update_type=update_type, value=value)))
    return updates


def _parse_array_updates(document: Mapping[str, Any], problem: _Problem) -> list[tuple[str, ArrayUpdate]]:
    """Each valid array element with the field label used in messages (invalid ones are reported)."""
    updates: list[tuple[str, ArrayUpdate]] = []
    for where, element in _elements(document, "arrayObjectFieldUpdateElements", problem):
        array_path = element.get("arrayProperty")
        property_name = element.get("matchingPropertyName")
        update_type = _update_type(element, where, problem)
        valid = True
        path_problem = _path_problem(array_path)
        if path_problem:
            problem(f"{where}.arrayProperty", path_problem)
            valid = False
        if not isinstance(property_name, str) or not _FIELD_NAME.fullmatch(property_name):
            problem(
                f"{where}.matchingPropertyName",
                "must be one field name (no '.', not starting with '$'), got "
                + _describe(element, "matchingPropertyName"),
            )
            valid = False
        elif update_type is UpdateType.ADD and property_name in PUSH_METADATA_FIELDS:
            problem(f"{where}.matchingPropertyName", f"{property_name!r} is written by the automation itself on Add")
            valid = False
        value = element.get("newValue")
        if update_type in (UpdateType.ADD, UpdateType.CHANGE, UpdateType.DELETE):
            if "newValue" not in element:
                problem(f"{where}.newValue", f"is missing ({update_type.label} uses it)")
                valid = False
            else:
                _check_value(value, f"{where}.newValue", problem)
        matching: Matching | None = None
        if "matchingValue" in element:
            if update_type in (UpdateType.CHANGE, UpdateType.REMOVE):
                matching = Matching(element["matchingValue"])
                _check_value(matching.value, f"{where}.matchingValue", problem)
            elif update_type is not None:
                problem(
                    f"{where}.matchingValue",
                    f"only applies to Change and Remove; {update_type.label} "
                    + ("pushes a new element" if update_type is UpdateType.ADD else "pulls elements equal to newValue"),
                )
        if update_type is not None and valid:
            updates.append((where, ArrayUpdate(array_path, property_name, update_type, value, matching)))
    return updates


def _elements(document: Mapping[str, Any], field: str, problem: _Problem) -> list[tuple[str, Mapping[str, Any]]]:
    """The entries of an element array with their message label; a missing array is a problem (it crashed the old
    app with a NullReferenceException), an empty one is fine."""
    elements = document.get(field)
    if not isinstance(elements, list):
        problem(field, f"must be an array (it may be empty), got {_describe(document, field)}")
        return []
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for index, element in enumerate(elements):
        where = f"{field}[{index}]"
        if isinstance(element, Mapping):
            entries.append((where, element))
        else:
            problem(where, f"must be a document, got {type(element).__name__}")
    return entries


def _update_type(element: Mapping[str, Any], where: str, problem: _Problem) -> UpdateType | None:
    raw = element.get("updateType")
    if isinstance(raw, str):
        found = next((t for t in UpdateType if t.label == raw), None)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        found = next((t for t in UpdateType if t.value == raw), None)
    else:
        found = None
    if found is None:
        problem(
            f"{where}.updateType",
            f"must be Add, Change, Remove or Delete (or 0-3), got {_describe(element, 'updateType')}",
        )
    return found


_FIELD_NAME = re.compile(r"[^.$\x00][^.\x00]*")


def _path_problem(path: Any) -> str | None:
    """Why ``path`` cannot be an update target (dotted paths into sub-documents are fine), or None."""
    if not isinstance(path, str) or not path:
        return f"must be a non-empty field path, got {path!r}"
    parts = path.split(".")
    if not all(_FIELD_NAME.fullmatch(part) for part in parts):
        return f"{path!r} is not a field path (empty part, a part starting with '$', or a NUL character)"
    if parts[0] == "_id":
        return f"{path!r} would change the document's _id, which MongoDB never allows"
    return None


def _collection_name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return f"must be a non-empty string, got {name!r}"
    if "$" in name or "\x00" in name or name.startswith("system."):
        return f"{name!r} is not a collection an automation may update"
    return None


def _check_value(value: Any, field: str, problem: _Problem) -> None:
    """A value is written as stored; a ``$``-key inside it would be read by MongoDB as an operator instead."""
    bad_key = _operator_key(value)
    if bad_key is not None:
        problem(field, f"contains the key {bad_key!r}; values are written literally and may not hold '$' keys")


def _operator_key(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if str(key).startswith("$"):
                return str(key)
            found = _operator_key(inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = _operator_key(inner)
            if found is not None:
                return found
    return None


def paths_conflict(left: str, right: str) -> bool:
    """Whether MongoDB refuses one update touching both paths (error 40, ConflictingUpdateOperators): one is the
    other or lies inside it, or at the same level one names an array's elements (``$[]``, ``$[<id>]``) and the other
    a field or an index (``notes.$[].text`` and ``notes.0.date``: the array is updated element-wise and by field)."""
    for a, b in zip(left.split("."), right.split("."), strict=False):
        if a != b:
            return _positional(a) != _positional(b)
    return True


def _positional(part: str) -> bool:
    return part.startswith("$[")


def _check_overlaps(
    field_updates: list[tuple[str, FieldUpdate]], array_updates: list[tuple[str, ArrayUpdate]], problem: _Problem
) -> None:
    """Two elements whose paths are equal, nested or meet one array both element-wise and by field would overwrite
    each other (the old ``Combine`` kept the last one silently) or make MongoDB refuse the whole update, for every
    document, as a conflict; either way the config cannot run as written."""
    touched: list[tuple[str, str]] = [(where, u.path) for where, u in field_updates]
    for where, update in array_updates:
        if update.update_type in (UpdateType.CHANGE, UpdateType.REMOVE):
            # "$[]": whichever elements it matches (two of them on one property may both match an element)
            touched.append((where, f"{update.array_path}.$[].{update.property_name}"))
        else:
            touched.append((where, update.array_path))  # push and pull rewrite the whole array
    for index, (where, path) in enumerate(touched):
        for other_where, other in touched[:index]:
            if path == other:
                problem(
                    where, f"touches {path!r}, which overlaps {other!r} of {other_where}: one would overwrite the other"
                )
            elif paths_conflict(path, other):
                problem(
                    where,
                    f"touches {path!r}, which overlaps {other!r} of {other_where}: MongoDB refuses an "
                    "update touching both (error 40, ConflictingUpdateOperators), so no document could "
                    "be updated",
                )


def _describe(document: Mapping[str, Any], field: str) -> str:
    return "nothing (missing)" if field not in document else f"{document[field]!r}"
