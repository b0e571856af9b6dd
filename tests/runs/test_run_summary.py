"""The closing INFO line of every run, as a user sees it: ``dagster job execute`` with the code location's default
executor (multiprocess: every step in its own process), on a seeded database, a failing run included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    Failure,
    execute_job,
    in_process_executor,
    instance_for_test,
    job,
    op,
    reconstructable,
)
from dagster._core.events import RunFailureReason
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from intervalprocessing_dagster.runs.executor import with_run_summary
from intervalprocessing_dagster.runs.run_summary import AutomationRef, RunSummary

REPO = Path(__file__).parents[2]
THURSDAY = "2024-03-14T03:00:00+00:00"
FRIDAY = "2024-03-15T03:00:00+00:00"


def execute(job: str, mongo_uri: str, database: str, tmp_path: Path, stamp: str) -> list[str]:
    """Run ``job`` with the dagster CLI; the lines it printed (the run's own, from every step process)."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": database,
        "REPORTS_LOCAL_DIR": str(tmp_path / "reports"),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "intervalprocessing_dagster.definitions",
            "-j",
            job,
            "--tags",
            json.dumps({RUN_STAMP_TAG: stamp}),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )
    return completed.stdout.splitlines()  # stdout and stderr as a terminal interleaves them


def summary(lines: list[str]) -> str:
    """The summary line's text, checking it is the last line the CLI printed (what a person reads first), after the
    run's end and, on failure, after the CLI's own ``Error: Run … resulted in failure.``."""
    [index] = [i for i, line in enumerate(lines) if "Run summary: " in line]
    assert index == len(lines) - 1, lines[index:]
    ended = [line for line in lines[:index] if re.search(r" - RUN_(SUCCESS|FAILURE) - ", line)]
    assert len(ended) == 1, lines[-10:]
    assert " - INFO - " in lines[index]
    return lines[index].split("Run summary: ", 1)[1]


@pytest.fixture()
def seeded(mongo_uri: str, mongo_db: Database) -> Database:
    seed_demo_data(mongo_db)
    return mongo_db


def insert_broken_automation(db: Database) -> None:
    """An active hourly automation whose query does not parse: its step fails, and so does its config check."""
    db.dataupdateconfigs.insert_one(
        {
            "name": "Broken Rule",
            "runCadence": "Hourly",
            "collectionName": "audits",
            "query": "{ status: ",
            "isActive": True,
            "singleFieldUpdateElements": [],
            "arrayObjectFieldUpdateElements": [],
        }
    )


def test_a_data_change_run_ends_with_its_counts_and_failed_automations_even_when_it_fails(
    mongo_uri: str, seeded: Database, tmp_path: Path
) -> None:
    insert_broken_automation(seeded)
    lines = execute("hourly_data_change_job", mongo_uri, seeded.name, tmp_path, THURSDAY)
    assert "RUN_FAILURE" in [line for line in lines if " - RUN_" in line][-1]
    assert lines[-2].startswith("Error: Run ") and lines[-2].endswith(" resulted in failure."), lines[-3:]
    # The failed automation by the name in its document, not its step key.
    assert summary(lines) == "automations 2 applied, 3 matched, 3 modified, 1 failed ('Broken Rule')"

    again = execute("hourly_data_change_job", mongo_uri, seeded.name, tmp_path, FRIDAY)
    assert summary(again) == "automations 2 applied, 0 matched, 0 modified, 1 failed ('Broken Rule')"


def test_a_file_generation_run_ends_with_the_files_it_wrote_and_the_reports_it_skipped(
    mongo_uri: str, seeded: Database, tmp_path: Path
) -> None:
    lines = execute("file_generation_job", mongo_uri, seeded.name, tmp_path, THURSDAY)
    assert "RUN_SUCCESS" in [line for line in lines if " - RUN_" in line][-1]
    reports = tmp_path / "reports"
    reports_part, checks = summary(lines).removeprefix("reports written: ").split("; checks ")
    written, skipped = reports_part.split("; skipped: ")
    assert set(written.split("; ")) == {  # in the order the step processes finished
        f"daily_active_mrr_inventory -> {reports / 'DailyActiveMRRInventory_03142024_030000.txt'}",
        f"daily_audit_inventory -> {reports / 'DailyAuditInventory_03142024_030000.txt'}",
    }
    reason = "not a Friday (stamp 2024-03-14T03:00:00+00:00, a Thursday)"
    assert set(skipped.split("; ")) == {f"weekly_audit_inventory ({reason})", f"weekly_mrr_inventory ({reason})"}
    # The two written reports' row-count checks and the four reports' freshness checks ran with them.
    assert checks == "6 passed, 0 failed"


def test_a_config_checks_run_ends_with_its_passed_and_failed_checks(
    mongo_uri: str, seeded: Database, tmp_path: Path
) -> None:
    insert_broken_automation(seeded)
    lines = execute("config_checks_job", mongo_uri, seeded.name, tmp_path, THURSDAY)
    assert summary(lines) == "checks 3 passed, 1 failed (dataupdateconfigs:automations_are_valid)"


def test_automations_are_named_briefly_however_many_and_long_their_names() -> None:
    """Failed and not-run automations by document name, the ``_id`` only where the run saw a name twice; at most ten,
    each name cut at 60 characters, so the line and the failure message stay alert-sized."""
    summary = RunSummary(seen_automations={AutomationRef("Twin", "1"), AutomationRef("Twin", "2")})
    named = summary.named(
        [
            AutomationRef("x" * 100, "9"),
            AutomationRef("Twin", "1"),
            *(AutomationRef(f"A{i}", str(i)) for i in range(12)),
        ]
    )
    assert named == ("'" + "x" * 59 + "…', 'Twin' (_id 1), " + ", ".join(f"'A{i}'" for i in range(8)) + " and 4 more")


@op
def succeeds() -> None:
    pass


@op
def fails() -> None:
    raise Failure("the step's own cause")


def unreachable_ledger(_run: object, _instance: object, _job: object, _summary: RunSummary) -> list[AutomationRef]:
    raise ConnectionError("the ledger is unreachable")


@job(executor_def=with_run_summary(in_process_executor, unreachable_ledger))
def green_but_unchecked() -> None:
    succeeds()


@job(executor_def=with_run_summary(in_process_executor, unreachable_ledger))
def red_on_its_step() -> None:
    succeeds()
    fails()


def test_a_closing_check_that_cannot_run_fails_a_green_run_and_leaves_a_red_one_to_its_step(tmp_path: Path) -> None:
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        unchecked = execute_job(reconstructable(green_but_unchecked), instance=instance)
        red = execute_job(reconstructable(red_on_its_step), instance=instance)
        (unchecked_failure,) = instance.all_logs(unchecked.run_id, of_type=DagsterEventType.RUN_FAILURE)
        (red_failure,) = instance.all_logs(red.run_id, of_type=DagsterEventType.RUN_FAILURE)
        red_messages = [entry.user_message for entry in instance.all_logs(red.run_id)]
    assert "the ledger is unreachable" in unchecked_failure.get_dagster_event().job_failure_data.error.message
    assert red_failure.get_dagster_event().job_failure_data.failure_reason == RunFailureReason.STEP_FAILURE
    assert "the closing check could not run: the ledger is unreachable" in red_messages
