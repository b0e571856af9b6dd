"""The config checks reach a person: ``check_failure_alert_sensor`` against moto SNS (read back through an SQS
subscription), ticked as the daemon ticks it, over real runs of ``config_checks_job`` on SecantusDB; and the run a
failed check turns red, seen from the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RepositoryDefinition,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.instance.ref import InstanceRef
from pymongo.database import Database

from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.oncall.resources import AlertChannel, SnsAlertChannel
from intervalprocessing_dagster.oncall.sensors import check_failure_alert_sensor
from intervalprocessing_dagster.settings import Settings
from tests.local_project import WAIT_FOR_CONSOLE_MIRROR, execute_job, new_project, user_env
from tests.oncall.test_alerting import Daemon, received

NOTHING_TO_UPDATE = "singleFieldUpdateElements/arrayObjectFieldUpdateElements: both are empty: nothing to update"
BROKEN_ONE = f"- 'Broken one': {NOTHING_TO_UPDATE}"


def broken(name: str, **fields: Any) -> dict[str, Any]:
    """An active hourly automation that cannot run: it updates nothing (or whatever ``fields`` break instead)."""
    return {
        "name": name,
        "runCadence": "Hourly",
        "collectionName": "audits",
        "query": "{ status: 'Open' }",
        "isActive": True,
        "singleFieldUpdateElements": [],
        "arrayObjectFieldUpdateElements": [],
        **fields,
    }


class ChecksDaemon:
    """The sensor daemon's part for the check sensor: evaluate it with the code location's repository, keep its
    cursor between ticks."""

    def __init__(self, instance: DagsterInstance, alerts: AlertChannel, repository: RepositoryDefinition) -> None:
        self.instance, self.alerts, self.repository, self.cursor = instance, alerts, repository, None

    def tick(self) -> None:
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            repository_def=self.repository,
            resources={"alerts": self.alerts},
        )
        self.cursor = check_failure_alert_sensor.evaluate_tick(context).cursor


@pytest.fixture()
def demo_db(mongo_uri: str, mongo_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The demo data, with the code location's resources pointed at it (as the run worker reads them)."""
    seed_demo_data(mongo_db)
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", mongo_db.name)
    yield mongo_db


