"""Whole cadence runs as the code location defines them, with the job's own executor on a real (SQLite) instance:
``execute_job``, not ``execute_in_process`` (which always runs in one process, whatever the job says).

The cadence jobs run their automation steps in the run worker's process (``jobs.py``); these tests hold that choice
to what users see: every automation its own step, applied exactly once and recorded, and step outputs stored
through the IO manager so a re-execution from failure still finds its inputs.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    JobDefinition,
    JobExecutionResult,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)
from pymongo.database import Database

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION
from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.oncall.resources import LogAlertChannel
from intervalprocessing_dagster.runs.clock import run_stamp_tags
from intervalprocessing_dagster.settings import Settings
from tests.oncall.test_alerting import Daemon

AUTOMATIONS = 100


def hourly_data_change_job() -> JobDefinition:
    """The job as the code location builds it from the environment; at module level, so it is reconstructable."""
    return build_definitions(Settings.from_env()).get_job_def(Cadence.HOURLY.job_name)


def note_automation(number: int) -> dict:
    """Automation ``number``: push one note naming it onto its own group's audits (so a second push would show)."""
    name = f"Cadence Automation {number:03d}"
    return {
        "name": name,
        "query": f"{{ group: {number} }}",
        "collectionName": "audits",
        "isActive": True,
        "runCadence": "Hourly",
        "singleFieldUpdateElements": [],
        "arrayObjectFieldUpdateElements": [
            {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": name}
        ],
    }


def log_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def step_events(result: JobExecutionResult, event_type: DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == event_type and e.step_key.startswith("apply_automation[")]


def test_a_hundred_automations_run_once_each_as_their_own_steps_in_one_process(
    instance: DagsterInstance, cadence_db: Database
) -> None:
    cadence_db.audits.insert_many([{"group": g, "seq": s, "notes": []} for g in range(AUTOMATIONS) for s in range(2)])
    cadence_db.dataupdateconfigs.insert_many([note_automation(g) for g in range(AUTOMATIONS)])

    result = execute_job(reconstructable(hourly_data_change_job), instance=instance)

    assert result.success
    for audit in cadence_db.audits.find():
        assert [note["text"] for note in audit["notes"]] == [f"Cadence Automation {audit['group']:03d}"]
    records = list(cadence_db[LEDGER_COLLECTION].find({"runId": result.run_id}))
    assert len(records) == AUTOMATIONS
    assert {(r["status"], r["attempts"], r["matched"], r["modified"]) for r in records} == {("succeeded", 1, 2, 2)}
    outputs = step_events(result, DagsterEventType.STEP_OUTPUT)
    assert len({e.step_key for e in outputs}) == AUTOMATIONS
    for event in outputs:
        metadata = event.event_specific_data.metadata
        assert (metadata["matched"].value, metadata["modified"].value) == (2, 2)
    assert len(step_events(result, DagsterEventType.STEP_SUCCESS)) == AUTOMATIONS
    # In the run's own process, one after another in the loader's (name) order: the old app's order.
    starts = step_events(result, DagsterEventType.STEP_START)
    assert len({event.pid for event in starts}) == 1
    assert [e.step_key for e in starts] == [f"apply_automation[cadence_automation_{g:03d}]" for g in range(AUTOMATIONS)]
    # Every task the loader yielded is stored (a re-execution needs it), and taken back from memory, not the store.
    messages = log_messages(instance, result.run_id)
    assert sum(message.startswith("Writing file at") for message in messages) == AUTOMATIONS
    assert not [message for message in messages if message.startswith("Loading file from")]
    assert len(step_events(result, DagsterEventType.LOADED_INPUT)) == AUTOMATIONS


def test_a_re_execution_from_failure_reruns_only_the_failed_automation_from_its_stored_input(
    instance: DagsterInstance, cadence_db: Database
) -> None:
    """The steps' outputs go through the IO manager in process too, so the re-executed step loads its task."""
    cadence_db.audits.insert_many([{"group": 0, "notes": []}, {"group": 1, "notes": "not an array"}])
    cadence_db.dataupdateconfigs.insert_many([note_automation(0), note_automation(1)])
    job = reconstructable(hourly_data_change_job)
    first = execute_job(job, instance=instance)
    assert not first.success
    assert [e.step_key for e in first.all_events if e.event_type == DagsterEventType.STEP_FAILURE] == [
        "apply_automation[cadence_automation_001]"
    ]

    cadence_db.audits.update_one({"group": 1}, {"$set": {"notes": []}})  # an operator fixes the data
    retry = execute_job(
        job, instance=instance, reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance)
    )

    assert retry.success
    assert {e.step_key for e in retry.all_events if e.event_type == DagsterEventType.STEP_SUCCESS} == {
        "apply_automation[cadence_automation_001]"
    }
    loaded = [message for message in log_messages(instance, retry.run_id) if message.startswith("Loading file from")]
    assert len(loaded) == 1 and first.run_id in loaded[0]  # the first run's stored task, not this process's memory
    assert [len(a["notes"]) for a in cadence_db.audits.find().sort("group", 1)] == [1, 1]


