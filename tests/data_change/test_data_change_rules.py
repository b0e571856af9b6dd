"""Validation of ``dataupdateconfigs`` documents: the old schema in, every problem out (by automation and field)."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import pytest
from bson import ObjectId
from bson.int64 import Int64

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.rules import (
    InvalidAutomationError,
    Limit,
    Matching,
    UpdateType,
    config_hash,
    parse_automation,
    paths_conflict,
)
from intervalprocessing_dagster.mongo.demo_data import DATA_UPDATE_CONFIGS


def config(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "_id": ObjectId(),
        "name": "Close Stale Audits",
        "query": "{ 'status' : 'Stale' }",
        "collectionName": "audits",
        "isActive": True,
        "runCadence": "Hourly",
        "singleFieldUpdateElements": [{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}],
        "arrayObjectFieldUpdateElements": [],
    }
    document.update(overrides)
    return document


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidAutomationError) as caught:
        parse_automation(document)
    return caught.value.problems


def test_every_demo_automation_is_valid() -> None:
    parsed = [parse_automation(deepcopy(document)) for document in DATA_UPDATE_CONFIGS]
    assert {a.cadence for a in parsed} == set(Cadence)
    assert {u.update_type for a in parsed for u in a.field_updates} == set(UpdateType)
    assert {u.update_type for a in parsed for u in a.array_updates} == set(UpdateType)


def test_old_schema_parses_into_a_typed_automation() -> None:
    automation = parse_automation(
        config(
            query="aggregate([{$match:{status:'Overdue'}}])",
            singleFieldUpdateElements=[{"elementName": "meta.count", "updateType": 1, "elementValue": Int64(7)}],
            arrayObjectFieldUpdateElements=[
                {
                    "arrayProperty": "internalNotes",
                    "matchingPropertyName": "reviewed",
                    "updateType": "Change",
                    "newValue": "yes",
                    "matchingValue": "no",
                },
                {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": 3, "newValue": "x"},
            ],
            someFutureField="ignored, as the old deserializer ignored unknown fields",
        )
    )
    assert automation.query.is_aggregate
    assert automation.cadence is Cadence.HOURLY
    assert automation.source == "Close Stale Audits Query Automation"
    field = automation.field_updates[0]
    assert (field.path, field.update_type, type(field.value)) == ("meta.count", UpdateType.CHANGE, Int64)
    change, delete = automation.array_updates
    assert change.matching == Matching("no")
    assert delete.update_type is UpdateType.DELETE and delete.matching is None


def test_every_problem_is_reported_at_once_naming_automation_and_field() -> None:
    with pytest.raises(InvalidAutomationError) as caught:
        parse_automation(
            config(
                collectionName="",
                query="{ status: 'Open' ",
                isActive="yes",
                runCadence="hourly",
                singleFieldUpdateElements=[
                    {"elementName": "status", "updateType": "Modify", "elementValue": "x"},
                    {"elementName": "$bad", "updateType": "Add", "elementValue": "x"},
                    {"elementName": "priority", "updateType": "Add"},
                ],
                arrayObjectFieldUpdateElements=[
                    {"arrayProperty": "notes", "matchingPropertyName": "a.b", "updateType": "Add", "newValue": "x"},
                    {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": 7, "newValue": "x"},
                ],
            )
        )
    message = str(caught.value)
    assert "'Close Stale Audits'" in message
    fields = [problem.split(":")[0] for problem in caught.value.problems]
    assert fields == [
        "collectionName",
        "query",
        "isActive",
        "runCadence",
        "singleFieldUpdateElements[0].updateType",
        "singleFieldUpdateElements[1].elementName",
        "singleFieldUpdateElements[2].elementValue",
        "arrayObjectFieldUpdateElements[0].matchingPropertyName",
        "arrayObjectFieldUpdateElements[1].updateType",
    ]
    # the parser's own message: source and position
    assert "dataupdateconfigs 'Close Stale Audits' field 'query'" in caught.value.problems[1]
    assert "line 1" in caught.value.problems[1]


@pytest.mark.parametrize("missing", ["singleFieldUpdateElements", "arrayObjectFieldUpdateElements"])
def test_a_missing_element_array_is_a_validation_error_not_a_crash(missing: str) -> None:
    document = config()
    del document[missing]
    assert problems_of(document) == [f"{missing}: must be an array (it may be empty), got nothing (missing)"]


def test_both_element_arrays_empty_is_an_error() -> None:
    problems = problems_of(config(singleFieldUpdateElements=[]))
    assert problems == ["singleFieldUpdateElements/arrayObjectFieldUpdateElements: both are empty: nothing to update"]


def test_update_type_is_a_name_or_0_to_3_and_nothing_else() -> None:
    for stored, expected in [
        ("Add", UpdateType.ADD),
        (1, UpdateType.CHANGE),
        (Int64(2), UpdateType.REMOVE),
        (3, UpdateType.DELETE),
    ]:
        element = {"elementName": "status", "updateType": stored, "elementValue": "x"}
        assert parse_automation(config(singleFieldUpdateElements=[element])).field_updates[0].update_type is expected
    for stored in ["add", "Modify", 4, -1, True, None, 1.0]:
        element = {"elementName": "status", "updateType": stored, "elementValue": "x"}
        assert problems_of(config(singleFieldUpdateElements=[element]))[0].startswith(
            "singleFieldUpdateElements[0].updateType: must be Add, Change, Remove or Delete (or 0-3)"
        )


@pytest.mark.parametrize("cadence", ["hourly", "Half Hourly", "Daily", 1, None])
def test_run_cadence_must_be_the_exact_old_string(cadence: Any) -> None:
    assert problems_of(config(runCadence=cadence))[0].startswith(
        "runCadence: must be exactly one of Nightly, Hourly, HalfHourly, QuarterHourly"
    )


@pytest.mark.parametrize(
    ("single", "array", "expected"),
    [
        # the same field twice: the old Combine silently kept the last one
        (
            [("status", "Add"), ("status", "Change")],
            [],
            "singleFieldUpdateElements[1]: touches 'status', which overlaps",
        ),
        # a field and one of its sub-fields: MongoDB would refuse the update as a conflict
        ([("meta", "Delete"), ("meta.by", "Add")], [], "singleFieldUpdateElements[1]: touches 'meta.by'"),
        # a push and a change on the same array
        (
            [],
            [("notes", "text", "Add"), ("notes", "text", "Change")],
            "arrayObjectFieldUpdateElements[1]: touches 'notes.$[].text', which overlaps 'notes'",
        ),
        # a single field that is the array an array element works on
        ([("notes", "Delete")], [("notes", "text", "Delete")], "arrayObjectFieldUpdateElements[0]: touches 'notes'"),
        # two changes of the same property of one array, whatever they match
        ([], [("notes", "text", "Change"), ("notes", "text", "Remove")], "touches 'notes.$[].text'"),
    ],
)
def test_two_elements_touching_the_same_path_are_an_error(
    single: list[tuple[str, str]], array: list[tuple[str, str, str]], expected: str
) -> None:
    document = config(
        singleFieldUpdateElements=[{"elementName": p, "updateType": t, "elementValue": "x"} for p, t in single],
        arrayObjectFieldUpdateElements=[
            {"arrayProperty": a, "matchingPropertyName": p, "updateType": t, "newValue": "x"} for a, p, t in array
        ],
    )
    problems = problems_of(document)
    assert len(problems) == 1 and expected in problems[0]


@pytest.mark.parametrize(
    ("single", "array", "expected"),
    [
        # an element by its index and every element of the same array (MongoDB: "would create a conflict at 'notes'")
        (
            [("notes.0.date", "Change")],
            [("notes", "text", "Change", None)],
            "arrayObjectFieldUpdateElements[0]: touches 'notes.$[].text', which overlaps 'notes.0.date' of "
            "singleFieldUpdateElements[0]: MongoDB refuses an update touching both (error 40, "
            "ConflictingUpdateOperators), so no document could be updated",
        ),
        # the same with an array filter, and a field of the array itself
        (
            [("notes.count", "Add")],
            [("notes", "text", "Remove", "no")],
            "arrayObjectFieldUpdateElements[0]: touches 'notes.$[].text', which overlaps 'notes.count'",
        ),
        # a field path through an array element, and a push onto the array
        (
            [("notes.1.text", "Change")],
            [("notes", "text", "Add", None)],
            "arrayObjectFieldUpdateElements[0]: touches 'notes', which overlaps 'notes.1.text'",
        ),
    ],
)
def test_paths_mongodb_would_refuse_as_conflicting_are_refused_with_the_reason(
    single: list[tuple[str, str]], array: list[tuple[str, str, str, Any]], expected: str
) -> None:
    elements = []
    for path, prop, update_type, matching in array:
        element = {"arrayProperty": path, "matchingPropertyName": prop, "updateType": update_type, "newValue": "x"}
        elements.append(element if matching is None else {**element, "matchingValue": matching})
    document = config(
        name="Conflicting",
        singleFieldUpdateElements=[{"elementName": p, "updateType": t, "elementValue": "x"} for p, t in single],
        arrayObjectFieldUpdateElements=elements,
    )
    with pytest.raises(InvalidAutomationError) as caught:
        parse_automation(document)
    assert len(caught.value.problems) == 1 and expected in caught.value.problems[0]
    assert str(caught.value).startswith("automation 'Conflicting' in dataupdateconfigs is invalid (1 problem):")


def test_every_conflict_is_reported_at_once() -> None:
    problems = problems_of(
        config(
            singleFieldUpdateElements=[
                {"elementName": "notes.0.date", "updateType": "Delete", "elementValue": ""},
                {"elementName": "meta", "updateType": "Change", "elementValue": "x"},
                {"elementName": "meta.by", "updateType": "Change", "elementValue": "x"},
            ],
            arrayObjectFieldUpdateElements=[
                {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Change", "newValue": "x"}
            ],
        )
    )
    assert [problem.split(":")[0] for problem in problems] == [
        "singleFieldUpdateElements[2]",
        "arrayObjectFieldUpdateElements[0]",
    ]


@pytest.mark.parametrize(
    ("left", "right", "conflict"),
    [
        ("a", "a", True),
        ("a.b", "a", True),
        ("a.b", "a.c", False),
        ("a.$[].b", "a.0.c", True),
        ("a.$[e0].b", "a.x", True),
        ("a.$[].b", "a.$[e1].c", False),
        ("a.$[e0].b", "a.$[e0].b", True),
        ("a.0.b", "a.1.b", False),
        ("ab", "a", False),
    ],
)
def test_paths_conflict_as_mongodb_decides(left: str, right: str, conflict: bool) -> None:
    assert paths_conflict(left, right) is conflict and paths_conflict(right, left) is conflict


def test_different_properties_of_one_array_may_change_together() -> None:
    automation = parse_automation(
        config(
            singleFieldUpdateElements=[],
            arrayObjectFieldUpdateElements=[
                {"arrayProperty": "notes", "matchingPropertyName": p, "updateType": "Change", "newValue": "x"}
                for p in ("text", "reviewed")
            ],
        )
    )
    assert len(automation.array_updates) == 2


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        (
            {"matchingPropertyName": "source", "updateType": "Add", "newValue": "x"},
            "matchingPropertyName: 'source' is written by the automation itself on Add",
        ),
        (
            {"matchingPropertyName": "text", "updateType": "Add", "newValue": "x", "matchingValue": "y"},
            "matchingValue: only applies to Change and Remove; Add pushes a new element",
        ),
        (
            {"matchingPropertyName": "text", "updateType": "Delete", "newValue": "x", "matchingValue": "y"},
            "matchingValue: only applies to Change and Remove; Delete pulls elements equal to newValue",
        ),
        ({"matchingPropertyName": "text", "updateType": "Change"}, "newValue: is missing (Change uses it)"),
        (
            {"matchingPropertyName": "text", "updateType": "Change", "newValue": {"$inc": 1}},
            "newValue: contains the key '$inc'",
        ),
    ],
)
def test_array_element_rules(element: dict[str, Any], expected: str) -> None:
    document = config(
        singleFieldUpdateElements=[], arrayObjectFieldUpdateElements=[{"arrayProperty": "notes", **element}]
    )
    problems = problems_of(document)
    assert len(problems) == 1 and problems[0].startswith(f"arrayObjectFieldUpdateElements[0].{expected}")


def test_remove_needs_no_value_and_cannot_touch_id() -> None:
    automation = parse_automation(
        config(singleFieldUpdateElements=[{"elementName": "organization", "updateType": "Remove"}])
    )
    assert automation.field_updates[0].update_type is UpdateType.REMOVE
    problems = problems_of(config(singleFieldUpdateElements=[{"elementName": "_id", "updateType": "Delete"}]))
    assert problems == [
        "singleFieldUpdateElements[0].elementName: '_id' would change the document's _id, which MongoDB never allows"
    ]


def test_a_document_without_a_name_is_named_by_its_id() -> None:
    document = config(name="  ")
    with pytest.raises(InvalidAutomationError) as caught:
        parse_automation(document)
    assert f"<unnamed, _id {document['_id']}>" in str(caught.value)
    assert caught.value.problems == ["name: must be a non-empty string, got '  '"]


def test_forbidden_pipeline_stage_is_a_query_problem() -> None:
    problems = problems_of(config(query="aggregate([{$match:{}},{$out:'elsewhere'}])"))
    assert len(problems) == 1 and problems[0].startswith("query: ") and "$out" in problems[0]


def test_the_config_hash_ignores_key_order_and_sees_every_value_and_type() -> None:
    document = config()
    reordered = dict(reversed(list(document.items())))
    assert config_hash(reordered) == config_hash(document)
    assert len(config_hash(document)) == 16
    changed_value = config(
        singleFieldUpdateElements=[{"elementName": "status", "updateType": "Change", "elementValue": "Open"}]
    )
    changed_type = deepcopy(document)
    changed_type["singleFieldUpdateElements"][0]["elementValue"] = Int64(1)
    other_int = deepcopy(document)
    other_int["singleFieldUpdateElements"][0]["elementValue"] = 1
    changed_value["_id"] = document["_id"]
    hashes = {config_hash(d) for d in (document, changed_value, changed_type, other_int)}
    assert len(hashes) == 4


@pytest.mark.parametrize(
    ("stored", "limit", "documents_of_1000"),
    [
        (5000, Limit(5000, None), 5000),
        (Int64(20), Limit(20, None), 20),
        (250.0, Limit(250, None), 250),
        ("5%", Limit(None, 5.0), 50),
        ("0.5 %", Limit(None, 0.5), 5),
        ("120, 10%", Limit(120, 10.0), 100),
        ("10%,50", Limit(50, 10.0), 50),
    ],
)
def test_max_documents_is_a_number_a_percentage_or_both(stored: Any, limit: Limit, documents_of_1000: int) -> None:
    assert parse_automation(config(maxDocuments=stored)).max_documents == limit
    assert limit.documents(1000) == documents_of_1000


def test_without_max_documents_the_old_schema_has_no_limit_of_its_own() -> None:
    assert parse_automation(config()).max_documents is None


@pytest.mark.parametrize("stored", [0, -5, 2.5, True, "", "lots", "5,000", "0%", "101%", "5%, 6%", "1, 2", None])
def test_a_bad_max_documents_is_named_with_the_syntax(stored: Any) -> None:
    (problem,) = problems_of(config(maxDocuments=stored))
    assert problem.startswith("maxDocuments: must be a whole number of at least 1, a percentage of the collection")
