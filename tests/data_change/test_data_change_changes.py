"""What an update does to one document, predicted client-side (``changes.py``), against what the server does.

The change journal is only as exact as this prediction, so every update type is run on the server (SecantusDB, and a
real MongoDB in the ``real_mongo`` tier) on documents shaped to reach its edge cases, and the prediction must agree:
the same no-ops, the same refusals, and every recorded *after* value is what the server wrote.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Decimal128, Int64, Regex
from pymongo.database import Database
from pymongo.errors import WriteError

from intervalprocessing_dagster.data_change.changes import (
    ALREADY,
    CONFLICT,
    FIELD_NAMES,
    MISSING,
    RESTORE,
    FieldOrder,
    PullChange,
    PushChange,
    Refusal,
    SetChange,
    UpdateShape,
    change_from_document,
    query_matches,
    restore_document,
    same_value,
)
from intervalprocessing_dagster.data_change.execute import DocumentWriteErrors
from intervalprocessing_dagster.data_change.journal import ChangeJournal
from intervalprocessing_dagster.data_change.plan import UpdatePlan, build_plan
from intervalprocessing_dagster.data_change.rules import parse_automation
from intervalprocessing_dagster.mongo.shell_syntax import parse_query
from tests.data_change.document_model import document_after

STAMP = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)

DOCUMENTS = [
    {
        "_id": 1,
        "status": "Open",
        "meta": {"by": "seed", "old": 1},
        "notes": [{"text": "a", "reviewed": "no"}, {"text": "b", "reviewed": "yes"}, {"text": "c"}],
    },
    {"_id": 2, "status": "Open", "notes": []},
    {"_id": 3},
    {
        "_id": 4,
        "status": 1,
        "meta": "a string",
        "notes": [{"reviewed": ["no", "x"]}, {"reviewed": 1.0}, {"reviewed": None}],
    },
    {
        "_id": 5,
        "status": "Closed",
        "meta": {},
        "notes": [{"text": "a", "reviewed": "no"}, {"text": "a", "reviewed": "no"}],
    },
    {"_id": 6, "meta": {"by": ["x"]}, "codes": [1, 2], "notes": "not an array"},
]

CASES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "single Change": {"single": [{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}]},
    "single Change, dotted": {"single": [{"elementName": "meta.by", "updateType": "Change", "elementValue": "auto"}]},
    "single Add into a missing parent, and Delete": {
        "single": [
            {"elementName": "meta.x.y", "updateType": "Add", "elementValue": 1},
            {"elementName": "meta.old", "updateType": "Delete", "elementValue": ""},
        ]
    },
    "single Remove": {"single": [{"elementName": "status", "updateType": "Remove", "elementValue": ""}]},
    "single Change of an array index past its end": {
        "single": [{"elementName": "codes.3", "updateType": "Change", "elementValue": 9}]
    },
    "array Add": {
        "array": [{"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "hi"}]
    },
    "array Add into a missing parent": {
        "array": [
            {"arrayProperty": "meta.notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "hi"}
        ]
    },
    "array Change, every element": {
        "array": [
            {"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Change", "newValue": "done"}
        ]
    },
    "array Change, matching 'no'": {
        "array": [
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "reviewed",
                "updateType": "Change",
                "newValue": "done",
                "matchingValue": "no",
            }
        ]
    },
    "array Change, matching 1 (1.0 too)": {
        "array": [
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "reviewed",
                "updateType": "Change",
                "newValue": "done",
                "matchingValue": 1,
            }
        ]
    },
    "array Remove, matching null (missing too)": {
        "array": [
            {
                "arrayProperty": "notes",
                "matchingPropertyName": "reviewed",
                "updateType": "Remove",
                "matchingValue": None,
            }
        ]
    },
    "array Delete 'no'": {
        "array": [
            {"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Delete", "newValue": "no"}
        ]
    },
    "array Delete null": {
        "array": [
            {"arrayProperty": "notes", "matchingPropertyName": "reviewed", "updateType": "Delete", "newValue": None}
        ]
    },
}


def shape_and_plan(case: dict[str, list[dict[str, Any]]]) -> tuple[UpdateShape, Any]:
    automation = parse_automation(
        {
            "name": "Predicted",
            "query": "{}",
            "collectionName": "docs",
            "isActive": True,
            "runCadence": "Hourly",
            "singleFieldUpdateElements": case.get("single", []),
            "arrayObjectFieldUpdateElements": case.get("array", []),
        }
    )
    plan = build_plan(automation, STAMP)
    return UpdateShape(plan), plan


@pytest.mark.parametrize("case", list(CASES))
def test_the_prediction_agrees_with_the_server_on_every_document(mongo_db: Database, case: str) -> None:
    shape, plan = shape_and_plan(CASES[case])
    mongo_db.docs.insert_many(copy.deepcopy(DOCUMENTS))
    for original in DOCUMENTS:
        selector = plan.filter({"_id": original["_id"]})
        document = mongo_db.docs.find_one(selector, shape.projection)
        effect = shape.predict(document) if document is not None else "not selected"
        try:
            modified = mongo_db.docs.update_one(selector, plan.update, array_filters=plan.array_filters or None)
            server = "modified" if modified.modified_count else "no-op"
        except WriteError:
            server = "refused"
        now = mongo_db.docs.find_one({"_id": original["_id"]})
        where = f"{case}, _id {original['_id']}: predicted {effect!r}, server {server}, now {now}"
        if effect is None or effect == "not selected":
            assert server == "no-op", where
        elif isinstance(effect, Refusal):
            assert server == "refused", where
        else:
            assert server == "modified" and all(change.holds_after(now) for change in effect.changes), where
            assert not all(change.holds_before(now) for change in effect.changes), where


def test_every_element_set_over_an_array_holding_a_non_document_is_refused_on_both_servers(
    mongo_db: Database, request: pytest.FixtureRequest
) -> None:
    """Where SecantusDB and MongoDB differ: MongoDB refuses ``$set`` of ``notes.$[].x`` when an element is not a
    document (it cannot create a field in a string); SecantusDB 0.7 sets it in the document elements and skips the
    others. The prediction follows MongoDB, so the journaled platform refuses the document on both servers (the
    ``real_mongo`` tier shows MongoDB's side)."""
    shape, plan = shape_and_plan(CASES["array Change, every element"])
    mongo_db.docs.insert_one({"_id": 1, "notes": [{"reviewed": "no"}, "a string"]})
    assert isinstance(shape.predict(mongo_db.docs.find_one({}, shape.projection)), Refusal)
    journal = ChangeJournal(
        mongo_db,
        run_id="r",
        root_run_id="r",
        stamp=STAMP,
        automation="Predicted",
        config_id=1,
        config_hash="h",
        history_days=90,
    )
    with pytest.raises(DocumentWriteErrors, match="notes.1 is 'a string', not a document"):
        journal.apply(
            mongo_db.docs,
            parse_query("{}", source="test"),
            plan,
            deadline=time.time() + 60,
            batch_size=1000,
            log=lambda _message: None,
        )
    assert mongo_db.docs.find_one() == {"_id": 1, "notes": [{"reviewed": "no"}, "a string"]}
    scratch = mongo_db.scratch
    scratch.insert_one({"_id": 1, "notes": [{"reviewed": "no"}, "a string"]})
    if request.node.callspec.params["mongo_uri"] == "real_mongo":
        with pytest.raises(WriteError):
            scratch.update_one({"_id": 1}, plan.update)
    else:
        assert scratch.update_one({"_id": 1}, plan.update).modified_count == 1
        assert scratch.find_one()["notes"] == [{"reviewed": "done"}, "a string"]


def test_changes_are_recorded_at_the_level_undoing_them_needs() -> None:
    shape, _ = shape_and_plan(CASES["single Add into a missing parent, and Delete"])
    effect = shape.predict({"_id": 3, "meta": {"old": 1}})
    assert [c.to_document() for c in effect.changes] == [
        {"kind": "set", "path": "meta.x", "after": {"y": 1}},  # meta.x did not exist: removing it undoes the Add
        {"kind": "set", "path": "meta.old", "before": 1},
    ]
    assert effect.pins == {"meta.x": {"$exists": False}, "meta.old": {"$eq": 1}}
    effect = shape.predict({"_id": 3})
    assert [c.to_document() for c in effect.changes] == [{"kind": "set", "path": "meta", "after": {"x": {"y": 1}}}]

    shape, _ = shape_and_plan(CASES["single Change of an array index past its end"])
    effect = shape.predict({"_id": 6, "codes": [1, 2]})
    assert [c.to_document() for c in effect.changes] == [  # padded with nulls: the array is recorded whole
        {"kind": "set", "path": "codes", "before": [1, 2], "after": [1, 2, None, 9]}
    ]

    shape, _ = shape_and_plan(CASES["array Change, matching 'no'"])
    notes = [{"text": "a", "reviewed": "no"}, {"text": "b", "reviewed": "yes"}, {"text": "c"}]
    effect = shape.predict({"_id": 1, "notes": notes})
    assert [c.to_document() for c in effect.changes] == [
        {"kind": "set", "path": "notes.0", "before": notes[0], "after": {"text": "a", "reviewed": "done"}}
    ]
    assert effect.pins == {"notes": {"$eq": notes}}

    shape, _ = shape_and_plan(CASES["array Delete 'no'"])
    effect = shape.predict({"_id": 5, "notes": [{"r": 0}, {"reviewed": "no"}, {"r": 2}, {"reviewed": "no"}]})
    (pull,) = effect.changes
    assert pull.removed == ((1, {"reviewed": "no"}), (3, {"reviewed": "no"})) and pull.kept_length == 2


def test_no_ops_and_refusals_are_told_apart_from_changes() -> None:
    shape, _ = shape_and_plan(CASES["single Change"])
    assert shape.predict({"_id": 1, "status": "Closed"}) is None
    assert shape.predict({"_id": 1, "status": "Closed "}) is not None
    shape, _ = shape_and_plan(CASES["single Change, dotted"])
    refusal = shape.predict({"_id": 4, "meta": "a string"})
    assert isinstance(refusal, Refusal) and "meta.by cannot be set: meta is 'a string'" in refusal.message
    shape, _ = shape_and_plan(CASES["array Add"])
    assert "not an array" in shape.predict({"_id": 6, "notes": "text"}).message
    shape, _ = shape_and_plan(CASES["array Change, every element"])
    assert "notes.1 is 'x', not a document" in shape.predict({"_id": 7, "notes": [{}, "x"]}).message
    shape, _ = shape_and_plan(CASES["single Add into a missing parent, and Delete"])
    assert shape.predict({"_id": 3, "meta": {"x": {"y": 1}}}) is None  # Delete of an absent field changes nothing


def test_a_top_level_array_only_pushed_onto_is_read_as_its_last_element() -> None:
    shape, _ = shape_and_plan(CASES["array Add"])
    assert shape.projection == {"notes": {"$slice": -1}}
    shape, _ = shape_and_plan({**CASES["single Change"], **CASES["array Change, every element"]})
    assert shape.projection == {"status": 1, "notes": 1}


@pytest.mark.parametrize(
    ("value", "expected", "matches"),
    [
        (1, 1.0, True),
        (Int64(1), Decimal128("1"), True),
        (True, 1, False),
        ("1", 1, False),
        (MISSING, None, True),
        (None, None, True),
        ([None], None, True),
        ("x", None, False),
        (["no", "x"], "no", True),
        ([1, 2], [1, 2], True),
        ([[1, 2]], [1, 2], True),
        ([2, 1], [1, 2], False),
        ({"a": 1, "b": 2}, {"a": 1, "b": 2}, True),
        ({"b": 2, "a": 1}, {"a": 1, "b": 2}, False),
        ("Pending", Regex("^Pend"), True),
        (["x", "Pending"], Regex("^Pend"), True),
        (MISSING, "x", False),
        (float("nan"), float("nan"), True),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), True),
    ],
)
def test_query_equality_is_mongodbs(value: Any, expected: Any, matches: bool) -> None:
    assert query_matches(value, expected) is matches