def test_a_failed_config_check_is_one_alert_per_new_failure_and_one_when_fixed(
    topic: tuple[str, str],
    demo_db: Database,
    capfd: pytest.CaptureFixture[str],  # noqa: F811 - the fixture above
) -> None:
    """The check runs here are a person's (execute_in_process, no schedule tag): a failed check alerts all the
    same."""
    topic_arn, queue_url = topic
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_job_def("config_checks_job")
    alerts = SnsAlertChannel(topic_arn=topic_arn, webserver_url="https://dagster.example.com")
    with instance_for_test() as instance:
        checks = ChecksDaemon(instance, alerts, defs.get_repository_def())
        runs = Daemon(instance, alerts)  # run_failure_alert_sensor, ticking beside it
        runs.tick()

        def check_run() -> str:
            """config_checks_job, then a tick of both sensors; the run's status."""
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            checks.tick()
            runs.tick()
            return instance.get_run_by_id(result.run_id).status.value

        checks.tick()  # nothing evaluated yet
        assert check_run() == "SUCCESS"
        assert received(queue_url) == []

        demo = demo_db.dataupdateconfigs.count_documents({})
        demo_db.dataupdateconfigs.insert_one(broken("Broken one"))
        assert check_run() == "FAILURE"  # failed at ERROR: the run is red too
        (alert,) = received(queue_url)  # one alert, from the check sensor; none for the red run
        assert alert["Subject"] == "IntervalProcessing: check automations_are_valid failed (ERROR)"
        assert alert["MessageAttributes"]["check"]["Value"] == "dataupdateconfigs:automations_are_valid"
        run_id = alert["MessageAttributes"]["run_id"]["Value"]
        assert alert["Message"] == "\n".join(
            [
                "Check: automations_are_valid on dataupdateconfigs",
                f"Run: {run_id}",
                f"Link: https://dagster.example.com/runs/{run_id}",
                "Result: failed (ERROR)",
                f"1 of {demo + 1} automation(s) in dataupdateconfigs are invalid:",
                BROKEN_ONE,
            ]
        )

        for _ in range(2):  # still red an hour later, and the next: nothing new to tell
            assert check_run() == "FAILURE"
        assert received(queue_url) == []

        # A second broken document (its query's error runs over three lines: message, the query, a caret).
        demo_db.dataupdateconfigs.insert_one(broken("Broken two", query="{ status: "))
        assert check_run() == "FAILURE"
        (alert,) = received(queue_url)  # the second broken document is news; the first is listed, not new
        listing, news = alert["Message"].split("\nNew since the last alert (1):\n")
        assert listing.endswith(
            f"2 of {demo + 2} automation(s) in dataupdateconfigs are invalid:\n{BROKEN_ONE}\n" + news
        )
        assert news.startswith("- 'Broken two': query: dataupdateconfigs 'Broken two' field 'query': line 1")
        assert news.endswith(f"^; {NOTHING_TO_UPDATE}") and len(news.splitlines()) == 3

        demo_db.dataupdateconfigs.delete_many({"name": {"$in": ["Broken one", "Broken two"]}})
        assert check_run() == "SUCCESS"
        (alert,) = received(queue_url)
        assert alert["Subject"] == "IntervalProcessing: check automations_are_valid passes again"
        assert alert["Message"].endswith(f"Result: passed\nall {demo} automation(s) are valid")
        # In the sensor's log a recovery is news (INFO); the failures before it were errors.
        logged = capfd.readouterr().err.splitlines()
        assert [line for line in logged if line.endswith("check automations_are_valid passes again")][0].count(
            " - INFO - "
        ) == 1, logged
        failures = [line for line in logged if line.endswith("check automations_are_valid failed (ERROR)")]
        assert failures and all(" - ERROR - " in line for line in failures), logged

        # An inactive broken automation fails the check at WARN: the run stays green, a person still hears once.
        demo_db.dataupdateconfigs.insert_one(broken("Broken one", isActive=False))
        assert check_run() == "SUCCESS"
        assert check_run() == "SUCCESS"
        (alert,) = received(queue_url)
        assert alert["Subject"] == "IntervalProcessing: check automations_are_valid failed (WARN)"
        assert "- 'Broken one' (inactive): singleFieldUpdateElements" in alert["Message"]


def test_a_report_config_check_alerts_and_a_failed_check_fails_the_cli_run(
    mongo_uri: str,
    topic: tuple[str, str],
    demo_db: Database,
    tmp_path: Path,  # noqa: F811 - the fixture above
) -> None:
    """The report side through the same sensor, and the run as an engineer checking a fix by hand sees it."""
    topic_arn, queue_url = topic
    demo_db.storedqueries.delete_one({"name": "dailyAuditInventory"})
    env = {**user_env(mongo_uri, demo_db.name), **WAIT_FOR_CONSOLE_MIRROR}  # the STEP_FAILURE line is a step's
    output = execute_job(new_project(tmp_path / "project"), env, "config_checks_job")
    assert " - RUN_FAILURE - " in output and "resulted in failure" in output, output[-3000:]  # exits non-zero
    # A check failed at ERROR is a finding, not a crash: its message, without Dagster's stack trace.
    assert (
        'STEP_FAILURE - Execution of step "storedqueries_report_queries_are_valid" failed.\n\n'
        "1 blocking asset check failed with ERROR severity:\nstoredqueries: report_queries_are_valid"
    ) in output, output[-3000:]
    assert "Stack Trace:" not in output, output[-3000:]

    home = tmp_path / "project" / ".intervalprocessing" / "dagster_home"
    # The instance the CLI wrote to (the project's dagster.yaml: Dagster's SQLite files under that folder).
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.FAILURE
        (failure,) = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
        assert failure.dagster_event.step_failure_data.error.message.rstrip().endswith(
            "1 blocking asset check failed with ERROR severity:\nstoredqueries: report_queries_are_valid"
        )
        defs = build_definitions(Settings.from_env())
        ChecksDaemon(instance, SnsAlertChannel(topic_arn=topic_arn), defs.get_repository_def()).tick()
    (alert,) = received(queue_url)
    assert alert["Subject"] == "IntervalProcessing: check report_queries_are_valid failed (ERROR)"
    assert "dailyAuditInventory" in alert["Message"]
