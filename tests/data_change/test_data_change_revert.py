"""``revert_automation_run_job`` executed by Dagster on SecantusDB: a dry run by default, documents restored equal,
conflicts named and left alone, the run group (retries, re-executions, a killed run) undone together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from bson import json_util
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    ExecuteInProcessResult,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)
from dagster._serdes import serialize_value
from pymongo.database import Database

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS, revert_automation_run_job
from intervalprocessing_dagster.data_change.journal import JOURNAL_COLLECTION, WRITING
from intervalprocessing_dagster.data_change.revert import MIN_RUN_ID_PREFIX
from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.runs.run_summary import SUMMARY_METADATA_KEY
from intervalprocessing_dagster.runs.tags import LAUNCHED_BY_TAG
from intervalprocessing_dagster.settings import Settings
from tests.data_change.test_data_change_cadence_run import (
    hourly_data_change_job,
    note_automation,
)
from tests.data_change.test_data_change_jobs import automation

CLOSE = [{"elementName": "status", "updateType": "Change", "elementValue": "Closed"}]


def snapshot(db: Database, *collections: str) -> dict[str, dict[Any, dict[str, Any]]]:
    return {name: {doc["_id"]: doc for doc in db[name].find()} for name in collections}


def apply(cadence: Cadence, mongo: MongoResource, instance: DagsterInstance) -> str:
    result = DATA_CHANGE_JOBS[cadence].execute_in_process(
        resources={"mongo": mongo, "clock": RunClock(), "guard": AutomationGuard()},
        instance=instance,
        raise_on_error=False,
    )
    return result.run_id


def revert(mongo: MongoResource, instance: DagsterInstance, run_id: str, **config: Any) -> ExecuteInProcessResult:
    return revert_automation_run_job.execute_in_process(
        resources={"mongo": mongo, "clock": RunClock()},
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"revert_automation_run": {"config": {"run_id": run_id, **config}}}},
    )


def output(result: ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    return {key: value.value for key, value in event.event_specific_data.metadata.items()}


def failure(result: ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return event.step_failure_data.user_failure_data.description


def logs(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


@pytest.fixture()
def two_automations(mongo_db: Database) -> Database:
    mongo_db.audits.insert_many([{"_id": n, "status": "Open", "notes": [{"text": "seed"}]} for n in range(4)])
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("Close Open Audits", singleFieldUpdateElements=CLOSE, arrayObjectFieldUpdateElements=[]),
            automation("Note Closed Audits", query="{ status: 'Closed' }"),  # runs after it, on what it changed
        ]
    )
    return mongo_db


def test_a_revert_is_a_dry_run_by_default_with_counts_and_a_sample(
    mongo: MongoResource, two_automations: Database
) -> None:
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        changed = snapshot(two_automations, "audits", JOURNAL_COLLECTION)
        result = revert(mongo, instance, run_id)
    assert result.success
    metadata = output(result)
    assert {
        key: metadata[key] for key in ("dry_run", "journaled", "would restore", "already as before", "conflicts")
    } == {"dry_run": True, "journaled": 8, "would restore": 8, "already as before": 0, "conflicts": 0}
    assert "| Close Open Audits | 4 | 4 | 0 | 0 |" in metadata["by_automation"]
    (first, *_) = metadata["sample: Close Open Audits"]
    assert first["now and after"] == [{"kind": "set", "path": "status", "before": "Closed", "after": "Open"}]
    assert snapshot(two_automations, "audits", JOURNAL_COLLECTION) == changed  # nothing written, journal included


def test_a_revert_restores_equal_documents_and_names_each_conflict_in_its_logs(
    mongo: MongoResource, two_automations: Database
) -> None:
    before = snapshot(two_automations, "audits")
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        two_automations.audits.update_one({"_id": 2}, {"$set": {"status": "Escalated"}})  # a person, since
        result = revert(mongo, instance, run_id, dry_run=False)
        messages = logs(instance, result.run_id)
    metadata = output(result)
    assert (metadata["restored"], metadata["conflicts"]) == (7, 1)
    assert any(
        "conflicts, left as they are (Close Open Audits, audits): _id 2: status is now 'Escalated', the "
        "automation wrote 'Closed'" in message
        for message in messages
    )
    assert any(
        message.startswith(f"Revert of run group {run_id}: 8 journaled document(s), restored 7") for message in messages
    )
    after = snapshot(two_automations, "audits")["audits"]
    assert after[2] == {"_id": 2, "status": "Escalated", "notes": [{"text": "seed"}]}  # its note was undone, too
    assert {i: after[i] for i in (0, 1, 3)} == {i: before["audits"][i] for i in (0, 1, 3)}


def test_a_revert_can_be_narrowed_to_automations_and_names_the_ones_it_does_not_know(
    mongo: MongoResource, two_automations: Database
) -> None:
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        unknown = revert(mongo, instance, run_id, automations=["Note Closed Audits", "Typo"], dry_run=False)
        notes_only = revert(mongo, instance, run_id, automations=["Note Closed Audits"], dry_run=False)
    assert failure(unknown) == (
        f"run {run_id} journaled no change for 'Typo'; it journaled changes for: "
        "'Close Open Audits', 'Note Closed Audits'"
    )
    assert output(notes_only)["restored"] == 4
    audits = list(two_automations.audits.find())
    assert {a["status"] for a in audits} == {"Closed"} and all(a["notes"] == [{"text": "seed"}] for a in audits)


def test_the_readmes_launchpad_config_reverts_a_run(mongo: MongoResource, mongo_db: Database) -> None:
    """docs/runbook.md "Undo an automation run": the run config an on-call engineer pastes into the Launchpad, as
    written."""
    readme = (Path(__file__).parents[2] / "docs" / "runbook.md").read_text()
    section = readme.split("## Undo an automation run", 1)[1]
    example = yaml.safe_load(textwrap.dedent(section.split("```yaml", 1)[1].split("```", 1)[0]))
    seed_demo_data(mongo_db)
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        example["ops"]["revert_automation_run"]["config"]["run_id"] = run_id
        result = revert_automation_run_job.execute_in_process(
            resources={"mongo": mongo, "clock": RunClock()}, instance=instance, run_config=example
        )
    metadata = output(result)
    assert metadata["dry_run"] is True and metadata["would restore"] == 2  # the two escalated audits


def test_an_unknown_run_or_one_still_running_is_not_reverted(mongo: MongoResource, mongo_db: Database) -> None:
    with DagsterInstance.ephemeral() as instance:
        unknown = revert(mongo, instance, "no-such-run")
        running = instance.create_run_for_job(DATA_CHANGE_JOBS[Cadence.HOURLY], status=DagsterRunStatus.STARTED)
        still_going = revert(mongo, instance, running.run_id)
    assert failure(unknown).startswith("no run no-such-run in this Dagster instance and no journaled change")
    assert failure(still_going) == (
        f"not reverted: run {running.run_id} is STARTED; revert once every run of the group has finished"
    )


def test_every_demo_cadence_reverted_gives_back_the_demo_data(mongo: MongoResource, mongo_db: Database) -> None:
    """Every update type of the demo automations, find and aggregate, single fields and array elements."""
    seed_demo_data(mongo_db)
    before = snapshot(mongo_db, "audits", "medicalrecordrequests")
    with DagsterInstance.ephemeral() as instance:
        runs = [apply(cadence, mongo, instance) for cadence in Cadence]
        assert snapshot(mongo_db, "audits", "medicalrecordrequests") != before
        for run_id in reversed(runs):
            metadata = output(revert(mongo, instance, run_id, dry_run=False))
            assert metadata["conflicts"] == 0 and metadata["restored"] == metadata["journaled"] > 0
    assert snapshot(mongo_db, "audits", "medicalrecordrequests") == before


def test_the_first_eight_characters_the_ui_shows_are_enough(mongo: MongoResource, two_automations: Database) -> None:
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        result = revert(mongo, instance, run_id[:MIN_RUN_ID_PREFIX].upper() + " ", dry_run=False)
        messages = logs(instance, result.run_id)
    assert MIN_RUN_ID_PREFIX == 8
    assert output(result)["reverted_run_group"] == run_id and output(result)["restored"] == 8
    assert f"run id '{run_id[:8].upper()} ' is run {run_id}" in messages
    assert {a["status"] for a in two_automations.audits.find()} == {"Open"}


def test_a_prefix_of_a_run_only_the_journal_still_knows_reverts_it(
    mongo: MongoResource, two_automations: Database
) -> None:
    """A run whose Dagster history was deleted (or that ran on another instance) is found by its journal."""
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
    with DagsterInstance.ephemeral() as elsewhere:
        result = revert(mongo, elsewhere, run_id[:10])
    assert output(result)["reverted_run_group"] == run_id and output(result)["would restore"] == 8


def test_an_ambiguous_or_too_short_run_id_is_refused_saying_which_runs_or_how_long(
    mongo: MongoResource, mongo_db: Database
) -> None:
    job = DATA_CHANGE_JOBS[Cadence.HOURLY]
    twins = ["5b0d3c2e-0d8f-4c3b-9a51-1f0c2a7d6e01", "5b0d3c2e-77aa-4f1e-8c2b-0e9d3b6a5f02"]
    with DagsterInstance.ephemeral() as instance:
        for run_id in twins:
            instance.create_run_for_job(job, run_id=run_id, status=DagsterRunStatus.SUCCESS)
        ambiguous = revert(mongo, instance, "5b0d3c2e")
        too_short = revert(mongo, instance, "5b0d3c2")
        longer = revert(mongo, instance, "5b0d3c2e-77")
    message = failure(ambiguous)
    assert message.startswith("run id '5b0d3c2e' is ambiguous: it starts 2 runs' ids: "), message
    assert all(f"{run_id} (hourly_data_change_job, " in message for run_id in twins), message
    assert message.endswith("Give more of the id (the run page's address ends with the whole id)")
    assert failure(too_short) == (
        "run id '5b0d3c2' is too short: give at least its first 8 characters (as the UI's "
        "run pages and lists show them) or the whole id"
    )
    assert output(longer)["reverted_run_group"] == twins[1]


def test_a_run_that_modified_documents_links_to_its_undo_in_the_launchpad(
    instance: DagsterInstance, cadence_db: Database
) -> None:
    """The link opens the revert job's launchpad (Dagster's /playground/setup route) with a dry run of this run filled
    in; that config, launched as it stands, is a dry run of exactly this run's changes. A run that modified nothing
    has nothing to undo and no link."""
    cadence_db.audits.insert_many([{"group": 0, "notes": []}, {"group": 0, "notes": []}])
    cadence_db.dataupdateconfigs.insert_one(note_automation(0))
    job = reconstructable(hourly_data_change_job)
    run_id = execute_job(job, instance=instance).run_id

    def undo_events(of_run: str) -> list[Any]:
        events = [e.get_dagster_event() for e in instance.all_logs(of_run, of_type=DagsterEventType.ENGINE_EVENT)]
        return [event for event in events if "undo_this_run" in event.engine_event_data.metadata]

    (undo,) = undo_events(run_id)
    address = urlsplit(undo.engine_event_data.metadata["undo_this_run"].value)
    assert address.path == "/locations/intervalprocessing/jobs/revert_automation_run_job/playground/setup"
    (config_yaml,) = parse_qs(address.query)["config"]
    dry = revert_job_of_the_code_location().execute_in_process(
        instance=instance, run_config=yaml.safe_load(config_yaml)
    )
    assert (output(dry)["dry_run"], output(dry)["reverted_run_group"], output(dry)["would restore"]) == (
        True,
        run_id,
        2,
    )
    assert undo.message == f"Undo this run: revert_automation_run_job, run id {run_id} filled in"
    messages = logs(instance, run_id)
    assert messages.index(undo.message) + 1 == messages.index(next(m for m in messages if m.startswith("Run summary")))

    cadence_db.audits.delete_many({})
    nothing = execute_job(job, instance=instance).run_id  # it matches no document now
    assert undo_events(nothing) == []


def revert_job_of_the_code_location() -> Any:
    return build_definitions(Settings.from_env()).get_job_def("revert_automation_run_job")


def test_a_run_killed_mid_write_and_re_executed_journals_each_change_once_and_reverts_as_one(
    instance: DagsterInstance, cadence_db: Database, tmp_path: Path
) -> None:
    """The run worker is killed (SIGKILL-like: ``os._exit``) after its first batch was written and before its journal
    page was confirmed; run monitoring fails the run; a re-execution from failure settles the page in doubt, applies
    the rest, and journals nothing twice. Reverting the original run undoes both runs."""
    cadence_db.audits.insert_many([{"group": 0, "n": n, "notes": []} for n in range(5)])
    cadence_db.dataupdateconfigs.insert_one(note_automation(0))
    before = snapshot(cadence_db, "audits")
    ref = tmp_path / "instance-ref"
    ref.write_text(serialize_value(instance.get_ref()))
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import os
        from dagster import DagsterInstance, execute_job, reconstructable
        from dagster._serdes import deserialize_value
        from intervalprocessing_dagster.data_change import journal
        from tests.data_change.test_data_change_cadence_run import hourly_data_change_job

        write = journal._write
        def write_then_die(*args, **kwargs):
            write(*args, **kwargs)
            os._exit(137)  # the data is written, the page still says "writing"
        journal._write = write_then_die
        instance = DagsterInstance.from_ref(deserialize_value(open({str(ref)!r}).read()))
        execute_job(reconstructable(hourly_data_change_job), instance=instance,
                    run_config={{"ops": {{"apply_automation": {{"config": {{"batch_size": 2}}}}}}}})
    """),
        ],
        cwd=Path(__file__).parents[2],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    (run,) = instance.get_runs()
    assert cadence_db[JOURNAL_COLLECTION].find_one()["state"] == WRITING
    assert cadence_db.audits.count_documents({"notes.0": {"$exists": True}}) == 2
    instance.report_run_failed(run)  # what run monitoring does with a run whose worker died

    retry = execute_job(
        reconstructable(hourly_data_change_job),
        instance=instance,
        reexecution_options=ReexecutionOptions.from_failure(run.run_id, instance),
    )

    assert retry.success
    assert cadence_db.audits.count_documents({"notes": {"$size": 1}}) == 5
    pages = list(cadence_db[JOURNAL_COLLECTION].find().sort("_id", 1))
    assert {page["state"] for page in pages} == {"written"} and {page["rootRunId"] for page in pages} == {run.run_id}
    journaled = [entry["_id"] for page in pages for entry in page["documents"]]
    assert sorted(journaled) == sorted(before["audits"]) and len(journaled) == 5  # each change once

    reverted = revert_job_of_the_code_location().execute_in_process(
        instance=instance,
        run_config={"ops": {"revert_automation_run": {"config": {"run_id": run.run_id, "dry_run": False}}}},
    )
    assert output(reverted)["restored"] == 5
    assert snapshot(cadence_db, "audits") == before


