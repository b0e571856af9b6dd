"""The asset checks, executed by Dagster on SecantusDB: config checks pass on the demo data and name every broken
automation, process and query; row-count checks warn on empty or shrunken reports; freshness checks go red when a
report is overdue; and applied automations observe the collection they changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    define_asset_job,
    instance_for_test,
)
from dagster._core.test_utils import freeze_time
from pymongo.database import Database

from intervalprocessing_dagster.data_change.assets import COLLECTIONS
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.checks import (
    DATA_UPDATE_CONFIGS,
    automations_are_valid,
    automations_within_limits,
)
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.data_change.jobs import DATA_CHANGE_JOBS
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.oncall.jobs import config_checks_job
from intervalprocessing_dagster.reports.assets import CONFIG_ASSETS
from intervalprocessing_dagster.reports.checks import CONFIG_CHECKS, build_freshness_checks, build_row_count_checks
from intervalprocessing_dagster.reports.delivery import LocalReportStore
from intervalprocessing_dagster.reports.jobs import REPORT_ASSETS, file_generation_job
from intervalprocessing_dagster.runs.clock import RunClock, run_stamp_tags
from tests.data_change.test_data_change_jobs import automation

FRIDAY = datetime(2024, 3, 15, 3, 0, tzinfo=UTC)


def run_config_checks(
    mongo: MongoResource, guard: AutomationGuard | None = None, instance: DagsterInstance | None = None
) -> dict[str, AssetCheckEvaluation]:
    defs = Definitions(
        assets=[DATA_UPDATE_CONFIGS, *CONFIG_ASSETS],
        asset_checks=[automations_are_valid, automations_within_limits, *CONFIG_CHECKS],
        jobs=[config_checks_job],
        resources={"mongo": mongo, "guard": guard or AutomationGuard()},
    )
    result = defs.resolve_job_def("config_checks_job").execute_in_process(raise_on_error=False, instance=instance)
    evaluations = {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}
    # A check failed at ERROR fails its run too (the config checks are blocking); at WARN the run stays green.
    at_error = [e for e in evaluations.values() if not e.passed and e.severity == AssetCheckSeverity.ERROR]
    assert result.success == (not at_error)
    return evaluations


def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    return {name: list(db[name].find().sort("_id", 1)) for name in sorted(db.list_collection_names())}


def test_config_checks_pass_on_the_demo_data(mongo: MongoResource, mongo_db: Database) -> None:
    seed_demo_data(mongo_db)
    evaluations = run_config_checks(mongo)
    assert set(evaluations) == {
        "automations_are_valid",
        "automations_within_limits",
        "report_processes_are_valid",
        "report_queries_are_valid",
    }
    assert all(evaluation.passed for evaluation in evaluations.values()), evaluations
    assert evaluations["automations_are_valid"].metadata["documents"].value == 9


def test_a_broken_automation_is_named_with_every_field_and_nothing_is_written(
    mongo: MongoResource, mongo_db: Database
) -> None:
    seed_demo_data(mongo_db)
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("Broken Nightly", cadence="Nightly", collectionName="", query="{ status: "),
            automation("Old Draft", isActive=False, runCadence="Weekly"),
        ]
    )
    before = snapshot(mongo_db)
    evaluation = run_config_checks(mongo)["automations_are_valid"]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert "2 of 11 automation(s) in dataupdateconfigs are invalid" in evaluation.description
    assert "'Broken Nightly': collectionName: must be a non-empty string, got ''; query:" in evaluation.description
    assert "'Old Draft' (inactive): runCadence: must be exactly one of" in evaluation.description
    assert evaluation.metadata["invalid_active"].value == 1
    assert snapshot(mongo_db) == before  # validation only: no automation ran, no record was written


def test_only_inactive_invalid_automations_warn(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.dataupdateconfigs.insert_many([automation("Fine"), automation("Draft", isActive=False, query=None)])
    evaluation = run_config_checks(mongo)["automations_are_valid"]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert "'Draft' (inactive): query:" in evaluation.description


def test_an_automation_over_its_limit_is_red_before_its_cadence_fires(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_many([{"status": "Open"} for _ in range(3)])
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("Too Broad", maxDocuments=2),
            automation("Fine", maxDocuments="100%"),
            automation("Unlimited"),
            automation("Off", isActive=False, maxDocuments=1),
            automation("Broken", maxDocuments=1, query=None),
        ]
    )
    before = snapshot(mongo_db)
    evaluation = run_config_checks(mongo)["automations_within_limits"]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert (evaluation.metadata["checked"].value, evaluation.metadata["over_limit"].value) == (2, 1)
    assert evaluation.description == (
        "1 automation(s) match more documents than they may:\n- 'Too Broad': it matches 3 documents of audits, more "
        "than its limit of 2 set by maxDocuments on its dataupdateconfigs document; its next run will fail, writing "
        "nothing. If that many is intended, set maxDocuments: 3 (or more) on its dataupdateconfigs document and run "
        "it again"
    )
    assert snapshot(mongo_db) == before  # count-only queries

    evaluation = run_config_checks(mongo, AutomationGuard(max_documents=1))["automations_within_limits"]
    assert evaluation.metadata["over_limit"].value == 2 and "'Unlimited': it matches 3" in evaluation.description
    mongo_db.dataupdateconfigs.update_one({"name": "Too Broad"}, {"$set": {"maxDocuments": 3}})
    assert run_config_checks(mongo)["automations_within_limits"].passed


def test_an_automation_changed_since_its_last_run_is_observed_once_with_old_and_new_config(
    mongo: MongoResource, mongo_db: Database
) -> None:
    changed = automation("Edited", query="{ status: 'Pending' }", maxDocuments=50)
    unchanged = automation("Untouched")
    mongo_db.dataupdateconfigs.insert_many([changed, unchanged])
    as_run = {**changed, "query": "{ status: 'Open' }"}
    as_run.pop("maxDocuments")
    mongo_db[LEDGER_COLLECTION].insert_many(
        [  # the recovery ledger's records: the document as each run loaded it
            {"runId": "old-run", "configId": changed["_id"], "dryRun": False, "stamp": FRIDAY, "config": as_run},
            {
                "runId": "dry-run",
                "configId": changed["_id"],
                "dryRun": True,
                "stamp": FRIDAY + timedelta(hours=1),
                "config": changed,
            },
            {"runId": "old-run", "configId": unchanged["_id"], "dryRun": False, "stamp": FRIDAY, "config": unchanged},
        ]
    )
    with instance_for_test() as instance:
        for _ in range(2):  # the second hour records nothing new
            assert (
                run_config_checks(mongo, instance=instance)["automations_are_valid"]
                .metadata["changed_since_last_run"]
                .value
                == 1
            )
        (record,) = instance.fetch_observations(DATA_UPDATE_CONFIGS.key, limit=10).records
    observation = record.asset_observation
    assert observation.description.startswith("automation 'Edited' changed since its last run (old-run, stamp ")
    assert observation.metadata["changed_fields"].value == ["maxDocuments", "query"]
    assert observation.metadata["changes"].value == {
        "query": {"before": "{ status: 'Open' }", "after": "{ status: 'Pending' }"},
        "maxDocuments": {"after": 50},
    }
    assert observation.metadata["last_run_id"].value == "old-run"


def test_broken_report_config_is_named_per_process_and_query(mongo: MongoResource, mongo_db: Database) -> None:
    seed_demo_data(mongo_db)
    processes = mongo_db.fileprocessingconfigs.find_one()["processes"]
    processes[0]["configurations"]["fileNameBase"] = "../escape"
    processes[1]["configurations"]["writerTypeKey"] = "NoSuchWriter"
    processes[3]["configurations"]["queryName"] = "missingQuery"
    mongo_db.fileprocessingconfigs.update_one({}, {"$set": {"processes": processes}})
    mongo_db.storedqueries.update_one({"name": "dailyActiveMRRInventory"}, {"$set": {"query": "aggregate([{$match"}})

    evaluations = run_config_checks(mongo)
    processes_check, queries_check = evaluations["report_processes_are_valid"], evaluations["report_queries_are_valid"]
    assert not processes_check.passed and processes_check.severity == AssetCheckSeverity.ERROR
    assert "2 problem(s) in fileprocessingconfigs (4 process(es) checked)" in processes_check.description
    assert "process 'DailyAuditInventoryProcessor': configurations.fileNameBase '../escape'" in (
        processes_check.description
    )
    assert "unknown writerTypeKey 'NoSuchWriter'" in processes_check.description
    assert not queries_check.passed
    assert "storedqueries 'dailyActiveMRRInventory' (process 'DailyActiveMRRInventoryProcessor')" in (
        queries_check.description
    )
    assert "no storedqueries document has name 'missingQuery'" in queries_check.description
    assert evaluations["automations_are_valid"].passed


def test_an_empty_report_config_fails_both_report_checks(mongo: MongoResource, mongo_db: Database) -> None:
    evaluations = run_config_checks(mongo)
    assert "fileprocessingconfigs is empty" in evaluations["report_processes_are_valid"].description
    assert not evaluations["report_queries_are_valid"].passed


def run_reports(instance: DagsterInstance, mongo: MongoResource, reports_dir: str) -> dict[str, AssetCheckEvaluation]:
    """``file_generation_job`` (weekly reports included) with its row-count checks, on ``instance``."""
    defs = Definitions(
        assets=[*COLLECTIONS, *CONFIG_ASSETS, *REPORT_ASSETS],
        asset_checks=build_row_count_checks(REPORT_ASSETS),
        jobs=[file_generation_job],
        resources={"mongo": mongo, "clock": RunClock(), "report_store": LocalReportStore(directory=reports_dir)},
    )
    result = defs.resolve_job_def("file_generation_job").execute_in_process(
        instance=instance, run_config={"include_weekly": True}, tags=run_stamp_tags(FRIDAY)
    )
    return {
        evaluation.asset_key.to_user_string(): evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "row_count"
    }


def test_row_count_warns_on_an_empty_or_halved_report(mongo: MongoResource, mongo_db: Database, tmp_path) -> None:
    seed_demo_data(mongo_db)
    with instance_for_test() as instance:
        first = run_reports(instance, mongo, str(tmp_path))
        assert set(first) == {a.key.to_user_string() for a in REPORT_ASSETS}
        assert all(evaluation.passed for evaluation in first.values()), first
        assert first["daily_audit_inventory"].metadata["rows"].value == 5

        mongo_db.audits.delete_many({"status": "Approved"})  # daily audit 5 -> 3 rows, weekly 6 -> 4: fine
        mongo_db.medicalrecordrequests.delete_many({})  # both MRR reports: 0 rows
        second = run_reports(instance, mongo, str(tmp_path))
        mongo_db.audits.delete_many({"auditId": {"$ne": 10000}})  # daily audit 3 -> 1 row
        third = run_reports(instance, mongo, str(tmp_path))

    assert second["daily_audit_inventory"].passed and second["weekly_audit_inventory"].passed
    assert second["daily_audit_inventory"].metadata["previous_rows"].value == 5
    for name in ("daily_active_mrr_inventory", "weekly_mrr_inventory"):
        assert not second[name].passed and second[name].severity == AssetCheckSeverity.WARN
        assert second[name].description == "the report has 0 rows"
    halved = third["daily_audit_inventory"]
    assert not halved.passed and halved.severity == AssetCheckSeverity.WARN
    assert halved.description == "1 rows, fewer than half of the previous 3"
    assert third["configured_reports"].passed  # no configured reports: nothing to count


def test_freshness_checks_go_red_when_a_report_is_overdue(mongo: MongoResource, mongo_db: Database, tmp_path) -> None:
    seed_demo_data(mongo_db)
    freshness = build_freshness_checks(REPORT_ASSETS, "UTC")
    defs = Definitions(
        assets=[*COLLECTIONS, *CONFIG_ASSETS, *REPORT_ASSETS],
        asset_checks=freshness,
        jobs=[define_asset_job("freshness_job", selection=AssetSelection.checks(*freshness))],
        resources={"mongo": mongo, "clock": RunClock(), "report_store": LocalReportStore(directory=str(tmp_path))},
    )

    def evaluate(instance: DagsterInstance, at: datetime) -> dict[str, bool]:
        with freeze_time(at):
            result = defs.resolve_job_def("freshness_job").execute_in_process(instance=instance)
        return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}

    with instance_for_test() as instance:
        assert not any(evaluate(instance, datetime.now(UTC)).values())  # never materialized
        materialized_at = datetime.now(UTC)
        _materialize(defs, instance)
        assert all(evaluate(instance, materialized_at + timedelta(hours=25)).values())
        late = evaluate(instance, materialized_at + timedelta(hours=27))
        assert late == {
            "daily_audit_inventory": False,
            "daily_active_mrr_inventory": False,
            "configured_reports": False,
            "weekly_audit_inventory": True,
            "weekly_mrr_inventory": True,
        }
        assert not any(evaluate(instance, materialized_at + timedelta(days=8, hours=1)).values())


def _materialize(defs: Definitions, instance: DagsterInstance) -> None:
    job = define_asset_job("reports_job", selection=AssetSelection.assets(*REPORT_ASSETS).without_checks())
    Definitions.merge(defs, Definitions(jobs=[job])).resolve_job_def("reports_job").execute_in_process(
        instance=instance,
        run_config={"ops": {a.op.name: {"config": {"include_weekly": True}} for a in REPORT_ASSETS}},
        tags=run_stamp_tags(FRIDAY),
    )


def test_an_applied_automation_materializes_its_partition_of_the_collection_it_changed(
    mongo: MongoResource, mongo_db: Database
) -> None:
    mongo_db.audits.insert_many([{"status": "Open", "notes": []}, {"status": "Open"}, {"status": "Closed"}])
    mongo_db.medicalrecordrequests.insert_one({"status": "Open", "notes": []})
    mongo_db.dataupdateconfigs.insert_many(
        [
            automation("Note Audits"),
            automation("Note Requests", collectionName="medicalrecordrequests"),
        ]
    )
    with instance_for_test() as instance:
        for run_config in ({"ops": {"apply_automation": {"config": {"dry_run": True}}}}, None):
            DATA_CHANGE_JOBS[Cadence.HOURLY].execute_in_process(
                instance=instance,
                resources={"mongo": mongo, "clock": RunClock(), "guard": AutomationGuard()},
                run_config=run_config,
            )
        materializations = {
            key: [
                record.asset_materialization
                for record in instance.fetch_materializations(AssetKey(key), limit=10).records
            ]
            for key in ("audits", "medicalrecordrequests")
        }
        observed = [
            key
            for key in ("audits", "medicalrecordrequests")
            if instance.fetch_observations(AssetKey(key), limit=10).records
        ]
    # One materialization each, from the real run, on the automation's partition (the dry run changed nothing and
    # recorded nothing).
    (audits,) = materializations["audits"]
    assert (audits.partition, audits.metadata["matched"].value, audits.metadata["modified"].value) == (
        "Note Audits",
        2,
        2,
    )
    (requests,) = materializations["medicalrecordrequests"]
    assert (requests.partition, requests.metadata["matched"].value, requests.metadata["modified"].value) == (
        "Note Requests",
        1,
        1,
    )
    assert observed == []