def test_same_value_is_bson_exact() -> None:
    assert same_value(1, 1) and not same_value(1, 1.0) and not same_value(1, Int64(1))
    assert not same_value({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert same_value(MISSING, MISSING) and not same_value(MISSING, None)


def test_changes_survive_the_journal_round_trip() -> None:
    changes = [
        SetChange("status", "Open", "Closed"),
        SetChange("meta", MISSING, {"by": "x"}),
        SetChange("old", 1, MISSING),
        PushChange("notes", {"text": "t", "date": STAMP}, created=True),
        PullChange.of("notes", [{"r": "no"}, {"r": "yes"}], [0]),
    ]
    assert [change_from_document(c.to_document()) for c in changes] == changes


def test_restoring_needs_the_document_to_still_hold_what_was_written() -> None:
    changes = [SetChange("status", "Open", "Closed"), PushChange("notes", {"text": "t"}, created=False)]
    restoring = restore_document(changes, {"_id": 1, "status": "Closed", "notes": [{"text": "o"}, {"text": "t"}]})
    assert restoring.state == RESTORE
    assert restoring.update == {"$set": {"status": "Open", "notes": [{"text": "o"}]}}
    assert restoring.pins == {"status": {"$eq": "Closed"}, "notes": {"$eq": [{"text": "o"}, {"text": "t"}]}}
    assert restore_document(changes, {"_id": 1, "status": "Open", "notes": [{"text": "o"}]}).state == ALREADY
    conflict = restore_document(changes, {"_id": 1, "status": "Escalated", "notes": [{"text": "t"}]})
    assert conflict.state == CONFLICT and "status is now 'Escalated', the automation wrote 'Closed'" in conflict.reason
    assert conflict.update == {}  # nothing at all of a conflicting document is restored


def test_a_pull_is_undone_while_the_array_still_starts_with_what_it_left() -> None:
    before = [{"n": 0}, {"n": 1, "r": "no"}, {"n": 2}]
    pull = PullChange.of("notes", before, [1])
    appended = [{"n": 0}, {"n": 2}, {"n": 3}]  # a later run pushed a note: the element goes back in its place
    assert restore_document([pull], {"notes": appended}).update == {"$set": {"notes": [*before, {"n": 3}]}}
    assert restore_document([pull], {"notes": [{"n": 2}]}).state == CONFLICT
    assert restore_document([pull], {"notes": before}).state == ALREADY


def test_a_created_array_is_removed_again_when_only_the_pushed_element_is_left() -> None:
    push = PushChange("notes", {"text": "t"}, created=True)
    assert restore_document([push], {"notes": [{"text": "t"}]}).update == {"$unset": {"notes": ""}}
    assert restore_document([push], {"notes": [{"text": "t"}, {"text": "u"}]}).update == {
        "$set": {"notes": [{"text": "u"}]}
    }
    assert restore_document([push], {}).state == ALREADY


def test_a_field_removed_from_the_middle_is_recorded_so_that_its_undo_puts_it_back_there() -> None:
    shape, _ = shape_and_plan(
        {
            "single": [
                {"elementName": "meta.b", "updateType": "Delete"},
                {"elementName": "owner", "updateType": "Delete"},
            ]
        }
    )
    assert FIELD_NAMES in shape.projection  # the document's field names are read with the touched fields
    document = {"_id": 1, "meta": {"a": 1, "b": 2, "c": 3}, "owner": "x", "due": 4}
    effect = shape.predict(document)
    assert [c.to_document() for c in effect.changes] == [
        {"kind": "set", "path": "meta", "before": {"a": 1, "b": 2, "c": 3}, "after": {"a": 1, "c": 3}},
        {"kind": "set", "path": "owner", "before": "x", "preceding": ["_id", "meta"]},
    ]
    assert [change_from_document(c.to_document()) for c in effect.changes] == list(effect.changes)
    now = document_after(document, effect.changes, FieldOrder.SORTED)
    assert list(now) == ["_id", "meta", "due"] and list(now["meta"]) == ["a", "c"]
    restoring = restore_document(list(effect.changes), now)
    restored = {"meta": {"$literal": {"a": 1, "b": 2, "c": 3}}, "owner": {"$literal": "x"}}
    assert restoring.update == [
        {
            "$replaceWith": {
                "$mergeObjects": [
                    {"_id": "$_id", "meta": restored["meta"], "owner": restored["owner"]},
                    "$$ROOT",
                    restored,
                ]
            }
        }
    ]
    assert restoring.pins == {"meta": {"$eq": {"a": 1, "c": 3}}, "owner": {"$exists": False}}

    # The last field of a sub-document, or of the document, goes back to its place by being set again.
    effect = shape.predict({"_id": 1, "meta": {"a": 1, "b": 2}, "owner": "x"})
    assert [c.to_document() for c in effect.changes] == [
        {"kind": "set", "path": "meta.b", "before": 2},
        {"kind": "set", "path": "owner", "before": "x"},
    ]
    assert restore_document(list(effect.changes), {"_id": 1, "meta": {"a": 1}}).update == {
        "$set": {"meta.b": 2, "owner": "x"}
    }


def test_new_fields_are_recorded_in_the_order_the_server_stores_them() -> None:
    """MongoDB sorts an update's paths; SecantusDB applies them in the update's order (``FieldOrder``)."""
    plan = build_plan(
        parse_automation(
            {
                "name": "Order",
                "query": "{}",
                "collectionName": "docs",
                "isActive": True,
                "runCadence": "Hourly",
                "singleFieldUpdateElements": [
                    {"elementName": "meta.status", "updateType": "Add", "elementValue": "x"},
                    {"elementName": "meta.date", "updateType": "Add", "elementValue": STAMP},
                ],
                "arrayObjectFieldUpdateElements": [],
            }
        ),
        STAMP,
    )
    for order, fields in [(FieldOrder.SORTED, ["date", "status"]), (FieldOrder.UPDATE, ["status", "date"])]:
        (change,) = UpdateShape(plan, order).predict({"_id": 1}).changes
        assert (change.path, list(change.after)) == ("meta", fields)


def test_each_operation_sees_what_the_ones_the_server_applied_before_it_left() -> None:
    """``z.2`` pads ``z.1`` with null: MongoDB pulls from ``z.1`` first (a no-op, it is missing) and then pads;
    SecantusDB pads first and then refuses to pull from the null it left."""
    plan = UpdatePlan({"$set": {"z.2": ""}, "$pull": {"z.1": {"a": "x"}}}, [], [])
    (change,) = UpdateShape(plan, FieldOrder.SORTED).predict({"_id": 1, "z": [1.0]}).changes
    assert change == SetChange("z", [1.0], [1.0, None, ""])
    refusal = UpdateShape(plan, FieldOrder.UPDATE).predict({"_id": 1, "z": [1.0]})
    assert isinstance(refusal, Refusal)
    assert refusal.message == "z.1 is None, not an array: MongoDB refuses to pull from it"
