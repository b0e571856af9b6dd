"""What ``file_generation_schedule`` asks for when ticks were missed (the daemon was down): one run for its own tick,
tagged with the ticks it stands in for, and the weekly reports when one of those was a Friday, which say so. (The
daemon's own scheduler after a gap: tests/deploy/test_deploy_missed_ticks.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    ExecuteInProcessResult,
    RunRequest,
    build_schedule_context,
    instance_for_test,
)
from dagster._core.storage.tags import SCHEDULE_NAME_TAG
from pymongo.database import Database

from intervalprocessing_dagster.reports.assets import MISSED_TICKS_TAG, WEEKLY_CATCH_UP_TAG
from intervalprocessing_dagster.reports.schedules import build_file_generation_schedule
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from intervalprocessing_dagster.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")
RunReports = Callable[..., ExecuteInProcessResult]


def tick(day: int) -> datetime:
    """03:00 in New York on March ``day``, 2024 (the 13th is a Wednesday, the 15th a Friday)."""
    return datetime(2024, 3, day, 3, 0, tzinfo=NEW_YORK)


def request_at(instance: DagsterInstance, when: datetime) -> RunRequest:
    schedule = build_file_generation_schedule(Settings.from_env({"INTERVALPROCESSING_TIMEZONE": "America/New_York"}))
    # A context manager: the schedule reads context.instance, which the context opens and must close again.
    with build_schedule_context(instance, scheduled_execution_time=when) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    return request


def previous_run(instance: DagsterInstance, stamp: datetime, *, schedule: str = "file_generation_schedule") -> None:
    """A run the schedule requested for ``stamp`` (finished: its status does not matter)."""
    instance.add_run(
        DagsterRun(
            job_name="file_generation_job",
            run_id=str(uuid.uuid4()),
            status=DagsterRunStatus.SUCCESS,
            tags={SCHEDULE_NAME_TAG: schedule, RUN_STAMP_TAG: stamp.isoformat()},
        )
    )


def test_the_daily_tick_after_the_last_one_is_an_ordinary_run() -> None:
    with instance_for_test() as instance:
        previous_run(instance, tick(14))
        request = request_at(instance, tick(15))
    assert set(request.tags) == {RUN_STAMP_TAG, SCHEDULE_NAME_TAG} and not request.run_config


def test_a_run_after_missed_ticks_stands_for_its_own_tick_and_names_them() -> None:
    with instance_for_test() as instance:
        previous_run(instance, tick(12))
        request = request_at(instance, tick(14))
    assert request.tags[RUN_STAMP_TAG] == tick(14).isoformat()  # file names and the data: this tick's
    assert request.tags[MISSED_TICKS_TAG] == tick(13).isoformat()
    assert WEEKLY_CATCH_UP_TAG not in request.tags and not request.run_config


def test_a_missed_friday_makes_its_weekly_reports_in_the_next_run() -> None:
    """Down from Thursday night to Saturday night: Friday's and Saturday's ticks were missed, Sunday's runs once,
    with the weekly reports Friday would have made."""
    with instance_for_test() as instance:
        previous_run(instance, tick(14))
        request = request_at(instance, tick(17))
    assert request.tags[RUN_STAMP_TAG] == tick(17).isoformat()
    assert request.tags[MISSED_TICKS_TAG] == f"{tick(15).isoformat()}, {tick(16).isoformat()}"
    assert request.tags[WEEKLY_CATCH_UP_TAG] == tick(15).isoformat()
    assert request.run_config == {"include_weekly": True}


def test_a_caught_up_tick_that_is_the_friday_keeps_the_friday_rule_alone() -> None:
    with instance_for_test() as instance:
        previous_run(instance, tick(13))
        request = request_at(instance, tick(15))
    assert request.tags[MISSED_TICKS_TAG] == tick(14).isoformat()
    assert WEEKLY_CATCH_UP_TAG not in request.tags and not request.run_config  # the stamp is a Friday already


@pytest.mark.parametrize("schedule", [None, "another_schedule"])
def test_without_a_previous_run_of_this_schedule_nothing_is_caught_up(schedule: str | None) -> None:
    """A hand-launched run (no schedule tag) or another schedule's run is not this schedule's previous tick."""
    with instance_for_test() as instance:
        if schedule:
            previous_run(instance, tick(1), schedule=schedule)
        request = request_at(instance, tick(17))
    assert set(request.tags) == {RUN_STAMP_TAG, SCHEDULE_NAME_TAG} and not request.run_config


def test_a_long_outage_is_one_line() -> None:
    with instance_for_test() as instance:
        previous_run(instance, datetime(2024, 1, 1, 3, 0, tzinfo=NEW_YORK))
        request = request_at(instance, tick(17))
    assert request.tags[MISSED_TICKS_TAG] == (
        f"75 ticks from 2024-01-02T03:00:00-05:00 to {tick(16).isoformat()}"  # 30 + 29 + 16 days
    )
    assert request.tags[WEEKLY_CATCH_UP_TAG] == tick(15).isoformat()  # the last Friday missed


def test_the_weekly_reports_of_a_missed_friday_say_so_and_are_named_for_their_run(
    report_db: Database, run_reports: RunReports, reports_dir: Path
) -> None:
    """The run the schedule asks for after a missed Friday, executed: daily and weekly files, all named for its
    Sunday tick; the weekly reports' metadata (and the run's log) name the Friday they stand in for."""
    with instance_for_test() as instance:
        previous_run(instance, tick(14))
        request = request_at(instance, tick(17))
    result = run_reports(tick(17), run_config=request.run_config, tags=dict(request.tags))

    assert result.success
    assert sorted(path.name for path in reports_dir.iterdir()) == [
        f"{base}_03172024_030000.txt"
        for base in ("DailyActiveMRRInventory", "DailyAuditInventory", "WeeklyAuditInventory", "WeeklyMRRInventory")
    ]
    catch_up = {
        event.asset_key.to_user_string(): event.materialization.metadata.get("catches_up_on")
        for event in result.get_asset_materialization_events()
    }
    assert {asset: value.value for asset, value in catch_up.items() if value} == {
        "weekly_audit_inventory": tick(15).isoformat(),
        "weekly_mrr_inventory": tick(15).isoformat(),
    }
