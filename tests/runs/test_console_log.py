"""A failed run's console output, as a new user gets it from ``dagster job execute``: each error printed once."""

from __future__ import annotations

import re
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
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.runs.console_log import print_held_summaries
from intervalprocessing_dagster.runs.executor import with_run_summary
from tests.local_project import WAIT_FOR_CONSOLE_MIRROR, new_project, user_env
from tests.local_project import execute_job as execute_cli_job

PROBLEM = "- singleFieldUpdateElements/arrayObjectFieldUpdateElements: both are empty: nothing to update"


def test_a_failed_automation_prints_its_error_once_without_a_stack_trace(
    mongo_uri: str, mongo_db: Database, tmp_path: Path
) -> None:
    """One broken automation on the demo data: its step's failure shows the error, as its message alone (an invalid
    automation is expected: Dagster's 25 lines of frames say nothing about it); the run's failure line names the step
    and does not repeat it (Dagster's default console output does); the run summary is the last line."""
    seed_demo_data(mongo_db)
    mongo_db.dataupdateconfigs.insert_one(
        {
            "name": "Broken one",
            "runCadence": "Hourly",
            "collectionName": "audits",
            "query": "{ status: 'Open' }",
            "isActive": True,
            "singleFieldUpdateElements": [],
            "arrayObjectFieldUpdateElements": [],
        }
    )

    # The count below is about what is printed, not about Dagster's mirror of the captured output to the console.
    env = {**user_env(mongo_uri, mongo_db.name), **WAIT_FOR_CONSOLE_MIRROR}
    output = execute_cli_job(new_project(tmp_path / "project"), env, "hourly_data_change_job")

    assert "Error: Run " in output and "resulted in failure" in output, output[-3000:]
    assert output.count("automation 'Broken one' in dataupdateconfigs is invalid (1 problem):") == 1, output
    assert output.count(PROBLEM) == 1, output
    assert "Stack Trace:" not in output and "dagster._core" not in output, output
    (run_failure,) = [line for line in output.splitlines() if " - RUN_FAILURE - " in line]
    assert run_failure.endswith("failed. Steps failed: ['apply_automation[broken_one]'].")
    # The error is printed with the step that failed, right under its line, before the run's end.
    lines = output.splitlines()
    (step_failure,) = [i for i, line in enumerate(lines) if " - STEP_FAILURE - " in line]
    assert lines[step_failure].endswith('STEP_FAILURE - Execution of step "apply_automation[broken_one]" failed.')
    assert lines[step_failure + 1 : step_failure + 4] == [
        "",
        "automation 'Broken one' in dataupdateconfigs is invalid (1 problem):",
        PROBLEM,
    ]
    assert output.index(" - STEP_FAILURE - ") < output.index(PROBLEM) < output.index(" - RUN_FAILURE - ")
    # What a person reads at the bottom: the summary, after the CLI's own exit message.
    assert lines[-2].startswith("Error: Run ") and " - INFO - " in lines[-1], lines[-3:]
    assert lines[-1].endswith("Run summary: automations 2 applied, 3 matched, 3 modified, 1 failed ('Broken one')")


@op
def refuses() -> None:
    raise Failure(description="a finding, said in full:\n- on two lines", allow_retries=False)


@op
def wraps_a_bug() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise Failure(description="it went wrong") from exc


@op
def crashes() -> None:
    {}["missing"]


@job(executor_def=with_run_summary(in_process_executor))
def failing_three_ways() -> None:
    refuses()
    wraps_a_bug()
    crashes()


def failure_block(output: str, step: str) -> str:
    """The console text of ``step``'s STEP_FAILURE: its line and what follows it up to the next log line."""
    after = output.split(f" - {step} - STEP_FAILURE - ", 1)[1]
    return re.split(r"\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - ", after, maxsplit=1)[0]


def test_an_expected_failure_is_its_message_and_an_unexpected_one_keeps_its_stack_trace(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Failure raised on purpose is the message alone; a Failure wrapping another exception, and any other
    exception, keep Dagster's rendering with the stack trace. The event log keeps every error whole."""
    for name, value in WAIT_FOR_CONSOLE_MIRROR.items():  # the run's output reaches the console through that mirror
        monkeypatch.setenv(name, value)
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = execute_job(reconstructable(failing_three_ways), instance=instance)
        print_held_summaries()
        failures = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_FAILURE)
    output = capfd.readouterr().err
    assert failure_block(output, "refuses") == (
        'Execution of step "refuses" failed.\n\na finding, said in full:\n- on two lines'
    )
    wrapped, crashed = failure_block(output, "wraps_a_bug"), failure_block(output, "crashes")
    assert "Stack Trace:" in wrapped and "KeyError" in wrapped
    assert "Stack Trace:" in crashed and "KeyError: 'missing'" in crashed
    assert all(entry.get_dagster_event().step_failure_data.error.stack for entry in failures)
    last = output.rstrip().splitlines()[-1]
    assert re.search(r" - INFO - failing_three_ways - .* - Run summary: failed steps: \w+, \w+, \w+$", last), last
