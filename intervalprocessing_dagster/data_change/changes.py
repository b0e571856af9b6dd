"""What an automation's update does to one document, worked out from the document as read, and what undoes it.

The change journal (``journal.py``) records, for every document an automation modifies, the values it replaced.
This module computes them, without I/O. :class:`UpdateShape` reads an :class:`UpdatePlan`'s update in the form
``plan.py`` writes it (``$set`` / ``$unset`` of field paths, ``$set`` of ``<array>.$[].<property>`` or
``<array>.$[eN].<property>`` with its array filter, ``$push`` of one element, ``$pull`` of ``{<property>: value}``),
applies it to a copy of the touched fields with MongoDB's rules, and answers, for one document:

* **the changes**, the smallest exact record of what the write changes:

  - :class:`SetChange`: a path's value before and after (absent = the field is missing). A path whose parent did not
    exist is recorded at the first missing level (``meta`` missing → ``meta: {by: x}``), so undoing it removes what
    the write created; a path through an array is recorded as the whole array;
  - element updates (``$[]``, ``$[eN]``) record each changed element whole, at its index (``notes.2``);
  - :class:`PushChange`: the element appended, and whether the write created the array;
  - :class:`PullChange`: each element removed with its index, and a fingerprint of the array that was left;

* **the pins**: for every touched field a query condition that holds while the field still has the value the
  changes were computed from (the whole array for element updates and pulls; "exists" for a push, whose journal
  entry is the element alone). A write filtered by its pins can only apply to the state that was journaled;
* or a :class:`Refusal` where MongoDB refuses the update for this document (a path through a value that is not a
  document, a push or pull on a value that is not an array, ``$[]`` over an element that is not a document): the
  document is not written and is reported as the server's refusals are;
* or ``None``: the update would not change the document (MongoDB's own no-op), so nothing is written or journaled.

Values compare as MongoDB decides a no-op (:func:`same_value`: type and bytes, so 1 and 1.0 differ); array filters and
pulls select elements with MongoDB's query equality (:func:`query_matches`: 1 equals 1.0, null matches a missing
field, an array holding the value matches). A pin is a query condition, so it compares with query equality too: the
one concurrent change a pin cannot tell apart is a field rewritten, in the instant between the read and the write,
to an equal number of another type or to an array holding its value.

The other direction: :func:`restore_document` gives, for a document's recorded changes and the document as it is
now, the write that puts the values back, but only while the document still holds exactly what the automation wrote
(a push: while the pushed element is still there; a pull: while the array still starts with what the pull left);
otherwise the document is a conflict (someone changed it since) or already as before.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import bson
from bson.decimal128 import Decimal128
from bson.regex import Regex

from intervalprocessing_dagster.data_change.plan import UpdatePlan


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
    """The query condition that holds while a field has ``value`` (see the module docstring on its precision)."""
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
    update: dict[str, dict[str, Any]] = field(default_factory=dict)
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


@dataclass(frozen=True)
class SetChange:
    """``path`` held ``before`` and now holds ``after`` (either may be ``MISSING``)."""

    path: str
    before: Any
    after: Any

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": "set", "path": self.path}
        if self.before is not MISSING:
            document["before"] = self.before
        if self.after is not MISSING:
            document["after"] = self.after
        return document

    def holds_after(self, document: Mapping[str, Any]) -> bool:
        return same_value(value_at(document, self.path), self.after)

    def holds_before(self, document: Mapping[str, Any]) -> bool:
        return same_value(value_at(document, self.path), self.before)

    def undo(self, document: Mapping[str, Any]) -> _Undo:
        now = value_at(document, self.path)
        if same_value(now, self.after):
            update = ("$unset", self.path, "") if self.before is MISSING else ("$set", self.path, self.before)
            return _Undo(RESTORE, SetChange(self.path, now, self.before), update, now)
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

    def undo(self, document: Mapping[str, Any]) -> _Undo:
        now = value_at(document, self.path)
        if isinstance(now, list):
            index = next((i for i, item in enumerate(now) if same_value(item, self.element)), None)
            if index is not None:
                kept = now[:index] + now[index + 1:]
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
            "kind": "pull", "path": self.path,
            "removed": [{"index": index, "element": element} for index, element in self.removed],
            "keptLength": self.kept_length, "keptFingerprint": self.kept_fingerprint,
        }

    # Both tests allow elements appended since (the application pushing notes as the pull is written): what decides
    # is whether the array still starts with the removed elements at their indexes, or with what the pull left.
    def holds_after(self, document: Mapping[str, Any]) -> bool:
        now = value_at(document, self.path)
        return (
            isinstance(now, list) and len(now) >= self.kept_length
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
        return _Undo(CONFLICT, reason=f"{self.path} changed since the automation removed {len(self.removed)} "
                                      "element(s)")


Change = SetChange | PushChange | PullChange


def change_from_document(document: Mapping[str, Any]) -> Change:
    """A change as ``to_document`` stored it in the journal."""
    kind = document["kind"]
    if kind == "set":
        return SetChange(document["path"], document.get("before", MISSING), document.get("after", MISSING))
    if kind == "push":
        return PushChange(document["path"], document["element"], document["created"])
    if kind == "pull":
        removed = tuple((item["index"], item["element"]) for item in document["removed"])
        return PullChange(document["path"], removed, document["keptLength"], document["keptFingerprint"])
    raise ValueError(f"unknown change kind {kind!r} in the change journal")


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
    update: dict[str, dict[str, Any]] = {}
    pins: dict[str, dict[str, Any]] = {}
    for undo in restoring:
        assert undo.update is not None and undo.change is not None
        operator, path, value = undo.update
        update.setdefault(operator, {})[path] = value
        pins[path] = pin(undo.pin_value)
    return Restoration(RESTORE, tuple(undo.change for undo in restoring if undo.change), update, pins)


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


class UpdateShape:
    """An update plan read once per automation, to predict its :class:`Effect` on each document it selects."""

    def __init__(self, plan: UpdatePlan) -> None:
        filters = {key: value for entry in plan.array_filters for key, value in entry.items()}
        self.field_sets: list[tuple[str, Any]] = []
        self.field_unsets: list[str] = []
        self.element_sets: dict[str, list[_ElementSet]] = {}
        self.pushes: dict[str, Any] = {}
        self.pulls: dict[str, tuple[str, Any]] = {}
        for operator, fields in plan.update.items():
            for path, value in fields.items():
                if operator == "$set" and ".$[" in path:
                    array, rest = path.split(".$[", 1)
                    identifier, prop = rest.split("].", 1)
                    matching = (filters[f"{identifier}.{prop}"],) if identifier else None
                    self.element_sets.setdefault(array, []).append(_ElementSet(array, prop, value, matching))
                elif operator == "$set":
                    self.field_sets.append((path, value))
                elif operator == "$unset":
                    self.field_unsets.append(path)
                elif operator == "$push":
                    self.pushes[path] = value
                elif operator == "$pull":
                    ((prop, pulled),) = value.items()
                    self.pulls[path] = (prop, pulled)
                else:
                    raise ValueError(f"the change journal cannot predict {operator} (update {plan.update})")
        # The top-level fields whose new value is worked out on a copy (field sets and unsets; a push that creates
        # a missing parent).
        self._copied = {path.split(".")[0] for path in [*(p for p, _ in self.field_sets), *self.field_unsets,
                                                         *self.pushes]}

    @property
    def projection(self) -> dict[str, Any]:
        """The fields to read: every touched top-level field whole, except a top-level array that is only pushed
        onto, of which the last element tells its type (one element, whatever the array's length)."""
        whole = [path for path, _ in self.field_sets] + self.field_unsets + [*self.element_sets, *self.pulls]
        whole += [array for array in self.pushes if "." in array]
        projection: dict[str, Any] = projection_of(whole)
        for array in self.pushes:
            if array not in projection and "." not in array:
                projection[array] = {"$slice": -1}
        return projection

    def predict(self, document: Mapping[str, Any]) -> Effect | Refusal | None:
        """The update's effect on ``document`` (read with :attr:`projection`); None when it changes nothing."""
        after = {top: copy.deepcopy(document[top]) for top in self._copied if top in document}
        changes: list[Change] = []
        pins: dict[str, dict[str, Any]] = {}
        roots: list[str] = []
        for path, value in self.field_sets:
            refusal = _set(after, path, value)
            if refusal:
                return refusal
            roots.append(_root(document, path))
        for path in self.field_unsets:
            if value_at(document, path) is not MISSING:  # MongoDB's $unset of an absent path is a no-op
                _unset(after, path.split("."))
                roots.append(_root(document, path))
        for array, element in self.pushes.items():
            before = value_at(document, array)
            root = _root(document, array)
            if root == array and isinstance(before, list):
                changes.append(PushChange(array, element, created=False))
                pins[array] = {"$type": "array"}
            elif root == array and before is MISSING and _parent_is_document(document, array):
                changes.append(PushChange(array, element, created=True))
                pins[array] = {"$exists": False}
            elif before is not MISSING:
                return Refusal(f"{array} is {_show(before)}, not an array: MongoDB refuses to push onto it")
            else:  # a missing parent is created with the array (recorded as a field change), or refused
                refusal = _set(after, array, [element])
                if refusal:
                    return refusal
                roots.append(root)
        for array, element_sets in self.element_sets.items():
            effect = _element_changes(document, array, element_sets)
            if isinstance(effect, Refusal):
                return effect
            changes.extend(effect)
            pins[array] = pin(value_at(document, array))
        for array, (prop, pulled) in self.pulls.items():
            before = value_at(document, array)
            if isinstance(before, list):
                removed = [i for i, item in enumerate(before) if _selects(item, prop, (pulled,))]
                if removed:
                    changes.append(PullChange.of(array, before, removed))
            elif before is not MISSING:
                return Refusal(f"{array} is {_show(before)}, not an array: MongoDB refuses to pull from it")
            pins[array] = pin(before)
        for root in _outermost(roots):
            before = value_at(document, root)
            pins[root] = pin(before)
            if not same_value(before, value_at(after, root)):
                changes.append(SetChange(root, before, value_at(after, root)))
        return Effect(tuple(changes), pins) if changes else None


def _element_changes(
    document: Mapping[str, Any], array: str, element_sets: list[_ElementSet]
) -> list[Change] | Refusal:
    """Each element the ``$[]`` / ``$[eN]`` sets change, whole, at its index (array filters see the element before
    any of them is applied, as MongoDB evaluates them)."""
    before = value_at(document, array)
    if not isinstance(before, list):
        return Refusal(f"{array} is {_show(before)}: MongoDB applies array updates only to an existing array")
    changes: list[Change] = []
    for index, element in enumerate(before):
        new = element
        for element_set in element_sets:
            if not isinstance(element, Mapping):
                if element_set.matching is None:
                    return Refusal(f"{array}.{index} is {_show(element)}, not a document, so MongoDB refuses to set "
                                   f"{array}.$[].{element_set.property}")
                continue
            if element_set.matching is None or _selects(element, element_set.property, element_set.matching):
                new = dict(new)
                new[element_set.property] = copy.deepcopy(element_set.value)
        if not same_value(element, new):
            changes.append(SetChange(f"{array}.{index}", element, new))
    return changes


def _selects(element: Any, prop: str, matching: tuple[Any]) -> bool:
    """Whether an array filter ``{"e.<prop>": value}`` (or a pull's ``{<prop>: value}``) selects ``element``."""
    return isinstance(element, Mapping) and query_matches(element.get(prop, MISSING), matching[0])


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
