"""Byte-exact files for the four built-in reports, from the old config documents and awkward data.

The golden files were checked line by line against spec §2.6-2.7 and the named bug fixes: empty cells for missing
or null values (never ``10``, ``0.10`` or a crash), ``|`` and line breaks in values replaced by a space, addresses
without double spaces, rows in ``_id`` order, MRRs without a provider kept, the rename on the daily active MRR file
only, and the weekly audit constants printed even where a document already had those fields.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import ExecuteInProcessResult
from pymongo.database import Database

GOLDEN = Path(__file__).parent / "golden"
REPORTS = {
    "daily_audit_inventory": "DailyAuditInventory",
    "daily_active_mrr_inventory": "DailyActiveMRRInventory",
    "weekly_audit_inventory": "WeeklyAuditInventory",
    "weekly_mrr_inventory": "WeeklyMRRInventory",
}


@pytest.fixture()
def friday_run(report_db: Database, run_reports: Callable[..., ExecuteInProcessResult]) -> ExecuteInProcessResult:
    result = run_reports()
    assert result.success
    return result


@pytest.mark.parametrize("asset_name, base", REPORTS.items())
def test_report_matches_golden_file(
    friday_run: ExecuteInProcessResult, reports_dir: Path, asset_name: str, base: str
) -> None:
    written = (reports_dir / f"{base}_03152024_030000.txt").read_bytes()
    assert written == (GOLDEN / f"{base}.txt").read_bytes()
    assert not written.startswith(b"\xef\xbb\xbf") and written.endswith(b"\n") and b"\r" not in written


def test_metadata_counts_what_was_written(friday_run: ExecuteInProcessResult, reports_dir: Path) -> None:
    [mrr] = friday_run.asset_materializations_for_node("weekly_mrr_inventory")
    [audit] = friday_run.asset_materializations_for_node("daily_audit_inventory")
    path = reports_dir / "WeeklyMRRInventory_03152024_030000.txt"
    assert mrr.metadata["rows"].value == 7
    assert mrr.metadata["bytes"].value == path.stat().st_size
    assert mrr.metadata["rows_without_join"].value == 2  # no provider_id, and a provider that does not exist
    assert mrr.metadata["sanitized_values"].value == 1  # "Smith | Jones Clinic"
    assert audit.metadata["sanitized_values"].value == 2  # "Acme | Partners" and the claim number with a newline
    assert audit.metadata["location"].value == str(reports_dir / "DailyAuditInventory_03152024_030000.txt")
