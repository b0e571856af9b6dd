"""Planning: an automation becomes one update document, its array filters and its guard conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from intervalprocessing_dagster.data_change.plan import build_plan, push_date
from intervalprocessing_dagster.data_change.rules import Automation, parse_automation

STAMP = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)


def automation(single: list[dict[str, Any]] | None = None, array: list[dict[str, Any]] | None = None) -> Automation:
    return parse_automation(
        {
            "name": "Plan Test",
            "query": "{ status: 'Open' }",
            "collectionName": "audits",
            "isActive": True,
            "runCadence": "Nightly",
            "singleFieldUpdateElements": single or [],
            "arrayObjectFieldUpdateElements": array or [],
        }
    )


def test_single_fields_set_blank_and_unset_with_typed_values() -> None:
    plan = build_plan(
        automation(
            single=[
                {"elementName": "stage", "updateType": "Add", "elementValue": "Ready"},
                {"elementName": "meta.flag", "updateType": "Change", "elementValue": True},
                {"elementName": "organization", "updateType": "Remove"},
                {"elementName": "priority", "updateType": "Delete", "elementValue": "ignored"},
            ]
        ),
        STAMP,
    )
    assert plan.update == {
        "$set": {"stage": "Ready", "meta.flag": True, "organization": ""},
        "$unset": {"priority": ""},
    }
    assert plan.array_filters == [] and plan.conditions == []
    assert plan.filter({"status": "Open"}) == {"status": "Open"}


def test_array_add_pushes_on_any_array_guarded_by_source_and_stamp() -> None:
    plan = build_plan(
        automation(
            array=[
                {
                    "arrayProperty": "followUps",
                    "matchingPropertyName": "text",
                    "updateType": "Add",
                    "newValue": "Call the provider",
                }
            ]
        ),
        STAMP,
    )
    pushed = {"text": "Call the provider", "source": "Plan Test Query Automation", "date": STAMP}
    assert plan.update == {"$push": {"followUps": pushed}}
    assert plan.conditions == [{"followUps": {"$not": {"$elemMatch": pushed}}}]
    assert plan.filter({"status": "Open"}) == {"$and": [{"status": "Open"}, plan.conditions[0]]}


def test_array_change_and_remove_use_array_filters_or_all_elements() -> None:
    plan = build_plan(
        automation(
            array=[
                {
                    "arrayProperty": "internalNotes",
                    "matchingPropertyName": "reviewed",
                    "updateType": "Change",
                    "newValue": "yes",
                    "matchingValue": "no",
                },
                {
                    "arrayProperty": "internalNotes",
                    "matchingPropertyName": "note",
                    "updateType": "Remove",
                    "newValue": "ignored",
                },
                {
                    "arrayProperty": "notes",
                    "matchingPropertyName": "text",
                    "updateType": "Remove",
                    "newValue": "",
                    "matchingValue": "Audit opened",
                },
            ]
        ),
        STAMP,
    )
    assert plan.update == {
        "$set": {"internalNotes.$[e0].reviewed": "yes", "internalNotes.$[].note": "", "notes.$[e2].text": ""}
    }
    assert plan.array_filters == [{"e0.reviewed": "no"}, {"e2.text": "Audit opened"}]
    # MongoDB refuses positional updates where the array is missing, so only documents that have it are selected
    assert plan.conditions == [{"internalNotes": {"$type": "array"}}, {"notes": {"$type": "array"}}]


def test_array_delete_pulls_matching_elements() -> None:
    plan = build_plan(
        automation(
            array=[
                {
                    "arrayProperty": "notes",
                    "matchingPropertyName": "text",
                    "updateType": "Delete",
                    "newValue": "Audit opened",
                }
            ]
        ),
        STAMP,
    )
    assert plan.update == {"$pull": {"notes": {"text": "Audit opened"}}}
    assert plan.conditions == []


def test_push_date_is_the_stamp_in_utc_at_bson_precision() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert push_date(datetime(2026, 3, 5, 21, 0, 0, 123456, tzinfo=eastern)) == datetime(
        2026, 3, 6, 2, 0, 0, 123000, tzinfo=UTC
    )
