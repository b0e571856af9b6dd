"""The ``automations`` family's platform side: one whole cadence run, as a schedule would start it.

Unlike ``platform_calls`` (the data path alone), this runs the real ``hourly_data_change_job`` from the real code
location with ``execute_job`` on a real instance: the one in ``DAGSTER_HOME``, which ``bench.run`` points at a
fresh folder per scenario, with SQLite storage or the Postgres server the benchmark started. So every Dagster cost a
scheduled run pays per automation is inside the timed section: planning the dynamic steps, each step's events in
the event log, its output through the IO manager, its ``automationruns`` record. The job's own executor is used,
so the figure moves with the choice made in ``data_change/jobs.py``.

The code location reads ``MONGODB_URI`` / ``MONGODB_DATABASE`` when it is imported, so ``bench.run`` gives the
scenario's process those variables (and ``DAGSTER_HOME``) in its environment.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dagster import DagsterEventType, DagsterInstance, JobDefinition, execute_job, reconstructable

from bench import dataset
from bench.scenarios import Context, Work
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.definitions import defs
from intervalprocessing_dagster.runs.clock import run_stamp_tags

CADENCE = Cadence(dataset.CADENCE)


def hourly_data_change_job() -> JobDefinition:
    """The job as the code location defines it (resources bound); at module level so it is reconstructable."""
    return defs.get_job_def(CADENCE.job_name)


def mark_automations(context: Context) -> None:
    """Give this scenario's automations its own mark (outside the timed section), so its check counts only its work."""
    context.db.dataupdateconfigs.update_many({}, {"$set": {"singleFieldUpdateElements.0.elementValue": context.mark}})


def cadence_platform(context: Context) -> Work:
    """One run of the cadence on the instance in ``DAGSTER_HOME``, tagged with a tick as the schedule tags it; the
    work is what its automation steps reported. Every run gets its own tick (now): the ``automationruns`` ledger
    skips an automation already applied for a tick, so runs sharing the hour's tick would measure that skip instead
    of the work."""
    tick = datetime.now(UTC)
    with DagsterInstance.get() as instance:
        result = execute_job(reconstructable(hourly_data_change_job), instance=instance, tags=run_stamp_tags(tick))
        events = result.all_events
    modified = 0
    steps = 0
    stored: list[str] = []  # where the loader's outputs (one task per automation) were stored
    for event in events:
        if event.event_type == DagsterEventType.STEP_OUTPUT and event.step_key.startswith("apply_automation["):
            modified += event.event_specific_data.metadata["modified"].value
            steps += 1
        elif event.event_type == DagsterEventType.HANDLED_OUTPUT and "path" in event.event_specific_data.metadata:
            stored.append(str(event.event_specific_data.metadata["path"].value))
    return Work(
        items=modified,
        detail={
            "run_success": result.success,
            "automation_steps": steps,
            "run_id": result.run_id,
            "stored_outputs": len(stored),
            "first_stored_output": stored[0] if stored else None,
        },
    )
