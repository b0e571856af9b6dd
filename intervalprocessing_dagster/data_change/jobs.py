"""The four data-change jobs: load a cadence's automations, then apply each one as its own Dagster step.

The old app ran a cadence's automations one after another inside one process, and the first exception ended them
all (spec §3.4, §5.6). Here the loader yields one dynamic output per automation, keyed by its name, and
``apply_automation`` is mapped over them: each automation is a step in the UI with its own logs, metadata (matched,
modified, duration) and retries, a failing one does not stop the others, and the run fails at the end listing the
failed steps, i.e. the automations, by name. Every attempt is also written to ``automationruns`` (``record.py``).

The steps run in the run worker's own process (``in_process_executor``), one after another in the loader's order
(by name). Dagster's default executor starts a fresh Python process per step, which imports Dagster and this
package again: about 1.3 s per automation, against tens of milliseconds of database work (bench/README.md compares
the options). Sequential is also the old app's order, so automations that touch the same collection still apply
in name order. What it costs: a crash or memory blow-up of one automation ends the run's process, and so the run;
the daemon's run retry then resumes from failure in a new task, loading the finished steps' outputs through the
IO manager (S3 in production), and an automation that had applied before the crash is safe to apply again because
every plan is idempotent for its run stamp. A step waiting out a ``RetryRequested`` does not hold up the others:
the executor runs every other ready step and sleeps only when none is left.

One factory builds the four jobs; they differ only in which ``runCadence`` they load and in their tags
(``Cadence.run_tags``: the runtime limit and the one-at-a-time concurrency key).
"""


import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import json_util
from dagster import (
    AssetObservation,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    JobDefinition,
    Nothing,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    RetryRequested,
    in_process_executor,
    job,
    op,
)
from pydantic import Field
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.execute import DocumentWriteErrors, ExecutionResult, execute
from intervalprocessing_dagster.data_change.plan import build_plan
from intervalprocessing_dagster.data_change.record import (
    FAILED,
    RETRYING,
    RUNS_COLLECTION,
    SUCCEEDED,
    RunRecord,
    ensure_run_record_index,
    write_run_record,
)
from intervalprocessing_dagster.data_change.rules import (
    CONFIG_COLLECTION,
    InvalidAutomationError,
    automation_label,
    parse_automation,
)
from intervalprocessing_dagster.mongo.resource import MongoResource
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.oncall.alerting import AUTOMATION_ID, AUTOMATION_NAME
from intervalprocessing_dagster.oncall.run_summary import with_run_summary

# Transient connection errors (AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError are all ConnectionFailure)
# are retried this many times, waiting RETRY_BASE_SECONDS, then twice that, then four times.
MAX_RETRIES = 3
RETRY_BASE_SECONDS = 10.0


class DataChangeConfig(Config):
    """Run config of ``apply_automation`` (``ops: {apply_automation: {config: {dry_run: true}}}``)."""

    dry_run: bool = Field(default=False, description="Count and sample what would change; write nothing.")
    batch_size: int = Field(
        default=1000, ge=1, description="Documents per write batch for aggregate-query automations."
    )
    sample_size: int = Field(default=5, ge=0, description="How many _id values a dry run shows.")


@dataclass(frozen=True)
class AutomationTask:
    """One config document to apply, as the loader read it (validation happens in the automation's own step)."""

    cadence: Cadence
    label: str
    document: dict[str, Any]

    @property
    def name(self) -> str:
        """The automation's name as stored, or its label when the document has no usable name."""
        name = self.document.get("name")
        return name if isinstance(name, str) and name.strip() else self.label


def mapping_keys(labels: list[str]) -> list[str]:
    """Step keys for automation names: Dagster allows only ``[A-Za-z0-9_]``, and two names may sanitize alike."""
    keys: list[str] = []
    for label in labels:
        base = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:60] or "automation"
        key, number = base, 2
        while key in keys:
            key, number = f"{base}_{number}", number + 1
        keys.append(key)
    return keys


