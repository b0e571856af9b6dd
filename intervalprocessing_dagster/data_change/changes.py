"""What an automation's update does to one document, worked out from the document as read, and what undoes it.

Without I/O, for the change journal (``journal.py``): :class:`UpdateShape` applies a plan's update with MongoDB's rules
and field order and answers the changes (what the write changes, recorded so that an undo is exact), the pins (query
conditions that hold while the fields still have the values the changes were computed from), a :class:`Refusal`, or
``None`` for MongoDB's no-op; :func:`restore_document` gives the write that undoes recorded changes, or a conflict.
Values compare as MongoDB decides a no-op (:func:`same_value`), elements as its queries do (:func:`query_matches`).

Checked against 80 of MongoDB's own update cases (``tests/data_change/test_data_change_mongodb_cases.py``). What each
answer holds, and why the model is built this way: docs/decisions/update-model-and-field-order.md.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import bson
from bson.decimal128 import Decimal128
from bson.regex import Regex

from intervalprocessing_dagster.data_change.plan import UpdatePlan
from intervalprocessing_dagster.data_change.rules import paths_conflict


class _Missing:
    """The value of a path the document does not have (distinct from null)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def value_at(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` (a whole-number part indexes an array), or ``MISSING``."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and _is_index(part) and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def same_value(left: Any, right: Any) -> bool:
    """Whether two values are stored alike (BSON type and bytes; ``MISSING`` equals only itself)."""
    if left is MISSING or right is MISSING:
        return left is right
    return bson.encode({"v": left}) == bson.encode({"v": right})


def query_matches(value: Any, expected: Any) -> bool:
    """MongoDB's query equality ``{field: expected}`` for a field holding ``value`` (``MISSING`` when absent)."""
    if isinstance(expected, (Regex, re.Pattern)):
        pattern = expected.try_compile() if isinstance(expected, Regex) else expected
        candidates = value if isinstance(value, list) else [value]
        return any(isinstance(item, str) and pattern.search(item) is not None for item in candidates)
    if expected is None:
        return value is MISSING or value is None or (isinstance(value, list) and any(v is None for v in value))
    if value is MISSING:
        return False
    return _equal(value, expected) or (isinstance(value, list) and any(_equal(item, expected) for item in value))


def fingerprint(value: Any) -> str:
    """A short hash of a value as stored, to recognise it later without keeping it."""
    return hashlib.sha256(bson.encode({"v": value})).hexdigest()[:16]


def pin(value: Any) -> dict[str, Any]:
    """The query condition that holds while a field has ``value`` (its precision:
    docs/decisions/update-model-and-field-order.md)."""
    if value is MISSING:
        return {"$exists": False}
    if value is None:
        return {"$type": "null"}
    return {"$eq": value}


@dataclass(frozen=True)
class Refusal:
    """MongoDB refuses the update for this document; ``message`` says why, naming the path."""

    message: str


@dataclass(frozen=True)
class Restoration:
    """What undoing a document's recorded changes takes, as :func:`restore_document` found the document now.

    ``state`` is ``restore`` (``update`` and ``pins`` put the recorded values back; ``changes`` is what that write
    changes, journaled in turn), ``already`` (the document holds the values from before, nothing to do) or
    ``conflict`` (``reason``: the document changed since, and is left as it is).
    """

    state: str
    changes: tuple[Change, ...] = ()
    update: dict[str, dict[str, Any]] | list[dict[str, Any]] = field(default_factory=dict)
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str = ""


RESTORE, ALREADY, CONFLICT = "restore", "already", "conflict"


@dataclass(frozen=True)
class _Undo:
    """One change's part of a :class:`Restoration`: its state, and for ``restore`` the write and what it changes."""

    state: str
    change: Change | None = None
    update: tuple[str, str, Any] | None = None  # (operator, path, value)
    pin_value: Any = MISSING
    reason: str = ""
    preceding: tuple[str, ...] | None = None  # a top-level field set again: the fields it goes after


@dataclass(frozen=True)
class SetChange:
    """``path`` held ``before`` and now holds ``after`` (either may be ``MISSING``). ``preceding``: for a top-level
    field the write removed from the middle of the document, the names of the fields before it, so that the undo
    puts it back there (setting it again would append it)."""

    path: str
    before: Any
    after: Any
    preceding: tuple[str, ...] | None = None

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": "set", "path": self.path}
        if self.before is not MISSING:
            document["before"] = self.before
        if self.after is not MISSING:
            document["after"] = self.after
        if self.preceding is not None:
            document["preceding"] = list(self.preceding)
        return document

    def holds_after(self, document: Mapping[str, Any]) -> bool:
        return same_value(value_at(document, self.path), self.after)

    def holds_before(self, document: Mapping[str, Any]) -> bool:
        return same_value(value_at(document, self.path), self.before)

    def make(self, document: dict[str, Any]) -> None:
        container, name = _container(document, self.path)
        if self.after is MISSING:
            del container[name]
        elif isinstance(container, list):
            container[int(name)] = copy.deepcopy(self.after)
        else:
            container[name] = copy.deepcopy(self.after)

    def undo(self, document: Mapping[str, Any]) -> _Undo:
        now = value_at(document, self.path)
        if same_value(now, self.after):
            update = ("$unset", self.path, "") if self.before is MISSING else ("$set", self.path, self.before)
            return _Undo(RESTORE, SetChange(self.path, now, self.before), update, now, preceding=self.preceding)
        if same_value(now, self.before):
            return _Undo(ALREADY)
        return _Undo(CONFLICT, reason=f"{self.path} is now {_show(now)}, the automation wrote {_show(self.after)}")


@dataclass(frozen=True)
class PushChange:
    """``element`` was appended to the array at ``path``; ``created``: the array did not exist before."""

    path: str
    element: Any
    created: bool

    def to_document(self) -> dict[str, Any]:
        return {"kind": "push", "path": self.path, "element": self.element, "created": self.created}

    def holds_after(self, document: Mapping[str, Any]) -> bool:
        now = value_at(document, self.path)
        return isinstance(now, list) and any(same_value(item, self.element) for item in now)

    def holds_before(self, document: Mapping[str, Any]) -> bool:
        now = value_at(document, self.path)
        if self.created:
            return now is MISSING
        return isinstance(now, list) and not any(same_value(item, self.element) for item in now)

    def make(self, document: dict[str, Any]) -> None:
        if self.created:
            container, name = _container(document, self.path)
            container[name] = [copy.deepcopy(self.element)]
        else:
            value_at(document, self.path).append(copy.deepcopy(self.element))

    def undo(self, document: Mapping[str, Any]) -> _Undo:
        now = value_at(document, self.path)
        if isinstance(now, list):
            index = next((i for i, item in enumerate(now) if same_value(item, self.element)), None)
            if index is not None:
                kept = now[:index] + now[index + 1 :]
                if self.created and not kept:
                    return _Undo(RESTORE, SetChange(self.path, now, MISSING), ("$unset", self.path, ""), now)
                return _Undo(RESTORE, PullChange.of(self.path, now, [index]), ("$set", self.path, kept), now)
        if self.holds_before(document):
            return _Undo(ALREADY)
        return _Undo(CONFLICT, reason=f"{self.path} is now {_show(now)}, without the element the automation added")


@dataclass(frozen=True)
class PullChange:
    """The elements ``removed`` (``(index, element)`` in the array before) were pulled from the array at ``path``,
    leaving ``kept_length`` elements whose :func:`fingerprint` is ``kept_fingerprint``."""

    path: str
    removed: tuple[tuple[int, Any], ...]
    kept_length: int
    kept_fingerprint: str

    @classmethod
    def of(cls, path: str, array: list[Any], indexes: list[int]) -> PullChange:
        """The change that removes the elements at ``indexes`` from ``array``."""
        removed = set(indexes)
        kept = [item for i, item in enumerate(array) if i not in removed]
        return cls(path, tuple((i, array[i]) for i in indexes), len(kept), fingerprint(kept))

    def to_document(self) -> dict[str, Any]:
        return {
            "kind": "pull",
            "path": self.path,
            "removed": [{"index": index, "element": element} for index, element in self.removed],
            "keptLength": self.kept_length,
            "keptFingerprint": self.kept_fingerprint,
        }

    # Both tests allow elements appended since (the application pushing notes as the pull is written): what decides
    # is whether the array still starts with the removed elements at their indexes, or with what the pull left.
    def holds_after(self, document: Mapping[str, Any]) -> bool:
        now = value_at(document, self.path)
        return (
            isinstance(now, list)
            and len(now) >= self.kept_length
            and fingerprint(now[: self.kept_length]) == self.kept_fingerprint
        )

    def holds_before(self, document: Mapping[str, Any]) -> bool:
        now = value_at(document, self.path)
        length = self.kept_length + len(self.removed)
        if not isinstance(now, list) or len(now) < length:
            return False
        indexes = {index for index, _ in self.removed}
        kept = [item for i, item in enumerate(now[:length]) if i not in indexes]
        return (
            all(same_value(now[index], element) for index, element in self.removed)
            and fingerprint(kept) == self.kept_fingerprint
        )

    def make(self, document: dict[str, Any]) -> None:
        array = value_at(document, self.path)
        for index, _ in reversed(self.removed):
            del array[index]

    def undo(self, document: Mapping[str, Any]) -> _Undo:
        """Put the removed elements back at their indexes while the array still starts with what the pull left
        (elements appended since, such as notes pushed by later runs, stay after them)."""
        now = value_at(document, self.path)
        if self.holds_after(document):
            restored = list(now)
            for index, element in self.removed:  # ascending: each goes back where it was
                restored.insert(index, element)
            return _Undo(RESTORE, SetChange(self.path, now, restored), ("$set", self.path, restored), now)
        if self.holds_before(document):
            return _Undo(ALREADY)
        return _Undo(
            CONFLICT, reason=f"{self.path} changed since the automation removed {len(self.removed)} element(s)"
        )


Change = SetChange | PushChange | PullChange


def change_from_document(document: Mapping[str, Any]) -> Change:
    """A change as ``to_document`` stored it in the journal."""
    kind = document["kind"]
    if kind == "set":
        preceding = tuple(document["preceding"]) if "preceding" in document else None
        return SetChange(document["path"], document.get("before", MISSING), document.get("after", MISSING), preceding)
    if kind == "push":
        return PushChange(document["path"], document["element"], document["created"])
    if kind == "pull":
        removed = tuple((item["index"], item["element"]) for item in document["removed"])
        return PullChange(document["path"], removed, document["keptLength"], document["keptFingerprint"])
    raise ValueError(f"unknown change kind {kind!r} in the change journal")


def _container(document: dict[str, Any], path: str) -> tuple[Any, str]:
    """The document or array holding ``path``, and the name of ``path`` in it."""
    parent, _, name = path.rpartition(".")
    return (value_at(document, parent) if parent else document), name


def projection_of(paths: list[str]) -> dict[str, int]:
    """What to read of a document to evaluate changes or pins on ``paths``: their top-level fields."""
    return {path.split(".")[0]: 1 for path in paths}


def restore_document(changes: list[Change], document: Mapping[str, Any]) -> Restoration:
    """Undo a document's recorded ``changes`` (in the order they were made), given the document as it is now: all of
    them, or none if any conflicts (a document someone changed since is left exactly as it is)."""
    undos = [change.undo(document) for change in changes]
    conflicts = [undo.reason for undo in undos if undo.state == CONFLICT]
    if conflicts:
        return Restoration(CONFLICT, reason="; ".join(conflicts))
    restoring = [undo for undo in undos if undo.state == RESTORE]
    if not restoring:
        return Restoration(ALREADY)
    changes = tuple(undo.change for undo in restoring if undo.change)
    if any(undo.preceding is not None for undo in restoring):
        return Restoration(RESTORE, changes, *_restore_in_place(restoring, document))
    update: dict[str, dict[str, Any]] = {}
    pins: dict[str, dict[str, Any]] = {}
    for undo in restoring:
        assert undo.update is not None
        operator, path, value = undo.update
        update.setdefault(operator, {})[path] = value
        pins[path] = pin(undo.pin_value)
    return Restoration(RESTORE, changes, update, pins)


def _restore_in_place(
    restoring: list[_Undo], document: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The restoring write as an update pipeline, and its pins, for a restoration that puts a top-level field back in
    the middle of the document: update operators can only append it. The pipeline rebuilds the document: the fields
    that preceded it (as they are at the write), it, then the others as they are, every top-level field the
    restoration touches written whole, worked out from ``document`` and pinned whole."""
    updates = [undo.update for undo in restoring if undo.update is not None]
    tops = {path.split(".")[0] for _, path, _ in updates}
    scratch = {top: copy.deepcopy(document[top]) for top in tops if top in document}
    for operator, path, value in updates:
        if operator == "$set":
            _set(scratch, path, value)
        else:
            _unset(scratch, path.split("."))
    # The fields of one journal entry were removed from one document: each one's preceding fields start the longest.
    last = max((undo for undo in restoring if undo.preceding is not None), key=lambda undo: len(undo.preceding or ()))
    assert last.update is not None and last.preceding is not None
    restored = {top: {"$literal": value} for top, value in scratch.items()}
    prefix = {name: restored.get(name, f"${name}") for name in [*last.preceding, last.update[1]]}
    pipeline: list[dict[str, Any]] = [{"$replaceWith": {"$mergeObjects": [prefix, "$$ROOT", restored]}}]
    if tops - set(scratch):
        pipeline.append({"$unset": sorted(tops - set(scratch))})
    return pipeline, {top: pin(document.get(top, MISSING)) for top in tops}


@dataclass(frozen=True)
class Effect:
    """What the update does to one document: its ``changes``, and the ``pins`` a write of it must be filtered by."""

    changes: tuple[Change, ...]
    pins: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class _ElementSet:
    array: str
    property: str
    value: Any
    matching: tuple[Any] | None  # (value,) when an array filter selects the elements; None: every element


class FieldOrder(Enum):
    """Where a server puts the fields one update creates in one document: each at the end of its parent, in the
    order the server applies the update's paths.

    MongoDB (5.0 and later) applies them in lexicographic order of their names, whole-number names in numeric order,
    whatever their order in the update: ``$set {m.z, m.a}`` stores ``m: {a, z}``, and ``a.1.b`` is applied before
    ``a.2``. SecantusDB, the embedded server, applies them in the update's order. The journal records what its
    server stores, so it predicts with that server's order (``journal.field_order``).
    """

    SORTED = "sorted"
    UPDATE = "update"


class UpdateShape:
    """An update plan read once per automation, to predict its :class:`Effect` on each document it selects, as a
    server applying paths in ``order`` stores it."""

    def __init__(self, plan: UpdatePlan, order: FieldOrder = FieldOrder.SORTED) -> None:
        filters = {key: value for entry in plan.array_filters for key, value in entry.items()}
        # (position in the update, operator, path, value) in the order the server applies them; the element sets of
        # one array are one operation, "$[]", on the array.
        self.operations: list[tuple[int, str, str, Any]] = []
        self.element_sets: dict[str, list[_ElementSet]] = {}
        paths: list[str] = []
        for operator, fields in plan.update.items():
            if operator not in ("$set", "$unset", "$push", "$pull"):
                raise ValueError(f"the change journal cannot predict {operator} (update {plan.update})")
            for path, value in fields.items():
                paths.append(path)
                if operator == "$set" and ".$[" in path:
                    array, rest = path.split(".$[", 1)
                    identifier, prop = rest.split("].", 1)
                    matching = (filters[f"{identifier}.{prop}"],) if identifier else None
                    if array not in self.element_sets:
                        self.operations.append((len(self.operations), "$[]", array, None))
                    self.element_sets.setdefault(array, []).append(_ElementSet(array, prop, value, matching))
                else:
                    self.operations.append((len(self.operations), operator, path, value))
        if order is FieldOrder.SORTED:
            self.operations.sort(key=lambda operation: path_key(operation[2]))
            for element_sets in self.element_sets.values():
                element_sets.sort(key=lambda element_set: path_key(element_set.property))
        conflicts = [
            (left, right) for index, left in enumerate(paths) for right in paths[:index] if paths_conflict(left, right)
        ]
        self._conflict = (
            Refusal(
                f"{conflicts[0][1]} and {conflicts[0][0]} conflict: MongoDB refuses an update touching both (error 40, "
                "ConflictingUpdateOperators)"
            )
            if conflicts
            else None
        )
        # The top-level fields copied to work the update out on: those a field set, a removal or a push into a
        # sub-document writes (whose result is recorded as it is then). A pull, an element update or a top-level push
        # is recorded by itself, and reads the document unless another operation writes the same top-level field.
        self._tops = {
            path.split(".")[0]
            for _, operator, path, _ in self.operations
            if operator in ("$set", "$unset") or (operator == "$push" and "." in path)
        }
        self._unsets = [path for _, operator, path, _ in self.operations if operator == "$unset" and "." in path]
        # A top-level field removed from the middle of a document is recorded with the fields before it.
        self._names = any(operator == "$unset" and "." not in path for _, operator, path, _ in self.operations)

    @property
    def projection(self) -> dict[str, Any]:
        """The fields to read: every touched top-level field whole, except a top-level array that is only pushed
        onto, of which the last element tells its type (one element, whatever the array's length)."""
        projection: dict[str, Any] = projection_of(
            [path for _, operator, path, _ in self.operations if operator != "$push" or "." in path]
        )
        for _, operator, path, _ in self.operations:
            if operator == "$push" and "." not in path and path not in projection:
                projection[path] = {"$slice": -1}
        if self._names:
            projection[FIELD_NAMES] = {"$map": {"input": {"$objectToArray": "$$ROOT"}, "in": "$$this.k"}}
        return projection

    def predict(self, document: Mapping[str, Any]) -> Effect | Refusal | None:
        """The update's effect on ``document`` (read with :attr:`projection`); None when it changes nothing.

        The operations are made, in the server's order, on a copy of the touched fields (``after``), each on the
        state the ones before it left (``a.2`` pads ``a.1`` with null before a pull from ``a.1`` sees it); what each
        records is collected with its position in the update, and the changes are listed in the update's order. Where
        an operation's path was changed by an earlier one, both lie inside one recorded root. A document read whole
        (not with the projection) is fine too.
        """
        if self._conflict is not None:
            return self._conflict
        after = {top: copy.deepcopy(value) for top, value in document.items() if top in self._tops}
        whole = _parents_recorded_whole(document, self._unsets) if self._unsets else set()
        roots: list[tuple[int, str]] = []  # (position, path): recorded as the value there before and after
        places: dict[str, tuple[str, ...]] = {}  # top-level fields removed from the middle: the fields before them
        made: list[tuple[int, str, list[Change], dict[str, Any]]] = []  # (position, path, changes, pin)
        for position, operator, path, value in self.operations:
            if operator == "$set":
                refusal = _set(after, path, value)
                if refusal:
                    return refusal
                roots.append((position, _root(document, path)))
            elif operator == "$unset":
                if value_at(after, path) is not MISSING:  # MongoDB's $unset of an absent path is a no-op
                    _unset(after, path.split("."))
                    parent = path.rpartition(".")[0]
                    roots.append((position, parent if parent in whole else _root(document, path)))
                    if not parent:
                        names = list(document.get(FIELD_NAMES, document))
                        if names[-1] != path:
                            places[path] = tuple(names[: names.index(path)])
            elif operator == "$push":
                outcome = _push(document, after, path, value)
                if isinstance(outcome, Refusal):
                    return outcome
                if isinstance(outcome, str):
                    roots.append((position, outcome))
                else:
                    made.append((position, path, [outcome[0]], outcome[1]))
            elif operator == "$pull":
                copied = path.split(".")[0] in self._tops
                outcome = _pull(after if copied else document, path, value)
                if isinstance(outcome, Refusal):
                    return outcome
                for change in outcome[0] if copied else ():
                    change.make(after)
                made.append((position, path, *outcome))
            else:
                copied = path.split(".")[0] in self._tops
                elements = _element_changes(after if copied else document, path, self.element_sets[path])
                if isinstance(elements, Refusal):
                    return elements
                for change in elements if copied else ():
                    change.make(after)
                made.append((position, path, list(elements), pin(value_at(document, path))))
        return _effect(document, after, roots, made, places)


# The name under which a document read with an :attr:`UpdateShape.projection` lists its top-level fields, in order.
FIELD_NAMES = "_journalFieldNames"


def path_key(path: str) -> Any:
    """Sorts paths as MongoDB applies them: part by part, names lexicographically (by UTF-8 bytes, which is code point
    order), whole numbers numerically."""
    return [functools.cmp_to_key(_compare_parts)(part) for part in path.split(".")]


def _compare_parts(left: str, right: str) -> int:
    if _is_index(left) and _is_index(right) and int(left) != int(right):
        return -1 if int(left) < int(right) else 1
    return (left > right) - (left < right)


def _effect(
    document: Mapping[str, Any],
    after: Mapping[str, Any],
    roots: list[tuple[int, str]],
    made: list[tuple[int, str, list[Change], dict[str, Any]]],
    places: dict[str, tuple[str, ...]],
) -> Effect | None:
    """The changes, in the update's order, and their pins: a root is listed where its first write is (which a
    server applying the update's order creates it at), and absorbs whatever was made inside it."""
    outer = _outermost([root for _, root in sorted(roots)])
    changes: list[Change] = []
    pins: dict[str, dict[str, Any]] = {}
    items = sorted([(position, path, None, None) for position, path in roots] + made, key=lambda item: item[0])
    for _, path, recorded, condition in items:
        enclosing = next((root for root in outer if path == root or path.startswith(root + ".")), None)
        if enclosing is None:
            changes.extend(recorded or ())
            pins[path] = condition
        elif recorded is None and enclosing not in pins:
            before = value_at(document, enclosing)
            pins[enclosing] = pin(before)
            if not same_value(before, value_at(after, enclosing)):
                changes.append(SetChange(enclosing, before, value_at(after, enclosing), places.get(enclosing)))
    return Effect(tuple(changes), pins) if changes else None


def _push(
    document: Mapping[str, Any], after: dict[str, Any], path: str, element: Any
) -> tuple[PushChange, dict[str, Any]] | str | Refusal:
    """A ``$push``: the element recorded alone with its pin (the array, or its parent document, was there), or the
    path at which the write is recorded whole (a missing parent created, an array reached through another array)."""
    before = value_at(after if "." in path else document, path)  # a top-level array pushed onto is not copied
    root = _root(document, path)
    if isinstance(before, list):
        if root == path:
            if "." in path:  # a top-level array is not copied: nothing can record it whole
                value_at(after, path).append(copy.deepcopy(element))
            return PushChange(path, element, created=False), {"$type": "array"}
        value_at(after, path).append(copy.deepcopy(element))
        return root
    if before is not MISSING:
        return Refusal(f"{path} is {_show(before)}, not an array: MongoDB refuses to push onto it")
    refusal = _set(after, path, [element])
    if refusal:
        return refusal
    if root == path and _parent_is_document(document, path):
        return PushChange(path, element, created=True), {"$exists": False}
    return root


def _pull(
    document: Mapping[str, Any], path: str, condition: Mapping[str, Any]
) -> tuple[list[Change], dict[str, Any]] | Refusal:
    """A ``$pull`` of ``{<property>: value}``: the elements it removes, and the pin on the array (a missing array is
    a no-op; a path through a value that is not a document, or to one that is not an array, MongoDB refuses)."""
    ((prop, pulled),) = condition.items()
    node: Any = document
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, Mapping):
            node = node.get(part, MISSING)
        elif isinstance(node, list) and _is_index(part):
            node = node[int(part)] if int(part) < len(node) else MISSING
        else:
            blocked = ".".join(parts[:depth])
            return Refusal(
                f"{path} cannot be pulled from: {blocked} is {_show(node)}, not a document (MongoDB "
                "refuses it: PathNotViable)"
            )
        if node is MISSING:
            return [], pin(MISSING)
    if not isinstance(node, list):
        return Refusal(f"{path} is {_show(node)}, not an array: MongoDB refuses to pull from it")
    # An object condition never matches an element that is not a document.
    removed = [
        i for i, item in enumerate(node) if isinstance(item, Mapping) and query_matches(item.get(prop, MISSING), pulled)
    ]
    return ([PullChange.of(path, node, removed)] if removed else []), pin(node)


def _element_changes(
    document: Mapping[str, Any], array: str, element_sets: list[_ElementSet]
) -> list[SetChange] | Refusal:
    """Each element the ``$[]`` / ``$[eN]`` sets change, whole, at its index (array filters see the element before
    any of them is applied, as MongoDB evaluates them; the properties are set in the server's order)."""
    before = value_at(document, array)
    if not isinstance(before, list):
        return Refusal(f"{array} is {_show(before)}: MongoDB applies array updates only to an existing array")
    changes: list[SetChange] = []
    for index, element in enumerate(before):
        selected = [s for s in element_sets if s.matching is None or _filter_selects(element, s.property, s.matching)]
        if not selected:
            continue
        if not isinstance(element, Mapping):
            return Refusal(
                f"{array}.{index} is {_show(element)}, not a document, so MongoDB refuses to set "
                f"{array}.$[].{selected[0].property}"
            )
        properties = [s.property for s in selected]
        if len(set(properties)) < len(properties):
            return Refusal(
                f"two array updates set {array}.{index}.{properties[0]}: MongoDB refuses the update as a "
                "conflict (error 40, ConflictingUpdateOperators)"
            )
        new = dict(element)
        for element_set in selected:
            new[element_set.property] = copy.deepcopy(element_set.value)
        if not same_value(element, new):
            changes.append(SetChange(f"{array}.{index}", element, new))
    return changes


def _filter_selects(element: Any, prop: str, matching: tuple[Any]) -> bool:
    """Whether an array filter ``{"e.<prop>": value}`` selects ``element``: MongoDB evaluates it on ``{e: element}``,
    so a property of an element that is not a document is missing (null matches it), and an element that is an
    array is looked into one level, as a query looks into an array."""
    if isinstance(element, Mapping):
        return query_matches(element.get(prop, MISSING), matching[0])
    if isinstance(element, list):
        return any(
            query_matches(item.get(prop, MISSING) if isinstance(item, Mapping) else MISSING, matching[0])
            for item in element
        )
    return query_matches(MISSING, matching[0])


def _parents_recorded_whole(document: Mapping[str, Any], unset_paths: list[str]) -> set[str]:
    """The sub-documents an update's ``$unset`` s must be recorded in whole, so that undoing them puts every field
    back where it was: setting a removed field again appends it to its parent, which is its place only when it was
    the parent's last field and the only one removed. (A top-level field is recorded alone, with the names of the
    fields before it: the document cannot be set whole.)"""
    removed: dict[str, list[str]] = {}
    for path in unset_paths:
        parent, _, name = path.rpartition(".")
        if parent and value_at(document, path) is not MISSING and _root(document, path) == path:
            removed.setdefault(parent, []).append(name)
    return {parent for parent, names in removed.items() if names != [list(value_at(document, parent))[-1]]}


def _root(document: Mapping[str, Any], path: str) -> str:
    """The path at which a write to ``path`` is recorded: its first level the document lacks, or the first array on
    the way (recorded whole), or ``path`` itself."""
    parts = path.split(".")
    node: Any = document
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            return ".".join(parts[: depth + 1])
        node = node[part]
        if isinstance(node, list) and depth < len(parts) - 1:
            return ".".join(parts[: depth + 1])
    return path


def _parent_is_document(document: Mapping[str, Any], path: str) -> bool:
    parent = path.rpartition(".")[0]
    return not parent or isinstance(value_at(document, parent), Mapping)


def _outermost(roots: list[str]) -> list[str]:
    """The distinct roots, without any that lies inside another (in order of first appearance)."""
    unique = list(dict.fromkeys(roots))
    return [root for root in unique if not any(root.startswith(other + ".") for other in unique)]


def _set(node: dict[str, Any], path: str, value: Any) -> Refusal | None:
    """``$set`` on a copy, as MongoDB does it: missing documents are created, an index past an array's end pads it
    with nulls; a path through anything else is refused, as MongoDB refuses it."""
    parts = path.split(".")
    current: Any = node
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(current, list) and _is_index(part):
            index = int(part)
            created = index >= len(current)
            current.extend([None] * (index + 1 - len(current)))
            if last:
                current[index] = copy.deepcopy(value)
                return None
            if created:
                current[index] = {}
            current = current[index]
        elif isinstance(current, dict):
            if last:
                current[part] = copy.deepcopy(value)
                return None
            current = current.setdefault(part, {})
        else:
            blocked = ".".join(parts[:depth]) or "the document"
            return Refusal(f"{path} cannot be set: {blocked} is {_show(current)}, not a document (MongoDB refuses it)")
    return None


def _unset(node: Any, parts: list[str]) -> None:
    """``$unset`` on a copy, as MongoDB does it: an absent path is left alone, an array element becomes null."""
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, Mapping):
            if part not in node:
                return
            if last:
                del node[part]
                return
            node = node[part]
        elif isinstance(node, list) and _is_index(part) and int(part) < len(node):
            if last:
                node[int(part)] = None
                return
            node = node[int(part)]
        else:
            return


def _is_index(part: str) -> bool:
    return part.isascii() and part.isdigit()


def _equal(left: Any, right: Any) -> bool:
    """MongoDB's equality of two present values: numbers by value across int, long, double and decimal (not bool),
    documents field by field in order, arrays element by element, everything else by type and value."""
    if _is_number(left) and _is_number(right):
        return _numeric(left) == _numeric(right) or (_numeric(left).is_nan() and _numeric(right).is_nan())
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return list(left) == list(right) and all(_equal(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, datetime) and isinstance(right, datetime):
        return same_value(left, right)
    return type(left) is type(right) and left == right


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal128)) and not isinstance(value, bool)


def _numeric(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def _show(value: Any) -> str:
    """A value in a message: short, and missing said as such."""
    if value is MISSING:
        return "missing"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
