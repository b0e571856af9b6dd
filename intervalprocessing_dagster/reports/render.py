"""Turn documents into lines of a pipe-delimited report, byte-compatible with the old writers (spec §2.5-2.7).

Format: UTF-8 without BOM, one header line, one line per document, cells joined by ``|``, every line (the last one
too) ending in ``\\n``. No quoting, exactly as before, because downstream readers split on ``|`` and ``\\n``.

Sanitizing policy (the old writers had none, so a ``|`` or a line break inside a value shifted or split the row,
spec §2.5, §5.11): every ``|``, ``\\r`` and ``\\n`` inside a cell is replaced by one space. Quoting would have
changed the format every consumer parses; a space keeps the row's shape and the value readable. Each value changed
this way is counted (``sanitized_values``), so the materialization shows when it happens.

Value text follows what the old ``BsonValue.ToString()`` printed for the types the reports hold: strings as they
are, integers as digits, integral doubles without a decimal point; other types print readably (booleans as
``true``/``false``, ObjectIds as hex, dates as ISO 8601 UTC, sub-documents and arrays as relaxed extended JSON).
Missing or null is an empty cell in every format. A value a ``date`` or ``amount`` column cannot format (a string
where a date belongs) stops the report with an error naming the document and column: printing a wrong number
silently would be worse than no file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bson import json_util
from bson.decimal128 import Decimal128
from bson.json_util import RELAXED_JSON_OPTIONS
from bson.objectid import ObjectId

from intervalprocessing_dagster.reports.layouts import Column, ColumnFormat, ReportLayout

DELIMITER = "|"
LINE_END = "\n"
_SANITIZE = str.maketrans({"|": " ", "\r": " ", "\n": " "})
_CENT = Decimal("0.01")
_ADDRESS_STREET_PARTS = ("address1", "address2", "city")
_ADDRESS_REGION_PARTS = ("state", "zip")


class RenderError(ValueError):
    """A document value that its column's format cannot print."""


class RowRenderer:
    """Renders one layout's lines and counts the values it had to sanitize."""

    def __init__(self, layout: ReportLayout) -> None:
        self._layout = layout
        self.sanitized_values = 0

    def header(self) -> bytes:
        """The header line (layout validation already keeps ``|`` and line breaks out of headers)."""
        return (DELIMITER.join(self._layout.headers) + LINE_END).encode("utf-8")

    def row(self, document: Mapping[str, Any]) -> bytes:
        """One document as one line."""
        cells = []
        for column in self._layout.columns:
            text = self._cell(column, document)
            clean = text.translate(_SANITIZE)
            if clean != text:
                self.sanitized_values += 1
            cells.append(clean)
        return (DELIMITER.join(cells) + LINE_END).encode("utf-8")

    def _cell(self, column: Column, document: Mapping[str, Any]) -> str:
        if column.path is None:
            return column.value or ""
        value = field_value(document, column.path)
        renames = self._layout.renames.get(column.path)
        if renames and isinstance(value, str):
            value = renames.get(value, value)
        if value is None:
            return ""
        try:
            return _FORMATTERS[column.format](value)
        except (TypeError, ValueError, ArithmeticError) as exc:  # ArithmeticError: any decimal signal left
            raise RenderError(
                f"layout {self._layout.key!r}, column {column.header!r} ({column.path}), document "
                f"_id={document.get('_id')!r}: {exc}"
            ) from None


def field_value(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path through sub-documents, or None when any step is missing (as the old helper)."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def format_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        utc = _utc(value)
        fraction = f".{utc.microsecond // 1000:03d}" if utc.microsecond else ""
        return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, (Mapping, list)):
        return json_util.dumps(value, json_options=RELAXED_JSON_OPTIONS)
    return str(value)


def format_date(value: Any) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"a date column needs a BSON date, got {type(value).__name__} {value!r}")
    return _utc(value).strftime("%m/%d/%Y")


def format_amount(value: Any) -> str:
    """Cents as currency units with two decimals: ``1250000`` -> ``12500.00``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal128)):
        raise TypeError(f"an amount column needs a number of cents, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"an amount column needs a finite number of cents, got {value!r}")
    cents = value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)
    if not cents.is_finite():
        raise ValueError(f"an amount column needs a finite number of cents, got {value!r}")
    try:
        return str((cents / 100).quantize(_CENT, rounding=ROUND_HALF_UP))
    except InvalidOperation:
        raise ValueError(f"an amount column cannot print {value!r} cents with two decimals (too many digits)") from None


def format_address(value: Any) -> str:
    """``"<a1> <a2> <city>, <state> <zip>"`` with missing or blank parts (and their separators) left out."""
    if not isinstance(value, Mapping):
        raise TypeError(f"an address column needs a sub-document, got {type(value).__name__} {value!r}")
    street = " ".join(_parts(value, _ADDRESS_STREET_PARTS))
    region = " ".join(_parts(value, _ADDRESS_REGION_PARTS))
    return ", ".join(part for part in (street, region) if part)


def _parts(address: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    values = (address.get(name) for name in names)
    texts = (format_text(value).strip() for value in values if value is not None)
    return [text for text in texts if text]


def _utc(value: datetime) -> datetime:
    """BSON dates are UTC; a naive one (a client without tz_aware) is read as UTC too."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_FORMATTERS = {
    ColumnFormat.TEXT: format_text,
    ColumnFormat.DATE: format_date,
    ColumnFormat.AMOUNT: format_amount,
    ColumnFormat.ADDRESS: format_address,
}
