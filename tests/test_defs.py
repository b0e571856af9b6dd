"""The whole code location loads, locally and in production shape, with every job and schedule users script against."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DefaultScheduleStatus, DefaultSensorStatus, Definitions, FilesystemIOManager
from dagster_aws.s3 import S3PickleIOManager

from intervalprocessing_dagster.oncall.alerting import LogAlertChannel, SnsAlertChannel
from intervalprocessing_dagster.definitions import build_definitions, defs
from intervalprocessing_dagster.mongo.resource import EmbeddedMongoResource, MongoResource
from intervalprocessing_dagster.reports.delivery import LocalReportStore, S3ReportStore
from intervalprocessing_dagster.settings import Settings, SettingsError

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
    production = build_definitions(Settings.from_env(
        {"MONGODB_URI": "set", "MONGODB_DATABASE": "ops", "REPORTS_S3_BUCKET": "reports", "REPORTS_S3_PREFIX": "out"}
    ))
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


def test_local_parts_keep_step_outputs_on_disk_and_log_alerts(tmp_path: Path) -> None:
    local = build_definitions(Settings.from_env({"INTERVALPROCESSING_LOCAL_DIR": str(tmp_path)}))
    assert isinstance(local.resources["io_manager"], FilesystemIOManager)
    assert type(local.resources["alerts"]) is LogAlertChannel


def test_production_keeps_step_outputs_in_s3_and_publishes_alerts_to_sns() -> None:
    production = build_definitions(Settings.from_env({
        "STEP_OUTPUTS_S3_BUCKET": "reports", "STEP_OUTPUTS_S3_PREFIX": "dagster/outputs",
        "ALERTS_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        "INTERVALPROCESSING_WEBSERVER_URL": "https://dagster.example.com",
    }))
    io_manager = production.resources["io_manager"]
    assert isinstance(io_manager, S3PickleIOManager)
    assert (io_manager.s3_bucket, io_manager.s3_prefix) == ("reports", "dagster/outputs/")
    alerts = production.resources["alerts"]
    assert isinstance(alerts, SnsAlertChannel)
    assert alerts.topic_arn == "arn:aws:sns:us-east-1:123456789012:alerts"
    assert alerts.run_url("abc") == "https://dagster.example.com/runs/abc"


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
        "fileprocessingconfigs_report_processes_are_valid",
        "storedqueries_report_queries_are_valid",
    }


def test_lineage_runs_from_the_config_collections_through_the_data_to_the_reports() -> None:
    graph = defs.resolve_asset_graph()
    assert AssetKey("dataupdateconfigs") in graph.get(AssetKey("audits")).parent_keys
    assert {AssetKey("audits"), AssetKey("fileprocessingconfigs"), AssetKey("storedqueries")} <= (
        graph.get(AssetKey("daily_audit_inventory")).parent_keys
    )
