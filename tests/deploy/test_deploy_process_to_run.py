"""The ``processToRun`` entry point the old ECS task definitions call (``intervalprocessing`` console script)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pymongo
import pytest
from dagster import DagsterInstance, DagsterRunStatus

from intervalprocessing_dagster import process_to_run
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG

VALID = [
    ("FileGenerationProcesses", "file_generation_job"),
    ("NightlyDataChangeProcesses", "nightly_data_change_job"),
    ("HourlyDataChangeProcesses", "hourly_data_change_job"),
    ("HalfHourlyDataChangeProcesses", "half_hourly_data_change_job"),
    ("QuarterHourlyDataChangeProcesses", "quarter_hourly_data_change_job"),
]


@pytest.fixture()
def old_task_environment(
    secantus_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    """An old task definition pointed at the new image: a MongoDB URI, a seeded database, a Dagster home."""
    database = f"compat_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(secantus_uri, tz_aware=True)
    seed_demo_data(client[database])
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MONGODB_URI", secantus_uri)
    monkeypatch.setenv("MONGODB_DATABASE", database)
    monkeypatch.setenv("REPORTS_LOCAL_DIR", str(tmp_path / "reports"))
    yield home, database
    client.drop_database(database)
    client.close()


def test_the_mapping_is_the_old_switch_in_order() -> None:
    assert list(process_to_run.JOB_BY_PROCESS.items()) == VALID


@pytest.mark.parametrize(("process", "job_name"), VALID)
def test_each_process_runs_its_job_against_the_configured_instance(
    process: str,
    job_name: str,
    old_task_environment: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, _ = old_task_environment
    monkeypatch.setenv("processToRun", process)

    assert process_to_run.main() == 0

    out = capsys.readouterr().out
    for line in (
        f"processToRun: {process}",
        "Initiating IntervalProcessing Processes...",
        f"{process} process complete",
        "IntervalProcessing Complete...",
    ):
        assert line in out
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.job_name == job_name
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags[process_to_run.PROCESS_TO_RUN_TAG] == process


def test_file_generation_writes_its_reports(
    old_task_environment: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("processToRun", "FileGenerationProcesses")
    assert process_to_run.main() == 0
    written = {path.name.split("_")[0] for path in (tmp_path / "reports").glob("*.txt")}
    assert {"DailyAuditInventory", "DailyActiveMRRInventory"} <= written  # the weekly ones only on a Friday


@pytest.mark.parametrize("value", [None, "", "FileGeneration", "15MinuteDataChangeProcesses"])
def test_an_unknown_or_missing_value_is_one_line_and_exit_code_2(
    value: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if value is None:
        monkeypatch.delenv("processToRun", raising=False)
    else:
        monkeypatch.setenv("processToRun", value)

    assert process_to_run.main() == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("not set" if not value else repr(value)) in err
    assert (
        "valid values: FileGenerationProcesses, NightlyDataChangeProcesses, HourlyDataChangeProcesses, "
        "HalfHourlyDataChangeProcesses, QuarterHourlyDataChangeProcesses" in err
    )


def test_an_instance_missing_its_variables_is_named_not_traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The production dagster.yaml in an old task definition that lacks the DAGSTER_PG_* variables."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).parents[2] / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("processToRun", "HourlyDataChangeProcesses")
    for name in list(os.environ):
        if name.startswith("DAGSTER_PG_"):
            monkeypatch.delenv(name)

    assert process_to_run.main() == 2

    err = capsys.readouterr().err
    assert err == (
        "error: the instance configuration in $DAGSTER_HOME needs these unset variables: DAGSTER_PG_DB, "
        "DAGSTER_PG_HOST, DAGSTER_PG_PASSWORD, DAGSTER_PG_PORT, DAGSTER_PG_USERNAME\n"
    )


def test_a_failed_run_is_exit_code_1(
    old_task_environment: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reports to a bucket that does not exist: the run fails, the process says so and exits 1."""
    monkeypatch.setenv("processToRun", "FileGenerationProcesses")
    monkeypatch.setenv("REPORTS_S3_BUCKET", "no-such-bucket")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: every S3 call fails at once

    assert process_to_run.main() == 1

    assert "FileGenerationProcesses process failed: Dagster run" in capsys.readouterr().out


def test_the_console_script_exits_with_mains_code(tmp_path: Path) -> None:
    """pyproject's ``intervalprocessing`` script is what the old task definitions' image runs."""
    script = Path(sys.executable).parent / "intervalprocessing"
    env = {"PATH": os.environ["PATH"], "processToRun": "Nope", "DAGSTER_HOME": str(tmp_path)}
    completed = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: processToRun is 'Nope'; valid values: FileGenerationProcesses")


def test_a_bad_setting_is_one_line_from_the_console_script(tmp_path: Path) -> None:
    """The console script imports no code location before the settings are checked, so a bad value is the one line
    ``main`` promises, not a traceback from building the definitions at import."""
    script = Path(sys.executable).parent / "intervalprocessing"
    env = {
        "PATH": os.environ["PATH"],
        "processToRun": "HourlyDataChangeProcesses",
        "DAGSTER_HOME": str(tmp_path),
        "INTERVALPROCESSING_TIMEZONE": "Mars/Base",
    }
    completed = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr == (
        "error: INTERVALPROCESSING_TIMEZONE='Mars/Base' is not an IANA time zone name (e.g. 'America/New_York')\n"
    )


def test_a_process_whose_job_is_still_running_is_skipped(
    old_task_environment: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, database = old_task_environment
    with DagsterInstance.from_config(str(home)) as instance:
        slow = instance.create_run_for_job(
            process_to_run.load_job("hourly_data_change_job"), status=DagsterRunStatus.STARTED
        )
    monkeypatch.setenv("processToRun", "HourlyDataChangeProcesses")

    assert process_to_run.main() == 0

    assert f"HourlyDataChangeProcesses process skipped: Dagster run {slow.run_id}" in capsys.readouterr().out
    with DagsterInstance.from_config(str(home)) as instance:
        assert [run.run_id for run in instance.get_runs()] == [slow.run_id]
    client = pymongo.MongoClient(os.environ["MONGODB_URI"])
    assert client[database].automationruns.count_documents({}) == 0
    # Another cadence is not held back by it.
    monkeypatch.setenv("processToRun", "QuarterHourlyDataChangeProcesses")
    assert process_to_run.main() == 0
    assert "QuarterHourlyDataChangeProcesses process complete" in capsys.readouterr().out


def test_a_retried_data_change_task_stands_for_the_same_tick_and_pushes_nothing_twice(
    old_task_environment: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EventBridge retries a failed task within the interval: the retry is the same tick, so its notes are the same."""
    home, database = old_task_environment
    monkeypatch.setenv("processToRun", "HourlyDataChangeProcesses")
    monkeypatch.setenv("INTERVALPROCESSING_TIMEZONE", "America/New_York")
    for minute in (0, 7):  # the first delivery at 14:00:05, its retry at 14:07:05
        monkeypatch.setattr(
            process_to_run, "now", lambda minute=minute: datetime(2026, 3, 6, 14, minute, 5, tzinfo=UTC)
        )
        assert process_to_run.main() == 0

    with DagsterInstance.from_config(str(home)) as instance:
        stamps = {run.tags[RUN_STAMP_TAG] for run in instance.get_runs()}
    assert stamps == {"2026-03-06T09:00:00-05:00"}
    audits = pymongo.MongoClient(os.environ["MONGODB_URI"])[database].audits
    escalated = audits.find_one({"priority": "High"})
    assert [note["text"] for note in escalated["notes"]].count("Escalated: high-value audit pending review") == 1
