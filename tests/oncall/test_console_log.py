"""A failed run's console output, as a new user gets it from ``dagster job execute``: each error printed once."""

from __future__ import annotations

from pathlib import Path

from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from tests.local_project import execute_job, new_project, user_env

PROBLEM = "- singleFieldUpdateElements/arrayObjectFieldUpdateElements: both are empty: nothing to update"


def test_a_failed_automation_prints_its_error_and_stack_trace_once(
    mongo_uri: str, mongo_db: Database, tmp_path: Path
) -> None:
    """One broken automation on the demo data: its step's failure shows the error and one stack trace; the run's
    failure line names the step and does not repeat them (Dagster's default console output does)."""
    seed_demo_data(mongo_db)
    mongo_db.dataupdateconfigs.insert_one({
        "name": "Broken one", "runCadence": "Hourly", "collectionName": "audits", "query": "{ status: 'Open' }",
        "isActive": True, "singleFieldUpdateElements": [], "arrayObjectFieldUpdateElements": [],
    })

    # Dagster mirrors a run's captured output to the console through `tail -F`, stopped when the capture ends: under
    # heavy load it can drop the last lines (dagster-io/dagster#23336). Its own knob waits out that race here, so
    # the count below is about what is printed, not about the mirror.
    env = {**user_env(mongo_uri, mongo_db.name), "DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH": "1"}
    output = execute_job(new_project(tmp_path / "project"), env, "hourly_data_change_job")

    assert "Error: Run " in output and "resulted in failure" in output, output[-3000:]
    assert output.count("automation 'Broken one' in dataupdateconfigs is invalid (1 problem):") == 1, output
    assert output.count(PROBLEM) == 1, output
    assert output.count("Stack Trace:") == 1, output
    (run_failure,) = [line for line in output.splitlines() if " - RUN_FAILURE - " in line]
    assert run_failure.endswith("failed. Steps failed: ['apply_automation[broken_one]'].")
    # The error is printed with the step that failed, before the run's end.
    assert output.index(" - STEP_FAILURE - ") < output.index(PROBLEM) < output.index(" - RUN_FAILURE - ")