def _load_op(cadence: Cadence) -> OpDefinition:
    @op(
        name=f"load_{cadence.key}_automations",
        out=DynamicOut(AutomationTask),
        description=f"Reads the runCadence '{cadence.value}' documents of {CONFIG_COLLECTION}; one output per active "
        "automation.",
    )
    def load_automations(
        context: OpExecutionContext, mongo: MongoResource
    ) -> Iterator[DynamicOutput[AutomationTask]]:
        valid_cadences = [c.value for c in Cadence]
        database = mongo.database()
        try:
            configs = database[CONFIG_COLLECTION]
            documents = list(configs.find({"runCadence": cadence.value}).sort([("name", 1), ("_id", 1)]))
            stray = list(configs.find({"runCadence": {"$nin": valid_cadences}}, {"name": 1, "runCadence": 1}))
            try:
                ensure_run_record_index(database)
            except OperationFailure as exc:  # the server refused it: the run log matters less than the automations
                context.log.warning(f"the automations run, but {RUNS_COLLECTION} has no unique run index: {exc}")
        except ConnectionFailure as exc:
            wait = RETRY_BASE_SECONDS * 2**context.retry_number
            raise RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc
        if stray:
            context.log.warning(
                f"these automations never run, their runCadence is not one of {', '.join(valid_cadences)} "
                "(exact spelling): "
                + "; ".join(f"{automation_label(d)} has {d.get('runCadence')!r}" for d in stray)
            )
        inactive = [d for d in documents if d.get("isActive") is False]
        if inactive:
            context.log.info("skipping inactive automations: " + ", ".join(automation_label(d) for d in inactive))
        active = [d for d in documents if d.get("isActive") is not False]
        context.log.info(f"{len(active)} automation(s) to apply for cadence {cadence.value}")
        # The collection's card in the UI then shows when a run last read it and what it found.
        context.log_event(AssetObservation(asset_key=CONFIG_COLLECTION, metadata={
            "cadence": cadence.value, "automations": len(documents), "active": len(active),
        }))
        keys = mapping_keys([str(d.get("name") or d["_id"]) for d in active])
        for key, document in zip(keys, active, strict=True):
            yield DynamicOutput(AutomationTask(cadence, automation_label(document), document), mapping_key=key)

    return load_automations


