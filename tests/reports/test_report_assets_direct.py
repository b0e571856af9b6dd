"""Report assets invoked directly (``build_asset_context``), with a fixed clock: the Friday rule and empty results.

``RunClock.stamp`` reads the run's tags and record, which a directly invoked asset does not have, so these tests
stand in a clock that returns a fixed stamp; everything else (MongoDB, store, rendering) is real.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, build_asset_context
from pymongo.database import Database

from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.reports.assets import BUILT_IN_REPORT_ASSETS
from intervalprocessing_dagster.reports.delivery import LocalReportStore
from intervalprocessing_dagster.runs.clock import RunClock

ASSETS: dict[str, AssetsDefinition] = {a.key.to_user_string(): a for a in BUILT_IN_REPORT_ASSETS}
THURSDAY = datetime(2024, 3, 14, 3, 0, tzinfo=ZoneInfo("America/New_York"))


class FixedClock(RunClock):
    """A clock whose stamp is ``at`` (ISO 8601), for directly invoked assets."""

    at: str

    def stamp(self, context: AssetExecutionContext) -> datetime:
        return datetime.fromisoformat(self.at)


def _invoke(name: str, mongo: MongoResource, folder: Path, *, include_weekly: bool) -> list[MaterializeResult]:
    resources = {
        "mongo": mongo,
        "clock": FixedClock(at=THURSDAY.isoformat()),
        "report_store": LocalReportStore(directory=str(folder)),
    }
    with build_asset_context(resources=resources) as context:  # a context manager: MongoResource has a teardown
        return list(ASSETS[name](context, config={"include_weekly": include_weekly}))


def test_weekly_report_skips_off_friday_unless_asked(report_db: Database, mongo: MongoResource, tmp_path: Path) -> None:
    assert _invoke("weekly_audit_inventory", mongo, tmp_path, include_weekly=False) == []
    assert not tmp_path.exists() or not any(tmp_path.iterdir())

    [result] = _invoke("weekly_audit_inventory", mongo, tmp_path, include_weekly=True)
    assert result.metadata["rows"] == 5
    assert result.metadata["file_name"] == "WeeklyAuditInventory_03142024_030000.txt"


def test_no_matching_documents_gives_a_header_only_file(
    config_db: Database, mongo: MongoResource, tmp_path: Path
) -> None:
    [result] = _invoke("daily_active_mrr_inventory", mongo, tmp_path, include_weekly=False)
    assert (tmp_path / "DailyActiveMRRInventory_03142024_030000.txt").read_bytes() == (
        b"Request Id|Claim Number|Provider Number|Provider Name|Status|Assigned Organization|Request Date\n"
    )
    assert (result.metadata["rows"], result.metadata["rows_without_join"]) == (0, 0)
    assert config_db.generatedfiles.count_documents({"source": "DailyActiveMRRInventoryProcessor"}) == 1


def test_report_assets_tag_their_cadence_apart_from_the_run_queue_cadence_key() -> None:
    # "intervalprocessing/cadence" limits runs per data-change cadence in the run queue (deploy/dagster.yaml).
    assert {name: dict(a.tags_by_key[a.key]) for name, a in ASSETS.items()} == {
        "daily_audit_inventory": {"intervalprocessing/report_cadence": "daily"},
        "daily_active_mrr_inventory": {"intervalprocessing/report_cadence": "daily"},
        "weekly_audit_inventory": {"intervalprocessing/report_cadence": "weekly"},
        "weekly_mrr_inventory": {"intervalprocessing/report_cadence": "weekly"},
    }
