"""The whole code location loads, locally and in production shape, with every job and schedule users script against."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DefaultScheduleStatus, Definitions

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
