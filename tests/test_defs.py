"""The whole code location loads, locally and in production shape, with every job and schedule users script against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DefaultScheduleStatus, DefaultSensorStatus, Definitions, FilesystemIOManager
from dagster_aws.s3 import S3PickleIOManager

from intervalprocessing_dagster.data_change.rules import Limit, parse_automation
from intervalprocessing_dagster.definitions import build_definitions, defs
from intervalprocessing_dagster.mongo.resources import EmbeddedMongoResource, MongoResource
from intervalprocessing_dagster.oncall.resources import LogAlertChannel, SnsAlertChannel
from intervalprocessing_dagster.reports.delivery import LocalReportStore, S3ReportStore
from intervalprocessing_dagster.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[1]
JOBS_AND_CRONS = {
    "nightly_data_change_job": "0 2 * * *",
    "hourly_data_change_job": "0 * * * *",
    "half_hourly_data_change_job": "*/30 * * * *",
    "quarter_hourly_data_change_job": "*/15 * * * *",
    "file_generation_job": "0 3 * * *",
}


def test_code_location_loads() -> None:
    Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assert set(JOBS_AND_CRONS) <= {job.name for job in repository.get_all_jobs()}


@pytest.mark.parametrize("job_name", sorted(JOBS_AND_CRONS))
def test_each_job_has_its_schedule_with_the_old_cron(job_name: str) -> None:
    schedule = defs.resolve_schedule_def(job_name.removesuffix("_job") + "_schedule")
    assert schedule.job_name == job_name
    assert schedule.cron_schedule == JOBS_AND_CRONS[job_name]
    assert schedule.execution_timezone == "UTC"
    # Off until an operator turns it on: a fresh deployment must not change data before it has been checked.
    assert schedule.default_status == DefaultScheduleStatus.STOPPED


def test_schedules_follow_the_configured_timezone_and_cron(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"INTERVALPROCESSING_TIMEZONE": "America/New_York", "FILE_GENERATION_CRON": "30 4 * * *"}
    )
    production = build_definitions(settings)
    schedules = [production.resolve_schedule_def(name.removesuffix("_job") + "_schedule") for name in JOBS_AND_CRONS]
    assert {schedule.execution_timezone for schedule in schedules} == {"America/New_York"}
    assert production.resolve_schedule_def("file_generation_schedule").cron_schedule == "30 4 * * *"


def test_embedded_default_without_mongodb_uri(tmp_path: Path) -> None:
    local = build_definitions(Settings.from_env({"INTERVALPROCESSING_LOCAL_DIR": str(tmp_path)}))
    mongo = local.resources["mongo"]
    assert isinstance(mongo, EmbeddedMongoResource)
    assert Path(mongo.data_dir) == tmp_path / "embedded-mongo"
    store = local.resources["report_store"]
    assert isinstance(store, LocalReportStore)
    assert Path(store.directory) == tmp_path / "reports"


def test_production_reads_the_uri_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://user:s3cret@db.example.com/")
    production = build_definitions(
        Settings.from_env(
            {
                "MONGODB_URI": "set",
                "MONGODB_DATABASE": "ops",
                "REPORTS_S3_BUCKET": "reports",
                "REPORTS_S3_PREFIX": "out",
            }
        )
    )
    mongo = production.resources["mongo"]
    assert type(mongo) is MongoResource
    assert mongo.database_name == "ops"
    store = production.resources["report_store"]
    assert isinstance(store, S3ReportStore)
    assert (store.bucket, store.prefix) == ("reports", "out/")
    # The URI is an EnvVar reference: the secret is not part of the resource's configuration.
    assert "s3cret" not in repr(production.resources)


def test_a_bad_timezone_is_named() -> None:
    with pytest.raises(SettingsError, match="INTERVALPROCESSING_TIMEZONE='Mars/Olympus'"):
        Settings.from_env({"INTERVALPROCESSING_TIMEZONE": "Mars/Olympus"})


def test_automation_history_days_reaches_the_mongo_resource_and_a_bad_value_is_named(tmp_path: Path) -> None:
    assert Settings.from_env({}).automation_history_days == 90
    local = build_definitions(
        Settings.from_env({"INTERVALPROCESSING_LOCAL_DIR": str(tmp_path), "AUTOMATION_HISTORY_DAYS": "30"})
    )
    assert local.resources["mongo"].history_days == 30
    production = build_definitions(Settings.from_env({"MONGODB_URI": "set", "AUTOMATION_HISTORY_DAYS": "400"}))
    assert production.resources["mongo"].history_days == 400
    for bad in ("0", "-3", "ninety", "1.5"):
        with pytest.raises(SettingsError, match=f"AUTOMATION_HISTORY_DAYS='{bad}' is not a whole number of days"):
            Settings.from_env({"AUTOMATION_HISTORY_DAYS": bad})


def test_local_parts_keep_step_outputs_on_disk_and_log_alerts(tmp_path: Path) -> None:
    local = build_definitions(Settings.from_env({"INTERVALPROCESSING_LOCAL_DIR": str(tmp_path)}))
    assert isinstance(local.resources["io_manager"], FilesystemIOManager)
    assert type(local.resources["alerts"]) is LogAlertChannel


def test_production_keeps_step_outputs_in_s3_and_publishes_alerts_to_sns() -> None:
    production = build_definitions(
        Settings.from_env(
            {
                "STEP_OUTPUTS_S3_BUCKET": "reports",
                "STEP_OUTPUTS_S3_PREFIX": "dagster/outputs",
                "ALERTS_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
                "INTERVALPROCESSING_WEBSERVER_URL": "https://dagster.example.com",
            }
        )
    )
    io_manager = production.resources["io_manager"]
    assert isinstance(io_manager, S3PickleIOManager)
    assert (io_manager.s3_bucket, io_manager.s3_prefix) == ("reports", "dagster/outputs/")
    alerts = production.resources["alerts"]
    assert isinstance(alerts, SnsAlertChannel)
    assert alerts.topic_arn == "arn:aws:sns:us-east-1:123456789012:alerts"
    assert alerts.run_url("abc") == "https://dagster.example.com/runs/abc"


def test_automation_history_and_the_platform_limit_come_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.automation_history_days, defaults.automation_max_documents) == (90, None)
    assert build_definitions(defaults).resources["guard"].limit_for(parse_automation(_automation())) is None
    configured = Settings.from_env({"AUTOMATION_HISTORY_DAYS": "30", "AUTOMATION_MAX_DOCUMENTS": "50000, 5%"})
    assert configured.automation_history_days == 30
    resources = build_definitions(configured).resources
    assert resources["mongo"].history_days == 30
    assert resources["guard"].limit_for(parse_automation(_automation())) == (
        Limit(50000, 5.0),
        "the platform default AUTOMATION_MAX_DOCUMENTS=50000, 5%",
    )


@pytest.mark.parametrize(("name", "value"), [("AUTOMATION_HISTORY_DAYS", "0"), ("AUTOMATION_MAX_DOCUMENTS", "all")])
def test_a_bad_automation_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}'"):
        Settings.from_env({name: value})


def _automation() -> dict:
    return {
        "name": "A",
        "query": "{}",
        "collectionName": "audits",
        "isActive": True,
        "runCadence": "Hourly",
        "singleFieldUpdateElements": [{"elementName": "x", "updateType": "Add", "elementValue": 1}],
        "arrayObjectFieldUpdateElements": [],
    }


def test_step_outputs_prefix_defaults_to_the_agreed_one() -> None:
    assert Settings.from_env({}).step_outputs_s3_prefix == "dagster/step-outputs/"


def test_on_call_sensors_and_the_config_check_schedule_run_by_default() -> None:
    for name in ("run_failure_alert_sensor", "check_failure_alert_sensor", "report_freshness_sensor"):
        assert defs.resolve_sensor_def(name).default_status == DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("config_checks_schedule")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING and schedule.cron_schedule == "45 * * * *"
    job = defs.resolve_job_def("config_checks_job")
    assert {node.name for node in job.nodes} == {
        "dataupdateconfigs_automations_are_valid",
        "dataupdateconfigs_automations_within_limits",
        "fileprocessingconfigs_report_processes_are_valid",
        "storedqueries_report_queries_are_valid",
    }


def test_lineage_runs_from_the_config_collections_through_the_data_to_the_reports() -> None:
    graph = defs.resolve_asset_graph()
    assert AssetKey("dataupdateconfigs") in graph.get(AssetKey("audits")).parent_keys
    assert {AssetKey("audits"), AssetKey("fileprocessingconfigs"), AssetKey("storedqueries")} <= (
        graph.get(AssetKey("daily_audit_inventory")).parent_keys
    )


def test_dg_checks_and_lists_the_code_location() -> None:
    """``dg`` (dagster-dg-cli) reads the project from pyproject.toml's ``tool.dg`` and loads the same definitions."""
    dg = str(Path(sys.executable).parent / "dg")
    checked = subprocess.run([dg, "check", "defs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = subprocess.run([dg, "list", "defs", "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert set(JOBS_AND_CRONS) <= {job["name"] for job in json.loads(listed.stdout)["jobs"]}