@op(
    description="Validates one automation, applies it (or, in a dry run, counts it) and records the run.",
    # Nothing downstream reads a value: what the automation did is the output's metadata (the step's matched and
    # modified in the UI, the run summary) and its automationruns record. A Nothing output skips the IO manager,
    # which would otherwise write a pickle per automation (an S3 PUT in production) and log two more events.
    out=Out(Nothing),
)
def apply_automation(
    context: OpExecutionContext, config: DataChangeConfig, mongo: MongoResource, clock: RunClock, task: AutomationTask
) -> Output[None]:
    started_at = datetime.now(UTC)
    stamp = clock.stamp(context)
    database = mongo.database()

    def record(status: str, result: ExecutionResult | None = None, error: str | None = None) -> None:
        write_run_record(
            database,
            RunRecord(
                run_id=context.run_id, mapping_key=context.get_mapping_key() or "", automation=task.name,
                config_id=task.document.get("_id"), cadence=task.cadence.value,
                stamp=stamp, started_at=started_at, status=status, dry_run=config.dry_run,
                attempt=context.retry_number + 1, result=result, error=error,
            ),
        )

    def fail(exc: Exception, result: ExecutionResult | None = None) -> Failure:
        try:
            record(FAILED, result, str(exc))
        except Exception as record_exc:  # noqa: BLE001 - the automation's own error is the one to report
            context.log.warning(f"could not write the {FAILED} run record: {record_exc}")
        # Which document failed, for the run-failure alert (oncall/alerting.py) and the step's page.
        document = {AUTOMATION_NAME: task.name, AUTOMATION_ID: str(task.document.get("_id"))}
        if isinstance(exc, InvalidAutomationError):  # its message already names the automation and every problem
            return Failure(description=str(exc), metadata={**document, "problems": exc.problems}, allow_retries=False)
        return Failure(description=f"automation {task.label} failed: {exc}", metadata=document, allow_retries=False)

    try:
        automation = parse_automation(task.document)
        plan = build_plan(automation, stamp)
        context.log.info(
            f"automation {task.label} on {automation.collection}, stamp {stamp.isoformat()}: "
            f"update {json_util.dumps(plan.update)}, array filters {json_util.dumps(plan.array_filters)}, "
            f"extra conditions {json_util.dumps(plan.conditions)}"
        )
        result = execute(
            database[automation.collection], automation.query, plan,
            deadline=_run_start(context) + task.cadence.work_budget_seconds, dry_run=config.dry_run,
            batch_size=config.batch_size, sample_size=config.sample_size, log=context.log.info,
        )
    except InvalidAutomationError as exc:  # the Failure's description is its whole message; its stack says nothing
        raise fail(exc) from None
    except DocumentWriteErrors as exc:
        raise fail(exc, exc.result) from exc
    except ConnectionFailure as exc:
        if context.retry_number >= MAX_RETRIES:
            raise fail(exc) from exc
        wait = RETRY_BASE_SECONDS * 2**context.retry_number
        context.log.warning(f"transient MongoDB error, retrying in {wait:.0f}s: {exc}")
        try:
            record(RETRYING, error=str(exc))
        except ConnectionFailure:
            pass  # the server is unreachable; the retry's record will say what happened
        raise RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc
    except Exception as exc:  # noqa: BLE001 - every other error fails this automation only, recorded
        raise fail(exc) from exc

    # Outside the try above: the data is written, so a record that cannot be written must not turn the automation
    # into a failure (or a retry of work already done).
    try:
        record(SUCCEEDED, result)
    except PyMongoError as exc:
        context.log.warning(f"automation {task.label} succeeded, but its {SUCCEEDED} run record was not written: {exc}")

    if not result.dry_run:  # the collection's own history: the UI plots modified counts per collection over time
        context.log_event(AssetObservation(asset_key=automation.collection, metadata={
            "automation": automation.name, "matched": result.matched, "modified": result.modified,
        }))
    metadata: dict[str, Any] = {
        "matched": result.matched,
        "modified": result.modified,
        "duration_seconds": round(result.duration_seconds, 3),
        "batches": result.batches,
        "dry_run": result.dry_run,
        "collection": automation.collection,
        "query_kind": "aggregate" if automation.query.is_aggregate else "find",
    }
    if result.dry_run:
        metadata["sample_ids"] = [str(_id) for _id in result.sample_ids]
    return Output(None, metadata=metadata)


def _run_start(context: OpExecutionContext) -> float:
    """When the run started (a ``time.time()`` value): the work budget counts from there, retries included.

    Read from the instance once per run and process, not per step: every step of a run runs in the same process
    (in-process executor), and a run's start time never changes once set. Per step it cost a run-storage query
    (about 7 ms on SQLite), seconds over a cadence of hundreds of automations. One entry is kept: a process runs
    one run at a time.
    """
    global _last_run_start
    if _last_run_start is not None and _last_run_start[0] == context.run_id:
        return _last_run_start[1]
    run_record = context.instance.get_run_record_by_id(context.run_id)
    if run_record is None or run_record.start_time is None:
        return time.time()
    _last_run_start = (context.run_id, run_record.start_time)
    return run_record.start_time


_last_run_start: tuple[str, float] | None = None


def build_data_change_job(cadence: Cadence) -> JobDefinition:
    """The job for ``cadence``: load its automations, apply each as its own step."""
    load_automations = _load_op(cadence)

    @job(
        name=cadence.job_name,
        tags=cadence.run_tags,
        description=f"Applies the active '{cadence.value}' automations of {CONFIG_COLLECTION} (the old "
        f"{cadence.process_to_run}), one step per automation.",
        executor_def=with_run_summary(in_process_executor),
    )
    def data_change_job() -> None:
        load_automations().map(apply_automation)

    return data_change_job


DATA_CHANGE_JOBS: dict[Cadence, JobDefinition] = {cadence: build_data_change_job(cadence) for cadence in Cadence}

# The old ECS tasks' processToRun values, for the compatibility entry point.
PROCESS_TO_RUN_JOBS: dict[str, JobDefinition] = {
    cadence.process_to_run: DATA_CHANGE_JOBS[cadence] for cadence in Cadence
}
