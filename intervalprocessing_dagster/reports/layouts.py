"""Report layouts as data: what each line of a generated file holds, declared in a document, not in code.

The old system hard-coded one writer class per file (spec §2.6, §2.7); here a changed column or a new report is a
config change. ``BUILT_IN_LAYOUTS`` declares the four old writers, keyed by their ``writerTypeKey``; a
``reportlayouts`` document with the same key replaces one whole, a new key declares a new layout. Columns are paths
(joined documents included) or constants, formatted ``text``, ``date``, ``amount`` or ``address``; rows whose join
found nothing are kept unless ``keepRowsWithoutJoin: false``. The document's fields and each format's rules:
docs/decisions/report-layouts-as-data.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pymongo.database import Database

LAYOUTS_COLLECTION = "reportlayouts"

# Characters that would break the pipe-delimited line format if they appeared in a header or a constant.
_FORBIDDEN_IN_TEXT = ("|", "\r", "\n")


class LayoutError(ValueError):
    """A layout document that cannot be used, or a ``writerTypeKey`` no layout answers to."""


class ColumnFormat(Enum):
    """How a column turns a document value into cell text (docs/decisions/report-layouts-as-data.md)."""

    TEXT = "text"
    DATE = "date"
    AMOUNT = "amount"
    ADDRESS = "address"


@dataclass(frozen=True)
class Column:
    """One column: its header and either a source path (with a format) or a constant value."""

    header: str
    path: str | None = None
    format: ColumnFormat = ColumnFormat.TEXT
    value: str | None = None


@dataclass(frozen=True)
class ReportLayout:
    """A parsed, validated layout; ``renames`` maps a path to ``{from: to}``."""

    key: str
    columns: tuple[Column, ...]
    renames: Mapping[str, Mapping[str, str]]
    sort: tuple[tuple[str, int], ...]
    keep_rows_without_join: bool

    @property
    def headers(self) -> list[str]:
        return [column.header for column in self.columns]


def _document(key: str, columns: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"writerTypeKey": key, "columns": columns, **extra}


def _col(header: str, path: str, fmt: str = "text") -> dict[str, str]:
    return {"header": header, "path": path, "format": fmt}


# The four old writers (spec §2.6) and their processors' custom logic (§2.7), as layout documents.
BUILT_IN_LAYOUT_DOCUMENTS: tuple[dict[str, Any], ...] = (
    _document(
        "DailyAuditInventoryFileWriter",
        [
            _col("Audit Id", "auditId"),
            _col("Claim Number", "claimNumber"),
            _col("Status", "status"),
            _col("Assigned Organization", "organization"),
            _col("Audit Date", "date", "date"),
            _col("Audit Amount", "amount", "amount"),
        ],
    ),
    _document(
        "WeeklyAuditInventoryFileWriter",
        [
            _col("Audit Id", "auditId"),
            _col("Claim Number", "claimNumber"),
            _col("Audit Amount", "amount", "amount"),
            _col("Audit Date", "date", "date"),
            _col("Status", "status"),
            _col("Assigned Organization", "organization"),
            {"header": "Resource Code", "value": "RCP-1039bc0"},
            {"header": "External System Org Id", "value": "8b10YTG"},
        ],
    ),
    _document(
        "DailyActiveMRRInventoryFileWriter",
        [
            _col("Request Id", "mrrId"),
            _col("Claim Number", "claimNumber"),
            _col("Provider Number", "provider.number"),
            _col("Provider Name", "provider.name"),
            _col("Status", "status"),
            _col("Assigned Organization", "organization"),
            _col("Request Date", "date", "date"),
        ],
        valueRenames=[{"path": "organization", "from": "Transparency Health", "to": "Clear View Health Services"}],
    ),
    _document(
        "WeeklyMRRInventoryFileWriter",
        [
            _col("Request Id", "mrrId"),
            _col("Claim Number", "claimNumber"),
            _col("Provider Number", "provider.number"),
            _col("Provider Name", "provider.name"),
            _col("Provider Full Address", "provider.address", "address"),
            _col("Status", "status"),
            _col("Assigned Organization", "organization"),
            _col("Request Date", "date", "date"),
        ],
    ),
)


def parse_layout(document: Mapping[str, Any]) -> ReportLayout:
    """Validate a layout document; every error names the layout and the field, so the fix is obvious."""
    key = document.get("writerTypeKey")
    if not isinstance(key, str) or not key:
        raise LayoutError(f"{LAYOUTS_COLLECTION} document {document.get('_id')!r}: writerTypeKey must be a string")
    where = f"layout {key!r}"
    raw_columns = document.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise LayoutError(f"{where}: columns must be a non-empty list")
    columns = tuple(_parse_column(raw, f"{where} columns[{index}]") for index, raw in enumerate(raw_columns))
    keep = document.get("keepRowsWithoutJoin", True)
    if not isinstance(keep, bool):
        raise LayoutError(f"{where}: keepRowsWithoutJoin must be true or false")
    return ReportLayout(
        key=key,
        columns=columns,
        renames=_parse_renames(document.get("valueRenames", []), where),
        sort=_parse_sort(document.get("sort", {"_id": 1}), where),
        keep_rows_without_join=keep,
    )


def _parse_column(raw: Any, where: str) -> Column:
    if not isinstance(raw, Mapping):
        raise LayoutError(f"{where}: a column must be a document with header and path (or value)")
    header = _text_field(raw, "header", where)
    has_path, has_value = "path" in raw, "value" in raw
    if has_path == has_value:
        raise LayoutError(f"{where} ({header!r}): give exactly one of path (a field) or value (a constant)")
    if has_value:
        if "format" in raw:
            raise LayoutError(f"{where} ({header!r}): a constant column has no format")
        return Column(header=header, value=_text_field(raw, "value", where, allow_empty=True))
    path = _text_field(raw, "path", where)
    if path.startswith("$") or ".." in path or path.endswith("."):
        raise LayoutError(f"{where} ({header!r}): path {path!r} must be a dotted field path such as 'provider.name'")
    fmt = raw.get("format", ColumnFormat.TEXT.value)
    try:
        column_format = ColumnFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in ColumnFormat)
        raise LayoutError(f"{where} ({header!r}): unknown format {fmt!r}; known formats: {known}") from None
    return Column(header=header, path=path, format=column_format)


def _parse_renames(raw: Any, where: str) -> dict[str, dict[str, str]]:
    if not isinstance(raw, list):
        raise LayoutError(f"{where}: valueRenames must be a list of {{path, from, to}} documents")
    renames: dict[str, dict[str, str]] = {}
    for index, rename in enumerate(raw):
        item = f"{where} valueRenames[{index}]"
        if not isinstance(rename, Mapping):
            raise LayoutError(f"{item}: must be a document with path, from and to")
        path = _text_field(rename, "path", item)
        old = _text_field(rename, "from", item, allow_empty=True)
        renames.setdefault(path, {})[old] = _text_field(rename, "to", item, allow_empty=True)
    return renames


def _parse_sort(raw: Any, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise LayoutError(f"{where}: sort must be a non-empty document such as {{_id: 1}}")
    sort: list[tuple[str, int]] = []
    for path, direction in raw.items():
        if direction not in (1, -1) or isinstance(direction, bool):
            raise LayoutError(f"{where}: sort direction for {path!r} must be 1 or -1, got {direction!r}")
        sort.append((path, int(direction)))
    if "_id" not in raw:  # equal keys would otherwise come back in whatever order the server likes
        sort.append(("_id", 1))
    return tuple(sort)


def _text_field(raw: Mapping[str, Any], name: str, where: str, *, allow_empty: bool = False) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise LayoutError(f"{where}: {name} must be a{'' if allow_empty else ' non-empty'} string, got {value!r}")
    if any(char in value for char in _FORBIDDEN_IN_TEXT):
        raise LayoutError(f"{where}: {name} {value!r} must not contain '|' or a line break")
    return value


BUILT_IN_LAYOUTS: Mapping[str, ReportLayout] = {
    layout.key: layout for layout in map(parse_layout, BUILT_IN_LAYOUT_DOCUMENTS)
}


def resolve_layout(db: Database, key: str, *, process: str) -> ReportLayout:
    """The layout for ``writerTypeKey`` ``key``: a ``reportlayouts`` document if one exists, else a built-in one.

    An unknown key is a clear error naming the process and the keys that do exist (the old factory returned a
    null writer and crashed later with a NullReferenceException, spec §5.16).
    """
    stored = db[LAYOUTS_COLLECTION].find_one({"writerTypeKey": key}, sort=[("_id", 1)])
    if stored is not None:
        return parse_layout(stored)
    if key in BUILT_IN_LAYOUTS:
        return BUILT_IN_LAYOUTS[key]
    stored_keys = {k for k in db[LAYOUTS_COLLECTION].distinct("writerTypeKey") if isinstance(k, str)}
    configured = sorted(set(BUILT_IN_LAYOUTS) | stored_keys)
    raise LayoutError(
        f"process {process!r}: unknown writerTypeKey {key!r}; add a {LAYOUTS_COLLECTION} document with that "
        f"writerTypeKey, or use one of: {', '.join(configured)}"
    )
