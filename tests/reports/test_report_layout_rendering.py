"""Layouts as data and the line format: the old bugs (``10`` for missing values, ``0.10`` amounts, date crashes,
double-spaced addresses, rows broken by ``|`` or line breaks, mutating constants) stay fixed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from bson import Decimal128, Int64, ObjectId
from pymongo.database import Database

from intervalprocessing_dagster.reports.layouts import (
    BUILT_IN_LAYOUTS,
    LayoutError,
    parse_layout,
    resolve_layout,
)
from intervalprocessing_dagster.reports.render import RenderError, RowRenderer, format_address, format_amount


def _render(columns: list[dict[str, Any]], document: dict[str, Any], **extra: Any) -> str:
    return RowRenderer(parse_layout({"writerTypeKey": "T", "columns": columns, **extra})).row(document).decode()


def test_built_in_headers_are_the_old_writers_headers() -> None:
    assert {key: "|".join(layout.headers) for key, layout in BUILT_IN_LAYOUTS.items()} == {
        "DailyAuditInventoryFileWriter": "Audit Id|Claim Number|Status|Assigned Organization|Audit Date|Audit Amount",
        "WeeklyAuditInventoryFileWriter": "Audit Id|Claim Number|Audit Amount|Audit Date|Status|Assigned Organization|"
        "Resource Code|External System Org Id",
        "DailyActiveMRRInventoryFileWriter": "Request Id|Claim Number|Provider Number|Provider Name|Status|"
        "Assigned Organization|Request Date",
        "WeeklyMRRInventoryFileWriter": "Request Id|Claim Number|Provider Number|Provider Name|Provider Full Address|"
        "Status|Assigned Organization|Request Date",
    }


def test_the_spec_example_line() -> None:
    row = RowRenderer(BUILT_IN_LAYOUTS["DailyAuditInventoryFileWriter"]).row(
        {
            "auditId": 10000,
            "claimNumber": "123456789",
            "status": "Pending Review",
            "organization": "HealthCare 123",
            "date": datetime(2024, 2, 24, tzinfo=UTC),
            "amount": 1250000,
        }
    )
    assert row == b"10000|123456789|Pending Review|HealthCare 123|02/24/2024|12500.00\n"


def test_missing_and_null_values_are_empty_cells_in_every_format() -> None:
    columns = [
        {"header": h, "path": p, "format": f}
        for h, p, f in (
            ("T", "a", "text"),
            ("N", "x.y", "text"),
            ("D", "d", "date"),
            ("A", "m", "amount"),
            ("Ad", "addr", "address"),
        )
    ]
    assert _render(columns, {"a": None, "x": {"z": 1}, "d": None}) == "||||\n"


@pytest.mark.parametrize(
    "value, text",
    [
        (7, "7"),
        (Int64(2**40), "1099511627776"),
        (2.0, "2"),
        (2.5, "2.5"),
        (True, "true"),
        (ObjectId("65d9f0a1b2c3d4e5f6a7b800"), "65d9f0a1b2c3d4e5f6a7b800"),
        (datetime(2024, 3, 1, 4, 5, 6, 7000, tzinfo=timezone(timedelta(hours=-5))), "2024-03-01T09:05:06.007Z"),
        (Decimal128("12.30"), "12.30"),
        ({"k": [1]}, '{"k": [1]}'),
    ],
)
def test_text_of_other_types(value: object, text: str) -> None:
    assert _render([{"header": "V", "path": "v"}], {"v": value}) == text + "\n"


@pytest.mark.parametrize(
    "cents, text",
    [
        (0, "0.00"),
        (5, "0.05"),
        (-1999, "-19.99"),
        (Int64(123456789012), "1234567890.12"),
        (12.5, "0.13"),
        (Decimal128("1050"), "10.50"),
    ],
)
def test_amounts_are_cents_with_two_decimals(cents: object, text: str) -> None:
    assert format_amount(cents) == text


def test_dates_print_their_utc_day() -> None:
    late_evening_new_york = datetime(2024, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert _render([{"header": "D", "path": "d", "format": "date"}], {"d": late_evening_new_york}) == "03/02/2024\n"


def test_a_value_a_format_cannot_print_names_the_document_and_column() -> None:
    with pytest.raises(
        RenderError,
        match=r"column 'Audit Date' \(date\), document _id=7: a date column needs a BSON "
        r"date, got str '2024-02-24'",
    ):
        _render([{"header": "Audit Date", "path": "date", "format": "date"}], {"_id": 7, "date": "2024-02-24"})


@pytest.mark.parametrize(
    "cents, problem",
    [
        (Decimal128("NaN"), r"needs a finite number of cents, got Decimal128\('NaN'\)"),
        (Decimal128("Infinity"), r"needs a finite number of cents, got Decimal128\('Infinity'\)"),
        (Decimal128("-Infinity"), r"needs a finite number of cents"),
        (Decimal128("1E+40"), r"cannot print Decimal128\('1E\+40'\) cents with two decimals"),
        (10**40, "cannot print 1" + "0" * 40 + " cents with two decimals"),
    ],
)
def test_an_amount_that_cannot_be_printed_names_the_document_and_column(cents: object, problem: str) -> None:
    expected = r"column 'Audit Amount' \(amount\), document _id=7: an amount column " + problem
    with pytest.raises(RenderError, match=expected):
        _render([{"header": "Audit Amount", "path": "amount", "format": "amount"}], {"_id": 7, "amount": cents})


@pytest.mark.parametrize(
    "address, text",
    [
        (
            {"address1": "789 Boulevard St", "address2": "", "city": "Knoxville", "state": "TN", "zip": "37902"},
            "789 Boulevard St Knoxville, TN 37902",
        ),
        (
            {"address1": " 1 A St ", "address2": "Apt 2", "city": "Memphis", "state": "TN", "zip": 38103},
            "1 A St Apt 2 Memphis, TN 38103",
        ),
        ({"address1": "12 Lake Dr", "city": "Chattanooga", "state": None}, "12 Lake Dr Chattanooga"),
        ({"state": "TN", "zip": "37201"}, "TN 37201"),
        ({}, ""),
    ],
)
def test_full_address_never_has_double_spaces_or_placeholders(address: dict[str, Any], text: str) -> None:
    assert format_address(address) == text


def test_pipes_and_line_breaks_become_spaces_and_are_counted() -> None:
    renderer = RowRenderer(
        parse_layout(
            {
                "writerTypeKey": "T",
                "columns": [{"header": "A", "path": "a"}, {"header": "B", "path": "b"}, {"header": "C", "path": "c"}],
            }
        )
    )
    assert renderer.row({"a": "x|y", "b": "line1\r\nline2", "c": "fine"}) == b"x y|line1  line2|fine\n"
    assert renderer.sanitized_values == 2


def test_renames_match_exactly_and_constants_ignore_the_document() -> None:
    columns = [{"header": "Org", "path": "organization"}, {"header": "Code", "value": "RCP-1039bc0"}]
    renames = [{"path": "organization", "from": "Transparency Health", "to": "Clear View Health Services"}]
    assert _render(columns, {"organization": "Transparency Health", "Code": "x"}, valueRenames=renames) == (
        "Clear View Health Services|RCP-1039bc0\n"
    )
    assert _render(columns, {"organization": "Transparency Health Inc"}, valueRenames=renames) == (
        "Transparency Health Inc|RCP-1039bc0\n"
    )


@pytest.mark.parametrize(
    "document, problem",
    [
        ({"columns": []}, "layout 'T': columns must be a non-empty list"),
        ({"columns": [{"header": "A"}]}, r"columns\[0\] \('A'\): give exactly one of path \(a field\) or value"),
        ({"columns": [{"header": "A", "path": "a", "format": "money"}]}, "unknown format 'money'; known formats: text"),
        ({"columns": [{"header": "A|B", "path": "a"}]}, "header 'A|B' must not contain '|' or a line break"),
        ({"columns": [{"header": "A", "value": "x", "format": "date"}]}, "a constant column has no format"),
        ({"columns": [{"header": "A", "path": "a"}], "sort": {"a": "asc"}}, "sort direction for 'a' must be 1 or -1"),
        ({"columns": [{"header": "A", "path": "a"}], "keepRowsWithoutJoin": "yes"}, "keepRowsWithoutJoin must be true"),
        (
            {"columns": [{"header": "A", "path": "a"}], "valueRenames": [{"path": "a", "from": "x"}]},
            r"valueRenames\[0\]: to must be a string",
        ),
    ],
)
def test_layout_errors_name_the_layout_and_field(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(LayoutError, match=problem):
        parse_layout({"writerTypeKey": "T", **document})


def test_sort_always_ends_with_id() -> None:
    layout = parse_layout({"writerTypeKey": "T", "columns": [{"header": "A", "path": "a"}], "sort": {"a": -1}})
    assert layout.sort == (("a", -1), ("_id", 1))
    assert BUILT_IN_LAYOUTS["DailyAuditInventoryFileWriter"].sort == (("_id", 1),)


def test_stored_layout_replaces_the_built_in_one(mongo_db: Database) -> None:
    mongo_db.reportlayouts.insert_one(
        {"writerTypeKey": "DailyAuditInventoryFileWriter", "columns": [{"header": "Audit", "path": "auditId"}]}
    )
    assert resolve_layout(mongo_db, "DailyAuditInventoryFileWriter", process="P").headers == ["Audit"]
    assert (
        resolve_layout(mongo_db, "WeeklyAuditInventoryFileWriter", process="P")
        is (BUILT_IN_LAYOUTS["WeeklyAuditInventoryFileWriter"])
    )
    with pytest.raises(LayoutError, match="process 'P': unknown writerTypeKey 'Nope'"):
        resolve_layout(mongo_db, "Nope", process="P")