def test_the_revert_of_any_run_of_a_group_undoes_the_whole_group(
    instance: DagsterInstance, cadence_db: Database
) -> None:
    """A failed automation re-executed from failure after an operator fixed the data: reverting the first run, or
    the re-execution, undoes the changes of both."""
    cadence_db.audits.insert_many([{"group": 0, "notes": []}, {"group": 1, "notes": "not an array"}])
    cadence_db.dataupdateconfigs.insert_many([note_automation(0), note_automation(1)])
    job = reconstructable(hourly_data_change_job)
    first = execute_job(job, instance=instance)
    cadence_db.audits.update_one({"group": 1}, {"$set": {"notes": []}})  # the operator's fix stays
    fixed = {"audits": {doc["_id"]: {**doc, "notes": []} for doc in cadence_db.audits.find()}}
    retry = execute_job(
        job, instance=instance, reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance)
    )
    assert not first.success and retry.success

    dry = revert_job_of_the_code_location().execute_in_process(
        instance=instance, run_config={"ops": {"revert_automation_run": {"config": {"run_id": retry.run_id}}}}
    )
    assert (output(dry)["reverted_run_group"], output(dry)["would restore"]) == (first.run_id, 2)
    # As the launcher runs it (execute_job, the job's own executor): the run closes with the revert's summary line.
    reverted = execute_job(
        reconstructable(revert_job_of_the_code_location),
        instance=instance,
        run_config={"ops": {"revert_automation_run": {"config": {"run_id": first.run_id, "dry_run": False}}}},
    )
    assert snapshot(cadence_db, "audits") == fixed
    assert [line for line in logs(instance, reverted.run_id) if line.startswith("Run summary: ")] == [
        f"Run summary: Revert of run group {first.run_id}: 2 journaled document(s), restored 2, 0 already as before, "
        "0 conflict(s)"
    ]
    assert isinstance(cadence_db[JOURNAL_COLLECTION].find_one()["stamp"], datetime)


