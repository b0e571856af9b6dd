"""A data-change run task killed mid-cadence on the production path, recovered by the daemon's own run retry and by
the UI's "Re-execute from failure" (GraphQL, as the button sends it): every automation applied once.

The run is launched through ``EcsRunLauncher`` on moto with the real ``deploy/dagster.yaml`` (Postgres storage, the
``RecoveringDagsterInstance``) and executed by the Fargate stand-in (``conftest.py``), which SIGKILLs the worker
once a random number of automations have succeeded; the daemon's run monitoring and run-retry code is driven one
iteration at a time, as in ``test_deploy_ecs_production.py``.
"""

from __future__ import annotations

import os
import random
from datetime import datetime

import pymongo
import pytest
from dagster import DagsterEventType, DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import PARENT_RUN_ID_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from pymongo.database import Database

from tests.deploy.conftest import ProductionStack
from tests.deploy.test_deploy_ecs_production import _monitor, _retry_failed_runs

pytestmark = pytest.mark.system

AUTOMATIONS = 12
SEED = int(os.environ.get("RECOVERY_SEED", random.randrange(10**6)))


def add_automations(db: Database) -> None:
    """``AUTOMATIONS`` hourly automations beside the demo ones, each a Change and a note on its own group."""
    db.audits.insert_many([{"recoveryGroup": g, "flag": "unset", "notes": []} for g in range(AUTOMATIONS)])
    db.dataupdateconfigs.insert_many(
        [
            {
                "name": f"Recovery {g:02d}",
                "runCadence": "Hourly",
                "collectionName": "audits",
                "isActive": True,
                "query": f"{{ recoveryGroup: {g} }}",
                "singleFieldUpdateElements": [
                    {"elementName": "flag", "updateType": "Change", "elementValue": f"{g:02d}"}
                ],
                "arrayObjectFieldUpdateElements": [
                    {"arrayProperty": "notes", "matchingPropertyName": "text", "updateType": "Add", "newValue": "seen"}
                ],
            }
            for g in range(AUTOMATIONS)
        ]
    )


def killed_mid_cadence(stack: ProductionStack, context: WorkspaceProcessContext, db: Database) -> tuple:
    """The hourly tick's run, its task killed (SIGKILL: out of memory, say) once ``k`` automations have succeeded,
    and failed by the daemon's run monitoring; ``(run, tick, k)``. Dagster's own re-execution plan would re-run only
    the automation in progress then, leaving out at least two."""
    run, task_arn = stack.launch_first_run(context, "hourly_data_change_schedule")
    tick = datetime.fromisoformat(run.tags["intervalprocessing/run_stamp"])
    k = random.Random(SEED).randrange(1, AUTOMATIONS - 2)  # so at least two automations never started

    def applied_k(_output: str) -> bool:
        return (
            db.automationruns.count_documents(
                {"stamp": tick, "status": "succeeded", "automation": {"$regex": "^Recovery"}}
            )
            >= k
        )

    assert stack.fargate.run(task_arn, kill_when=applied_k) == 137, stack.task_outputs[task_arn][-3000:]
    _monitor(context)
    failed = context.instance.get_run_by_id(run.run_id)
    assert failed.status == DagsterRunStatus.FAILURE
    return failed, tick, k


def assert_applied_once(db: Database, tick: datetime, where: str) -> None:
    for audit in db.audits.find({"recoveryGroup": {"$exists": True}}):
        assert audit["flag"] == f"{audit['recoveryGroup']:02d}", where
        assert [note["date"] for note in audit["notes"]] == [tick], where
    records = list(db.automationruns.find({"stamp": tick, "automation": {"$regex": "^Recovery"}}))
    assert sorted(r["status"] for r in records) == ["succeeded"] * AUTOMATIONS, where


def retried_by_the_daemon(stack: ProductionStack, context: WorkspaceProcessContext, run: DagsterRun) -> DagsterRun:
    """Run retries, as the daemon's event-log consumer decides and submits them (from failure), then launched."""
    _retry_failed_runs(context)
    stack.dequeue(context)
    retry = stack.runs(context)[-1]
    assert retry.tags[PARENT_RUN_ID_TAG] == run.run_id
    return retry


def re_executed_in_the_ui(stack: ProductionStack, context: WorkspaceProcessContext, run: DagsterRun) -> DagsterRun:
    return stack.reexecute_from_failure_as_the_ui_does(context, run.run_id)


@pytest.mark.parametrize("recover", [retried_by_the_daemon, re_executed_in_the_ui])
def test_a_killed_task_is_recovered_and_every_automation_applied_once(production_stack, recover) -> None:
    stack = production_stack
    db = pymongo.MongoClient(stack.mongo_uri, tz_aware=True)[stack.mongo_database]
    add_automations(db)
    with stack.daemon() as context:
        instance = context.instance
        run, tick, k = killed_mid_cadence(stack, context, db)
        applied = {r["automation"] for r in db.automationruns.find({"stamp": tick, "status": "succeeded"})}

        recovery = recover(stack, context, run)

        task_arn = recovery.tags["ecs/task_arn"]
        assert stack.fargate.run(task_arn) == 0, stack.task_outputs[task_arn][-3000:]
        assert instance.get_run_by_id(recovery.run_id).status == DagsterRunStatus.SUCCESS
        started = {e.step_key for e in instance.all_logs(recovery.run_id, of_type=DagsterEventType.STEP_START)}
    where = f"seed {SEED}: killed after {k} of {AUTOMATIONS} automations, recovered {recover.__name__}"
    left = {f"apply_automation[recovery_{g:02d}]" for g in range(AUTOMATIONS) if f"Recovery {g:02d}" not in applied}
    assert len(left) >= 2 and left <= started, where  # every automation that had not succeeded, none left out
    assert_applied_once(db, tick, where)
