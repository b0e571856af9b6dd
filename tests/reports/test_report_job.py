"""file_generation_job end to end: the Friday rule in the configured time zone, retries, S3, config-only reports,
layout overrides and bad configuration isolated to the report it breaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import boto3
from dagster import DagsterEventType, ExecuteInProcessResult, RunRequest, build_schedule_context, instance_for_test
from pymongo.database import Database

from intervalprocessing_dagster.reports.delivery import S3ReportStore
from intervalprocessing_dagster.reports.layouts import BUILT_IN_LAYOUT_DOCUMENTS
from intervalprocessing_dagster.reports.schedules import build_file_generation_schedule
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from intervalprocessing_dagster.settings import Settings

RunReports = Callable[..., ExecuteInProcessResult]
NEW_YORK = ZoneInfo("America/New_York")
THURSDAY_NIGHT = datetime(2024, 3, 14, 23, 30, tzinfo=NEW_YORK)  # already Friday 03:30 in UTC
FRIDAY_NIGHT = datetime(2024, 3, 15, 23, 30, tzinfo=NEW_YORK)  # already Saturday 03:30 in UTC
DAILY = {"daily_audit_inventory", "daily_active_mrr_inventory"}
WEEKLY = {"weekly_audit_inventory", "weekly_mrr_inventory"}


def materialized(result: ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def failures(result: ExecuteInProcessResult) -> dict[str, str]:
    """Step key -> the user-facing error text (the exception's message and its cause's)."""
    found = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            found[event.step_key] = error.message + (error.cause.message if error.cause else "")
    return found


def test_thursday_night_in_new_york_is_not_friday(
    report_db: Database, run_reports: RunReports, reports_dir: Path
) -> None:
    result = run_reports(THURSDAY_NIGHT)
    assert result.success
    assert materialized(result) == DAILY | {"configured_reports"}
    assert sorted(p.name for p in reports_dir.iterdir()) == [
        "DailyActiveMRRInventory_03142024_233000.txt",
        "DailyAuditInventory_03142024_233000.txt",
    ]


def test_a_skipped_weekly_report_says_why_in_an_observation(report_db: Database, run_reports: RunReports) -> None:
    result = run_reports(THURSDAY_NIGHT)
    skipped = {
        event.asset_key.to_user_string(): event.asset_observation_data.asset_observation.metadata["skipped"].value
        for event in result.all_events
        if event.event_type == DagsterEventType.ASSET_OBSERVATION
        and "skipped" in event.asset_observation_data.asset_observation.metadata
    }
    assert skipped == dict.fromkeys(WEEKLY, "not a Friday (stamp 2024-03-14T23:30:00-04:00, a Thursday)")
    assert not any(  # a Friday run observes nothing skipped
        "skipped" in event.asset_observation_data.asset_observation.metadata
        for event in run_reports(FRIDAY_NIGHT).all_events
        if event.event_type == DagsterEventType.ASSET_OBSERVATION
    )


def test_friday_night_in_new_york_is_friday(report_db: Database, run_reports: RunReports) -> None:
    assert materialized(run_reports(FRIDAY_NIGHT)) == DAILY | WEEKLY | {"configured_reports"}


def test_same_instant_on_a_utc_clock_is_friday(report_db: Database, run_reports: RunReports) -> None:
    assert materialized(run_reports(THURSDAY_NIGHT, timezone="UTC")) >= WEEKLY


def test_run_config_asks_for_the_weekly_reports(report_db: Database, run_reports: RunReports) -> None:
    result = run_reports(THURSDAY_NIGHT, run_config={"include_weekly": True})
    assert materialized(result) >= WEEKLY


def test_schedule_stamps_its_run_with_the_tick_in_the_configured_timezone() -> None:
    schedule = build_file_generation_schedule(Settings.from_env({"INTERVALPROCESSING_TIMEZONE": "America/New_York"}))
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 3 * * *", "America/New_York")
    tick = datetime(2024, 3, 15, 3, 0, tzinfo=NEW_YORK)
    with instance_for_test() as instance:
        with build_schedule_context(instance, scheduled_execution_time=tick) as context:
            [request] = schedule.evaluate_tick(context).run_requests
    assert isinstance(request, RunRequest)
    assert datetime.fromisoformat(request.tags[RUN_STAMP_TAG]) == tick


def test_retry_of_a_tick_rewrites_the_same_objects_and_records(
    report_db: Database, run_reports: RunReports, s3_bucket: str
) -> None:
    store = S3ReportStore(bucket=s3_bucket)
    assert run_reports(FRIDAY_NIGHT, store=store).success
    report_db.audits.update_one({"auditId": 10000}, {"$set": {"status": "Approved"}})
    retry = run_reports(FRIDAY_NIGHT, store=store)
    assert retry.success

    s3 = boto3.client("s3")
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == [
        f"GeneratedFiles/{base}_03152024_233000.txt"
        for base in ("DailyActiveMRRInventory", "DailyAuditInventory", "WeeklyAuditInventory", "WeeklyMRRInventory")
    ]
    records = list(report_db.generatedfiles.find({}, {"_id": 0, "location": 1, "bucket": 1, "source": 1}))
    assert sorted(r["location"] for r in records) == keys
    assert {r["bucket"] for r in records} == {s3_bucket}
    body = s3.get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read()
    assert b"10000|123456789|Approved|" in body  # the retry's snapshot replaced the first one
    [audit] = retry.asset_materializations_for_node("daily_audit_inventory")
    assert audit.metadata["s3_uri"].value == f"s3://{s3_bucket}/{keys[1]}"


def test_a_new_report_needs_only_config(report_db: Database, run_reports: RunReports, reports_dir: Path) -> None:
    report_db.fileprocessingconfigs.update_one(
        {},
        {
            "$push": {
                "processes": {
                    "name": "ProviderDirectoryProcessor",
                    "configurations": {
                        "queryName": "activeProviders",
                        "collectionName": "providers",
                        "projection": "{ name: 1, number: 1, address: 1 }",
                        "fileNameBase": "ProviderDirectory",
                        "writerTypeKey": "ProviderDirectoryFileWriter",
                    },
                }
            }
        },
    )
    report_db.fileprocessingconfigs.update_one(
        {},
        {
            "$push": {
                "processes": {
                    "name": "WeeklyProviderDirectoryProcessor",
                    "configurations": {
                        "queryName": "activeProviders",
                        "collectionName": "providers",
                        "projection": "{}",
                        "fileNameBase": "WeeklyProviderDirectory",
                        "writerTypeKey": "ProviderDirectoryFileWriter",
                        "cadence": "Weekly",
                    },
                }
            }
        },
    )
    report_db.storedqueries.insert_one({"name": "activeProviders", "query": "{ name : { $exists : true } }"})
    report_db.reportlayouts.insert_one(
        {
            "writerTypeKey": "ProviderDirectoryFileWriter",
            "columns": [
                {"header": "Provider", "path": "name"},
                {"header": "Number", "path": "number"},
                {"header": "Address", "path": "address", "format": "address"},
                {"header": "Source", "value": "IP"},
            ],
            "sort": {"name": -1},
        }
    )

    result = run_reports(THURSDAY_NIGHT)

    assert result.success
    assert (reports_dir / "ProviderDirectory_03142024_233000.txt").read_text() == (
        "Provider|Number|Address|Source\n"
        "Smoky Hills Hospital|P-1003|789 Boulevard St Knoxville, TN 37902|IP\n"
        "Smith   Jones Clinic|P-1004|12 Lake Dr Chattanooga, TN|IP\n"
        "No Address Practice|||IP\n"
        "Mountain View Clinic|P-1001|123 Main St Suite 200 Nashville, TN 37201|IP\n"
    )
    assert not (reports_dir / "WeeklyProviderDirectory_03142024_233000.txt").exists()  # Weekly, and not Friday
    [summary] = result.asset_materializations_for_node("configured_reports")
    assert (summary.metadata["reports"].value, summary.metadata["rows"].value) == (1, 4)
    assert summary.metadata["skipped_weekly"].value == "WeeklyProviderDirectoryProcessor"
    [observation] = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_OBSERVATION and e.asset_key.to_user_string() == "configured_reports"
    ]
    assert observation.metadata["file_name"].value == "ProviderDirectory_03142024_233000.txt"
    assert observation.metadata["rows"].value == 4
    assert report_db.generatedfiles.count_documents({"source": "ProviderDirectoryProcessor"}) == 1


def test_a_built_in_layout_is_overridden_from_mongodb(
    report_db: Database, run_reports: RunReports, reports_dir: Path
) -> None:
    [weekly_mrr] = [d for d in BUILT_IN_LAYOUT_DOCUMENTS if d["writerTypeKey"] == "WeeklyMRRInventoryFileWriter"]
    report_db.reportlayouts.insert_one(
        {**weekly_mrr, "columns": weekly_mrr["columns"][:2], "keepRowsWithoutJoin": False, "sort": {"claimNumber": -1}}
    )

    assert run_reports(FRIDAY_NIGHT).success

    assert (reports_dir / "WeeklyMRRInventory_03152024_233000.txt").read_text() == (
        "Request Id|Claim Number\n"  # MR100002 and MR100003 have no provider: dropped, as this layout asks
        "MR100006|723456789\nMR100005|623456789\nMR100004|523456789\nMR100001|223456789\nMR100000|123456789\n"
    )


def test_bad_config_fails_only_the_report_it_breaks(report_db: Database, run_reports: RunReports) -> None:
    processes = report_db.fileprocessingconfigs.find_one()["processes"]
    processes[0]["configurations"]["writerTypeKey"] = "DailyAuditInventoryFileWritter"  # DailyAuditInventory
    processes[1]["configurations"]["queryName"] = "weeklyAuditInventoryV2"  # WeeklyAuditInventory
    processes.append(
        {
            "name": "BrokenQueryProcessor",
            "configurations": {
                "queryName": "broken",
                "collectionName": "audits",
                "projection": "{}",
                "fileNameBase": "Broken",
                "writerTypeKey": "DailyAuditInventoryFileWriter",
            },
        }
    )
    processes.append(
        {
            "name": "OrphanLayoutProcessor",
            "configurations": {
                "queryName": "dailyAuditInventory",
                "collectionName": "audits",
                "projection": "{}",
                "fileNameBase": "Orphan",
                "writerTypeKey": "NoSuchWriter",
            },
        }
    )
    processes.append(
        {
            "name": "GoodExtraProcessor",
            "configurations": {
                "queryName": "dailyAuditInventory",
                "collectionName": "audits",
                "projection": "{}",
                "fileNameBase": "GoodExtra",
                "writerTypeKey": "DailyAuditInventoryFileWriter",
            },
        }
    )
    report_db.fileprocessingconfigs.update_one({}, {"$set": {"processes": processes}})
    report_db.storedqueries.insert_one({"name": "broken", "query": "{ status : { $in : [ 'Approved' } }"})
    report_db.storedqueries.update_one(
        {"name": "dailyActiveMRRInventory"}, {"$set": {"query": "aggregate([{$match:{status:'Open'}}, {$out:'x'}])"}}
    )

    result = run_reports(FRIDAY_NIGHT)

    assert materialized(result) == {"weekly_mrr_inventory"}
    errors = failures(result)
    assert set(errors) == {
        "daily_audit_inventory",
        "weekly_audit_inventory",
        "daily_active_mrr_inventory",
        "configured_reports",
    }
    assert (
        "process 'DailyAuditInventoryProcessor': unknown writerTypeKey 'DailyAuditInventoryFileWritter'"
        in (errors["daily_audit_inventory"])
    )
    assert (
        "storedqueries 'weeklyAuditInventoryV2' (process 'WeeklyAuditInventoryProcessor'): no storedqueries "
        "document has name 'weeklyAuditInventoryV2'"
    ) in errors["weekly_audit_inventory"]
    assert "storedqueries 'dailyActiveMRRInventory'" in errors["daily_active_mrr_inventory"]
    assert "$out" in errors["daily_active_mrr_inventory"]
    assert "2 configured report(s) failed" in errors["configured_reports"]
    assert (
        "BrokenQueryProcessor: storedqueries 'broken' (process 'BrokenQueryProcessor'): line 1"
        in (errors["configured_reports"])
    )
    assert (
        "OrphanLayoutProcessor: process 'OrphanLayoutProcessor': unknown writerTypeKey 'NoSuchWriter'"
        in (errors["configured_reports"])
    )
    # The good configured report was still written and recorded before the asset reported the broken ones.
    assert report_db.generatedfiles.count_documents({"source": "GoodExtraProcessor"}) == 1


def test_a_shared_file_name_base_fails_only_the_reports_sharing_it(
    report_db: Database, run_reports: RunReports, reports_dir: Path
) -> None:
    report_db.fileprocessingconfigs.update_one(
        {},
        {
            "$push": {
                "processes": {
                    "$each": [
                        {
                            "name": "AuditCopyProcessor",
                            "configurations": {
                                "queryName": "dailyAuditInventory",
                                "collectionName": "audits",
                                "projection": "{}",
                                "fileNameBase": "DailyAuditInventory",
                                "writerTypeKey": "DailyAuditInventoryFileWriter",
                            },
                        },
                        {
                            "name": "GoodExtraProcessor",
                            "configurations": {
                                "queryName": "dailyAuditInventory",
                                "collectionName": "audits",
                                "projection": "{}",
                                "fileNameBase": "GoodExtra",
                                "writerTypeKey": "DailyAuditInventoryFileWriter",
                            },
                        },
                    ]
                }
            }
        },
    )

    result = run_reports(THURSDAY_NIGHT)

    assert materialized(result) == {"daily_active_mrr_inventory"}
    errors = failures(result)
    assert set(errors) == {"daily_audit_inventory", "configured_reports"}
    assert (
        "process 'DailyAuditInventoryProcessor': configurations.fileNameBase 'DailyAuditInventory' is also the "
        "fileNameBase of process 'AuditCopyProcessor'"
    ) in errors["daily_audit_inventory"]
    assert "1 configured report(s) failed" in errors["configured_reports"]
    assert (
        "process 'AuditCopyProcessor': configurations.fileNameBase 'DailyAuditInventory' is also the "
        "fileNameBase of process 'DailyAuditInventoryProcessor'"
    ) in errors["configured_reports"]
    assert not list(reports_dir.glob("DailyAuditInventory_*"))
    assert (reports_dir / "GoodExtra_03142024_233000.txt").exists()
    assert (
        report_db.generatedfiles.count_documents(
            {"source": {"$in": ["DailyAuditInventoryProcessor", "AuditCopyProcessor"]}}
        )
        == 0
    )


def test_a_missing_process_entry_is_named(report_db: Database, run_reports: RunReports) -> None:
    report_db.fileprocessingconfigs.update_one({}, {"$pull": {"processes": {"name": "DailyAuditInventoryProcessor"}}})
    errors = failures(run_reports(THURSDAY_NIGHT))
    assert set(errors) == {"daily_audit_inventory"}
    assert "no process named 'DailyAuditInventoryProcessor' in processes[]" in errors["daily_audit_inventory"]


def test_a_report_failing_mid_stream_leaves_no_object_and_no_record(
    report_db: Database, run_reports: RunReports, s3_bucket: str
) -> None:
    report_db.audits.insert_one({"auditId": 10099, "status": "Approved", "date": "2024-02-24", "amount": 1})

    result = run_reports(FRIDAY_NIGHT, store=S3ReportStore(bucket=s3_bucket))

    errors = failures(result)
    assert set(errors) == {"daily_audit_inventory", "weekly_audit_inventory"}
    assert "column 'Audit Date' (date)" in errors["daily_audit_inventory"]
    assert "a date column needs a BSON date, got str '2024-02-24'" in errors["daily_audit_inventory"]
    s3 = boto3.client("s3")
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert keys == {
        "GeneratedFiles/DailyActiveMRRInventory_03152024_233000.txt",
        "GeneratedFiles/WeeklyMRRInventory_03152024_233000.txt",
    }
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert sorted(report_db.generatedfiles.distinct("source")) == [
        "DailyActiveMRRInventoryProcessor",
        "WeeklyMRRInventoryProcessor",
    ]


def test_each_report_observes_the_configuration_it_read(report_db: Database, run_reports: RunReports) -> None:
    """The UI's cards of fileprocessingconfigs and storedqueries show when a report last read them, and what."""
    observed: dict[str, set[tuple[str, ...]]] = {"fileprocessingconfigs": set(), "storedqueries": set()}
    for event in run_reports(FRIDAY_NIGHT).all_events:
        key = event.asset_key.to_user_string() if event.asset_key else None
        if event.event_type == DagsterEventType.ASSET_OBSERVATION and key in observed:
            metadata = event.asset_observation_data.asset_observation.metadata
            observed[key].add(tuple(metadata[name].value for name in sorted(metadata)))
    processes = {
        "DailyAuditInventoryProcessor",
        "DailyActiveMRRInventoryProcessor",
        "WeeklyAuditInventoryProcessor",
        "WeeklyMRRInventoryProcessor",
    }
    assert observed["fileprocessingconfigs"] == {(process,) for process in processes}
    assert {(process, query) for process, query in observed["storedqueries"]} == {
        ("DailyAuditInventoryProcessor", "dailyAuditInventory"),
        ("DailyActiveMRRInventoryProcessor", "dailyActiveMRRInventory"),
        ("WeeklyAuditInventoryProcessor", "weeklyAuditInventory"),
        ("WeeklyMRRInventoryProcessor", "weeklyMRRInventory"),
    }