def test_a_revert_that_cannot_start_says_so_in_its_run_summary(instance: DagsterInstance, cadence_db: Database) -> None:
    """Its own work, not the report runs' words ("reports written: none")."""
    refused = execute_job(
        reconstructable(revert_job_of_the_code_location),
        instance=instance,
        run_config={"ops": {"revert_automation_run": {"config": {"run_id": "5b0d3c2"}}}},
    )
    assert not refused.success
    assert [line for line in logs(instance, refused.run_id) if line.startswith("Run summary: ")] == [
        "Run summary: revert not done: run id '5b0d3c2' is too short: give at least its first 8 characters (as the "
        "UI's run pages and lists show them) or the whole id; failed steps: revert_automation_run"
    ]


def stored(db: Database, collection: str) -> list[str]:
    """The documents as stored, field order included (a dict compares without it; MongoDB's equality does not)."""
    return [json_util.dumps(doc) for doc in db[collection].find().sort("_id", 1)]


def test_a_chain_of_automations_on_one_sub_document_is_undone_field_order_included(
    mongo: MongoResource, mongo_db: Database
) -> None:
    """Issue 24: in one cadence, automation 1 Adds ``meta.flag`` and ``meta.by`` to documents without ``meta``,
    automation 2 Deletes ``meta.flag``, automation 3 Adds it again. Undoing the run gives back every document exactly
    as it was (it used to leave each created ``meta`` as a conflict: its fields were in another order than recorded)."""
    mongo_db.audits.insert_many(
        [
            {"_id": n, "status": "Open", **({"meta": {"flag": False, "by": "seed", "n": n}} if n % 3 == 0 else {})}
            for n in range(30)
        ]
    )
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation(
                "1 Flag",
                query="{ meta: { $exists: false } }",
                arrayObjectFieldUpdateElements=[],
                singleFieldUpdateElements=[
                    {"elementName": "meta.flag", "updateType": "Add", "elementValue": True},
                    {"elementName": "meta.by", "updateType": "Add", "elementValue": "auto"},
                ],
            ),
            automation(
                "2 Unflag",
                query="{ 'meta.by': { $in: ['auto', 'seed'] } }",
                arrayObjectFieldUpdateElements=[],
                singleFieldUpdateElements=[{"elementName": "meta.flag", "updateType": "Delete"}],
            ),
            automation(
                "3 Reflag",
                query="{ 'meta.by': 'auto' }",
                arrayObjectFieldUpdateElements=[],
                singleFieldUpdateElements=[{"elementName": "meta.flag", "updateType": "Add", "elementValue": True}],
            ),
        ]
    )
    before = stored(mongo_db, "audits")
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        assert mongo_db.audits.find_one({"_id": 1})["meta"] == {"by": "auto", "flag": True}
        assert "flag" not in mongo_db.audits.find_one({"_id": 3})["meta"]  # deleted from the middle of meta
        result = revert(mongo, instance, run_id, dry_run=False)
    metadata = output(result)
    assert (metadata["journaled"], metadata["restored"], metadata["conflicts"]) == (70, 70, 0)
    assert stored(mongo_db, "audits") == before