def summary_line(instance: DagsterInstance, run_id: str) -> str:
    (line,) = [m for m in log_messages(instance, run_id) if m.startswith("Run summary: ")]
    return line.removeprefix("Run summary: ")


def test_the_summary_names_failed_automations_by_name_and_id_where_names_collide(
    instance: DagsterInstance, cadence_db: Database
) -> None:
    broken = {**note_automation(0), "query": "{ group: "}
    twin_ids = cadence_db.dataupdateconfigs.insert_many([{**broken, "name": "Twin"}, {**broken, "name": "Twin"}])
    cadence_db.dataupdateconfigs.insert_one({**broken, "name": "Alone"})
    result = execute_job(reconstructable(hourly_data_change_job), instance=instance)
    assert not result.success
    first, second = (str(config_id) for config_id in twin_ids.inserted_ids)
    assert summary_line(instance, result.run_id) == (
        f"automations 0 applied, 0 matched, 0 modified, 3 failed ('Alone', 'Twin' (_id {first}), 'Twin' (_id {second}))"
    )


def test_a_second_run_of_a_stamp_says_what_was_already_applied(instance: DagsterInstance, cadence_db: Database) -> None:
    cadence_db.audits.insert_many([{"group": g, "notes": []} for g in range(3)])
    cadence_db.dataupdateconfigs.insert_many([note_automation(g) for g in range(3)])
    tags = run_stamp_tags(datetime(2026, 3, 6, 2, 0, tzinfo=UTC))
    job = reconstructable(hourly_data_change_job)
    first = execute_job(job, instance=instance, tags=tags)
    second = execute_job(job, instance=instance, tags=tags)
    assert first.success and second.success
    assert summary_line(instance, first.run_id) == "automations 3 applied, 3 matched, 3 modified, 0 failed"
    assert summary_line(instance, second.run_id) == (
        "automations 0 applied, 3 already applied, 0 matched, 0 modified, 0 failed"
    )
    assert [len(a["notes"]) for a in cadence_db.audits.find()] == [1, 1, 1]


def test_a_run_that_loaded_automations_it_did_not_run_fails_naming_them_and_so_does_its_alert(
    instance: DagsterInstance, cadence_db: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    """Never green while incomplete: here a re-execution of the loader alone (the UI's "Re-execute selected"),
    after an automation was added, loads it for the stamp and does not run it. The run-failure alert (logged: no
    topic, no run retries, as under dagster dev; ALERT_ON_HAND_LAUNCHED_RUNS=on, as the re-execution is a person's)
    quotes the failure, names and all."""
    cadence_db.audits.insert_many([{"group": g, "notes": []} for g in range(2)])
    cadence_db.dataupdateconfigs.insert_one(note_automation(0))
    job = reconstructable(hourly_data_change_job)
    first = execute_job(job, instance=instance)
    assert first.success
    cadence_db.dataupdateconfigs.insert_one(note_automation(1))
    daemon = Daemon(instance, LogAlertChannel(hand_launched_runs=True))  # a person's re-execution alerts only so
    daemon.tick()

    loader_only = execute_job(
        job,
        instance=instance,
        reexecution_options=ReexecutionOptions(parent_run_id=first.run_id, step_selection=["load_hourly_automations"]),
    )
    daemon.tick()

    assert not loader_only.success
    (failure,) = instance.all_logs(loader_only.run_id, of_type=DagsterEventType.RUN_FAILURE)
    assert "1 automation(s) loaded for this run's stamp did not run: 'Cadence Automation 001'." in (
        failure.get_dagster_event().job_failure_data.error.message
    )
    assert summary_line(instance, loader_only.run_id) == (
        "automations 0 applied, 0 matched, 0 modified, 0 failed, 1 not run ('Cadence Automation 001')"
    )
    logged = capfd.readouterr().err
    assert f"Run: {loader_only.run_id}" in logged
    assert "1 automation(s) loaded for this run's stamp did not run: 'Cadence Automation 001'." in logged
