"""Time the daemon did not have, on the production path (Postgres, moto ECS/S3, the real deploy/dagster.yaml, the
daemon's own scheduler, run queue, run monitoring and run retries driven one iteration at a time; conftest.py):

* ticks missed while the daemon was down make one run, for the latest tick, for both job families (file
  generation's with a missed Friday's weekly reports);
* a data-change run whose task died does not hold the next tick back once run monitoring has failed it;
* a file-generation task killed while a report is uploading is retried by the daemon and every due report ends up
  in S3 whole, once, with one ``generatedfiles`` record.

About 1.5 minutes on the shared machine: most tests run their ECS tasks as real run-worker processes.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import boto3
import pymongo
import pytest
from dagster import DagsterEventType, DagsterRunStatus
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.monitoring import run_monitoring
from dagster._utils.schedules import cron_string_iterator
from pymongo.database import Database

from intervalprocessing_dagster.reports.assets import MISSED_TICKS_TAG, WEEKLY_CATCH_UP_TAG
from intervalprocessing_dagster.reports.delivery import GENERATED_FILES_COLLECTION
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG

pytestmark = pytest.mark.system

log = logging.getLogger(__name__)
FRIDAY = 4
CHECKED = "Checked by the hourly sweep"


def _database(stack) -> Database:
    return pymongo.MongoClient(stack.mongo_uri, tz_aware=True)[stack.mongo_database]


def _ticks_after(start: datetime, cron: str, count: int) -> list[datetime]:
    """The ``count`` ticks of ``cron`` (UTC, the deployment's zone here) after ``start``."""
    times = cron_string_iterator(start.timestamp() + 1, cron, "UTC")
    return [next(times) for _ in range(count)]


def _down_until(stack, context: WorkspaceProcessContext, now: datetime) -> None:
    """The daemon back after an outage: its scheduler's first iteration at ``now``."""
    stack._scheduler_iteration(context, now)  # noqa: SLF001 - the harness's one scheduler iteration


def _monitor(context: WorkspaceProcessContext) -> None:
    list(run_monitoring.execute_run_monitoring_iteration(context, log))


def _retry_failed_runs(context: WorkspaceProcessContext) -> None:
    list(consume_new_runs_for_automatic_reexecution(context, context.instance.get_run_records(), log))


def _steps(context: WorkspaceProcessContext, run_id: str, event_type: DagsterEventType) -> set[str]:
    return {event.step_key for event in context.instance.all_logs(run_id, of_type=event_type)}


def test_a_cadence_after_missed_ticks_runs_once_for_the_latest_tick(production_stack) -> None:
    """Down for five hourly ticks: one run, stamped with the fifth; an automation that notes every open audit on
    every run noted each once, not five times with five stamps."""
    stack = production_stack
    db = _database(stack)
    db.audits.insert_many([{"auditId": 90_000 + n, "status": "Open", "notes": []} for n in range(3)])
    db.dataupdateconfigs.insert_one(
        {
            "name": "Hourly Sweep",
            "runCadence": "Hourly",
            "collectionName": "audits",
            "isActive": True,
            "query": "{ status: 'Open' }",
            "singleFieldUpdateElements": [],
            "arrayObjectFieldUpdateElements": [
                {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": CHECKED},
            ],
        }
    )
    with stack.daemon() as context:
        stack.enable_only(context, "hourly_data_change_schedule")
        missed = _ticks_after(stack.last_tick_time["hourly_data_change_schedule"], "0 * * * *", 5)
        _down_until(stack, context, missed[-1] + timedelta(minutes=20))

        (run,) = stack.runs(context)
        assert run.tags[RUN_STAMP_TAG] == missed[-1].isoformat()
        schedule = stack.schedule(context, "hourly_data_change_schedule")
        ticks = context.instance.get_ticks(schedule.get_remote_origin_id(), schedule.selector_id)
        assert [(tick.timestamp, tick.status) for tick in ticks] == [(missed[-1].timestamp(), TickStatus.SUCCESS)]

        stack.dequeue(context)
        task_arn = context.instance.get_run_by_id(run.run_id).tags["ecs/task_arn"]
        assert stack.fargate.run(task_arn) == 0, stack.task_outputs[task_arn][-3000:]
        assert context.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS

    for audit in db.audits.find({"auditId": {"$gte": 90_000}}):
        (note,) = audit["notes"]
        assert note["text"] == CHECKED and note["date"] == missed[-1]


def test_file_generation_after_missed_ticks_over_a_friday_asks_for_one_run_with_that_fridays_weekly_reports(
    production_stack,
) -> None:
    """The daemon down from the night after one tick until the Saturday after the next Friday: one run, stamped
    (so its files named) for that Saturday, asking for the weekly reports the missed Friday would have made. (That
    run's files and metadata: tests/reports/test_report_schedule.py; every tick's run executing as an ECS task:
    test_deploy_ecs_production.py.)"""
    stack = production_stack
    with stack.daemon() as context:
        instance = context.instance
        stack.enable_only(context, "file_generation_schedule")
        last = stack.tick(context, "file_generation_schedule")
        (first,) = stack.runs(context)
        instance.run_coordinator.cancel_run(first.run_id)  # whatever became of that run, its tick was the last

        after = _ticks_after(last, "0 3 * * *", 8)
        friday = next(tick for tick in after if tick.weekday() == FRIDAY)
        saturday = friday + timedelta(days=1)
        _down_until(stack, context, saturday + timedelta(hours=5))  # back at 08:00, five hours late

        first, catch_up = stack.runs(context)
        assert first.tags[RUN_STAMP_TAG] == last.isoformat()
        assert catch_up.tags[RUN_STAMP_TAG] == saturday.isoformat()
        assert catch_up.tags[MISSED_TICKS_TAG].endswith(friday.isoformat())  # the ticks in between, up to Friday
        assert catch_up.tags[WEEKLY_CATCH_UP_TAG] == friday.isoformat()
        assert catch_up.run_config == {"include_weekly": True}
        stack.dequeue(context)
        assert instance.get_run_by_id(catch_up.run_id).status == DagsterRunStatus.STARTING  # launched as a task


def test_a_dead_cadence_run_holds_the_next_tick_back_only_until_run_monitoring_fails_it(production_stack) -> None:
    stack = production_stack
    with stack.daemon() as context:
        instance = context.instance
        dead, task_arn = stack.launch_first_run(context, "hourly_data_change_schedule")
        assert stack.fargate.run_killed_once_started(task_arn, dead.run_id, instance) == 137

        # Before monitoring has looked, the dead run still counts as going: the tick is skipped.
        stack.tick(context, "hourly_data_change_schedule")
        assert len(stack.runs(context)) == 1
        _monitor(context)
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE

        # The next tick runs: the schedule's skip and the run queue's one-per-cadence slot are free again.
        stack.tick(context, "hourly_data_change_schedule")
        tick_run = stack.runs(context)[-1]
        assert tick_run.run_id != dead.run_id
        stack.dequeue(context)
        tick_task = instance.get_run_by_id(tick_run.run_id).tags["ecs/task_arn"]

        # The dead run's retry, started by the daemon meanwhile, waits for the slot: never two runs of a cadence.
        _retry_failed_runs(context)
        retry = stack.runs(context)[-1]
        assert retry.parent_run_id == dead.run_id
        stack.dequeue(context)
        assert instance.get_run_by_id(retry.run_id).status == DagsterRunStatus.QUEUED

        assert stack.fargate.run(tick_task) == 0, stack.task_outputs[tick_task][-3000:]
        assert instance.get_run_by_id(tick_run.run_id).status == DagsterRunStatus.SUCCESS
        active = _database(stack).dataupdateconfigs.count_documents({"runCadence": "Hourly", "isActive": True})
        applied = {
            key
            for key in _steps(context, tick_run.run_id, DagsterEventType.STEP_SUCCESS)
            if key.startswith("apply_automation[")
        }
        assert len(applied) == active > 0  # every automation of the cadence, in the tick's run
        stack.dequeue(context)
        assert instance.get_run_by_id(retry.run_id).status == DagsterRunStatus.STARTING


def test_a_file_generation_task_killed_mid_upload_is_retried_and_every_report_lands_whole_once(
    production_stack,
) -> None:
    """Run monitoring fails the dead task's run, run retries resume it from failure in a new task: the report that
    was uploading and those not started are written, nothing written twice; the killed upload never became an
    object (its parts wait for the bucket's lifecycle rule, infra_cdk/stacks/storage.py)."""
    stack = production_stack
    db = _database(stack)
    pending = db.audits.find_one({"status": "Pending Review"}, {"_id": 0})
    db.audits.insert_many([{**pending, "auditId": 300_000 + n} for n in range(20_000)])  # a second's upload
    s3 = boto3.client("s3")
    with stack.daemon() as context:
        instance = context.instance
        run, task_arn = stack.launch_first_run(context, "file_generation_schedule")
        stamp = datetime.fromisoformat(run.tags[RUN_STAMP_TAG])
        audit_key = f"GeneratedFiles/DailyAuditInventory_{stamp:%m%d%Y_%H%M%S}.txt"
        visible_at_kill: list[str] = []

        def uploading(_: str) -> bool:
            uploads = s3.list_multipart_uploads(Bucket="intervalprocessing").get("Uploads", [])
            if not any(upload["Key"] == audit_key for upload in uploads):
                return False
            listing = s3.list_objects_v2(Bucket="intervalprocessing", Prefix="GeneratedFiles/")
            visible_at_kill.extend(item["Key"] for item in listing.get("Contents", []))
            return True

        assert stack.fargate.run(task_arn, kill_when=uploading) == 137
        assert audit_key not in visible_at_kill  # an upload in progress is no object

        _monitor(context)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        _retry_failed_runs(context)
        stack.dequeue(context)
        retry = stack.runs(context)[-1]
        assert retry.parent_run_id == run.run_id and retry.tags[RUN_STAMP_TAG] == stamp.isoformat()
        retry_task = instance.get_run_by_id(retry.run_id).tags["ecs/task_arn"]
        assert stack.fargate.run(retry_task) == 0, stack.task_outputs[retry_task][-3000:]
        assert instance.get_run_by_id(retry.run_id).status == DagsterRunStatus.SUCCESS
        finished = _steps(context, run.run_id, DagsterEventType.STEP_SUCCESS)
        rerun = _steps(context, retry.run_id, DagsterEventType.STEP_START)
        assert "daily_audit_inventory" in rerun and not rerun & finished

    bases = ["DailyAuditInventory", "DailyActiveMRRInventory"]
    if stamp.weekday() == FRIDAY:
        bases += ["WeeklyAuditInventory", "WeeklyMRRInventory"]
    listing = s3.list_objects_v2(Bucket="intervalprocessing", Prefix="GeneratedFiles/")["Contents"]
    assert sorted(item["Key"] for item in listing) == sorted(
        f"GeneratedFiles/{base}_{stamp:%m%d%Y_%H%M%S}.txt" for base in bases
    )
    for item in listing:
        (record,) = db[GENERATED_FILES_COLLECTION].find({"bucket": "intervalprocessing", "location": item["Key"]})
        body = s3.get_object(Bucket="intervalprocessing", Key=item["Key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == record["sha256"] and body.count(b"\n") == record["rows"] + 1
    uploads = s3.list_multipart_uploads(Bucket="intervalprocessing").get("Uploads", [])
    assert audit_key in {upload["Key"] for upload in uploads}  # the killed one, never completed