def test_undoing_a_delete_puts_the_field_back_where_it_was(mongo: MongoResource, mongo_db: Database) -> None:
    """A field deleted from the middle of a sub-document, or of the document, goes back to its place, not to the
    end (setting it again would append it)."""
    mongo_db.audits.insert_many(
        [{"_id": n, "status": "Open", "meta": {"a": 1, "b": n, "c": [3]}, "owner": "x", "due": n} for n in range(5)]
    )
    mongo_db.dataupdateconfigs.insert_one(
        automation(
            "Forget",
            arrayObjectFieldUpdateElements=[],
            singleFieldUpdateElements=[
                {"elementName": "meta.b", "updateType": "Delete"},
                {"elementName": "owner", "updateType": "Delete"},
            ],
        )
    )
    before = stored(mongo_db, "audits")
    with DagsterInstance.ephemeral() as instance:
        run_id = apply(Cadence.HOURLY, mongo, instance)
        assert mongo_db.audits.find_one({"_id": 0}) == {
            "_id": 0,
            "status": "Open",
            "meta": {"a": 1, "c": [3]},
            "due": 0,
        }
        result = revert(mongo, instance, run_id, dry_run=False)
    assert (output(result)["restored"], output(result)["conflicts"]) == (5, 0)
    assert stored(mongo_db, "audits") == before


def test_journal_pages_and_a_revert_name_who_launched_them(mongo: MongoResource, two_automations: Database) -> None:
    """A run launched from the UI carries its person (``intervalprocessing/launched_by``, set by the operators'
    webserver); the change journal's pages and the revert's own pages and summary say who it was."""
    with DagsterInstance.ephemeral() as instance:
        applied = DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
            resources={"mongo": mongo, "clock": RunClock(), "guard": AutomationGuard()},
            instance=instance,
            tags={LAUNCHED_BY_TAG: "ana@example.com"},
        )
        reverted = revert_automation_run_job.execute_in_process(
            resources={"mongo": mongo, "clock": RunClock()},
            instance=instance,
            tags={LAUNCHED_BY_TAG: "bo@example.com"},
            run_config={"ops": {"revert_automation_run": {"config": {"run_id": applied.run_id, "dry_run": False}}}},
        )
    pages = list(two_automations[JOURNAL_COLLECTION].find({}, {"documents": 0}))
    assert {page["launchedBy"] for page in pages if page["rootRunId"] == applied.run_id} == {"ana@example.com"}
    assert {page["launchedBy"] for page in pages if page.get("revertOf") == applied.run_id} == {"bo@example.com"}
    assert output(reverted)[SUMMARY_METADATA_KEY].startswith(
        f"Revert of run group {applied.run_id}, launched by bo@example.com: "
    )
