"""The four data-change jobs: load a cadence's automations, then apply each one as its own Dagster step.

One mapped ``apply_automation`` step per automation (by name), so a failing automation has its own logs, metadata and
retries and does not stop the others; the steps run in process, one after another in name order. A step applies its
document as it is when the step starts (read again by ``_id``), so "Re-execute → From failure" after a fix runs the
fix. The ``automationruns`` ledger (``ledger.py``) makes each automation apply once per run stamp, and the closing
check (``completeness.py``) fails a run that leaves one without an outcome. One factory builds the four jobs; they
differ only in the ``runCadence`` they load and their tags (``Cadence.run_tags``).

Design and costs: docs/decisions/data-change-steps.md.
"""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from intervalprocessing_dagster.data_change import history
from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.completeness import completeness_check, dry_run_of
from intervalprocessing_dagster.data_change.execute import DocumentWriteErrors, ExecutionResult, execute
from intervalprocessing_dagster.data_change.guard import AutomationGuard, BlastRadiusExceeded
from intervalprocessing_dagster.data_change.journal import ChangeJournal
from intervalprocessing_dagster.data_change.ledger import (
    FAILED,
    LEDGER_COLLECTION,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    WITHDRAWN,
    LedgerEntry,
    LoadedAutomation,
    StampKey,
    claim,
    ensure_ledger_indexes,
    record_loaded,
    write_entry,
)
from intervalprocessing_dagster.data_change.plan import build_plan
from intervalprocessing_dagster.data_change.revert import JOB_NAME as REVERT_JOB_NAME
from intervalprocessing_dagster.data_change.revert import revert_automation_run, undo_launchpad_url
from intervalprocessing_dagster.data_change.rules import (
    CONFIG_COLLECTION,
    InvalidAutomationError,
    automation_label,
    config_hash,
    parse_automation,
)
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.runs.executor import with_run_summary
from intervalprocessing_dagster.runs.run_summary import AUTOMATION_ID, AUTOMATION_NAME, WITHDRAWN_METADATA_KEY

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
    """One config document to apply, as the loader read it; the step reads it again by ``_id`` and validates that
    version (docs/decisions/data-change-steps.md says why)."""

    cadence: Cadence
    label: str
    document: dict[str, Any]

    @property
    def name(self) -> str:
        """The automation's name as stored, or its label when the document has no usable name."""
        return history.automation_name(self.document)


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
        context: OpExecutionContext, mongo: MongoResource, clock: RunClock
    ) -> Iterator[DynamicOutput[AutomationTask]]:
        valid_cadences = [c.value for c in Cadence]
        database = mongo.database()
        try:
            configs = database[CONFIG_COLLECTION]
            documents = list(configs.find({"runCadence": cadence.value}).sort([("name", 1), ("_id", 1)]))
            stray = list(configs.find({"runCadence": {"$nin": valid_cadences}}, {"name": 1, "runCadence": 1}))
            every = list(configs.find({}, {"name": 1, "runCadence": 1, "collectionName": 1, "isActive": 1}))
            # A refused index costs the run history its expiry or a lookup, never the automations their run.
            for warning in ensure_ledger_indexes(database, mongo.history_days):
                context.log.warning(f"the automations run, but {warning}")
        except ConnectionFailure as exc:
            raise _retry_later(context, exc) from exc
        if stray:
            context.log.warning(
                f"these automations never run, their runCadence is not one of {', '.join(valid_cadences)} "
                "(exact spelling): " + "; ".join(f"{automation_label(d)} has {d.get('runCadence')!r}" for d in stray)
            )
        inactive = [d for d in documents if d.get("isActive") is False]
        if inactive:
            context.log.info("skipping inactive automations: " + ", ".join(automation_label(d) for d in inactive))
        active = [d for d in documents if d.get("isActive") is not False]
        context.log.info(f"{len(active)} automation(s) to apply for cadence {cadence.value}")
        # The collection's card in the UI then shows when a run last read it and what it found, and its page links
        # every automation to its history (history.py).
        context.log_event(
            AssetObservation(
                asset_key=CONFIG_COLLECTION,
                metadata={
                    "cadence": cadence.value,
                    "automations": len(documents),
                    "active": len(active),
                    **history.history_links(every),
                },
            )
        )
        keys = mapping_keys([str(d.get("name") or d["_id"]) for d in active])
        tasks = [AutomationTask(cadence, automation_label(document), document) for document in active]
        # Each automation is a partition of the collection it changes: its history in the UI (history.py).
        history.add_automation_partitions(context.instance, [(task.name, task.document) for task in tasks])
        stamp_key = StampKey(cadence.value, clock.stamp(context), dry_run_of(context.run_config))
        try:
            loaded = [LoadedAutomation(key, task.name, task.document) for key, task in zip(keys, tasks, strict=True)]
            record_loaded(database, stamp_key, context.run_id, loaded)
        except ConnectionFailure as exc:
            raise _retry_later(context, exc) from exc
        except PyMongoError as exc:  # the automations still run and record themselves; only the check loses them
            context.log.warning(
                f"the automations run, but the loaded set is not in {LEDGER_COLLECTION}, so a run that ends without "
                f"some of them cannot name them: {exc}"
            )
        for key, task in zip(keys, tasks, strict=True):
            yield DynamicOutput(task, mapping_key=key)

    return load_automations


@op(
    description="Validates one automation, applies it (or, in a dry run, counts it) and records the run.",
    # Nothing downstream reads a value: what the automation did is the output's metadata (the step's matched and
    # modified in the UI, the run summary) and its ledger entry. A Nothing output skips the IO manager,
    # which would otherwise write a pickle per automation (an S3 PUT in production) and log two more events.
    out=Out(Nothing),
)
def apply_automation(
    context: OpExecutionContext,
    config: DataChangeConfig,
    mongo: MongoResource,
    clock: RunClock,
    guard: AutomationGuard,
    task: AutomationTask,
) -> Iterator[AssetObservation | Output[None]]:
    # A failure is also recorded on the automation's partition (its history in the UI: history.py). It is yielded
    # here, before the Failure is raised again, because Dagster drops what an op logged when the op then raises.
    failures: list[AssetObservation] = []
    try:
        output = _apply_automation(context, config, mongo, clock, guard, task, failures)
    except Failure:
        yield from failures
        raise
    yield output


def _apply_automation(
    context: OpExecutionContext,
    config: DataChangeConfig,
    mongo: MongoResource,
    clock: RunClock,
    guard: AutomationGuard,
    task: AutomationTask,
    failures: list[AssetObservation],
) -> Output[None]:
    started_at = datetime.now(UTC)
    key = StampKey(task.cadence.value, clock.stamp(context), config.dry_run)
    database = mongo.database()
    # Which document this is, on the step's output and failure: the run summary and the run-failure alert name it so.
    identity = {AUTOMATION_NAME: task.name, AUTOMATION_ID: str(task.document.get("_id"))}

    def record(
        status: str, result: ExecutionResult | None = None, error: str | None = None, reason: str | None = None
    ) -> LedgerEntry:
        return LedgerEntry(
            key=key,
            run_id=context.run_id,
            mapping_key=context.get_mapping_key() or "",
            automation=task.name,
            config=task.document,
            started_at=started_at,
            status=status,
            attempt=context.retry_number + 1,
            result=result,
            error=error,
            reason=reason,
        )

    def fail(exc: Exception, result: ExecutionResult | None = None) -> Failure:
        try:
            write_entry(database, record(FAILED, result, str(exc)))
        except Exception as record_exc:  # noqa: BLE001 - the automation's own error is the one to report
            context.log.warning(f"could not write the {FAILED} ledger entry: {record_exc}")
        # On the document as this step read it (the loader's copy may be older); apply_automation yields it.
        if not config.dry_run and (event := history.failed(task.name, task.document, key.stamp, str(exc))):
            failures.append(event)
        if isinstance(exc, InvalidAutomationError):  # its message already names the automation and every problem
            return Failure(description=str(exc), metadata={"problems": exc.problems, **identity}, allow_retries=False)
        counts = _counts(result) if result is not None else {}
        return Failure(
            description=f"automation {task.label} failed: {exc}", metadata={**counts, **identity}, allow_retries=False
        )

    def retry_later(exc: ConnectionFailure) -> Exception:
        if context.retry_number >= MAX_RETRIES:
            return fail(exc)
        try:
            write_entry(database, record(RETRYING, error=str(exc)))
        except ConnectionFailure:
            pass  # the server is unreachable; the retry's record will say what happened
        return _retry_later(context, exc)

    # The ledger first: an automation that already succeeded for this stamp (in an earlier run of it, or an earlier
    # try of this step whose end Dagster never heard of) is not applied again.
    try:
        earlier = claim(database, record(RUNNING))
    except ConnectionFailure as exc:
        raise retry_later(exc) from exc
    except PyMongoError as exc:  # applying again is safe (every plan is idempotent for its stamp); say so
        context.log.warning(
            f"{LEDGER_COLLECTION} could not be read, so automation {task.label} is applied without "
            f"checking whether it already was for this stamp: {exc}"
        )
        earlier = None
    if earlier is not None:
        return _already_applied(context, task, key, earlier, identity)

    # The document as it is now, by the _id of the loader's copy (docs/decisions/data-change-steps.md says why). From
    # here on the step, its record and its journal use it; a deleted document keeps the loaded version, for the record.
    try:
        current = database[CONFIG_COLLECTION].find_one({"_id": task.document.get("_id")})
    except ConnectionFailure as exc:
        raise retry_later(exc) from exc
    except PyMongoError as exc:
        raise fail(exc) from exc
    if current is not None:
        task = replace(task, label=automation_label(current), document=current)
        identity = {AUTOMATION_NAME: task.name, AUTOMATION_ID: str(current.get("_id"))}
    withdrawn = _withdrawn_because(current, task.cadence)
    if withdrawn is not None:
        return _withdraw(context, task, key, withdrawn, database, record(WITHDRAWN, reason=withdrawn), identity)

    try:
        automation = parse_automation(task.document)
        plan = build_plan(automation, key.stamp)
        context.log.info(
            f"automation {task.label} on {automation.collection}, stamp {key.stamp.isoformat()}: "
            f"update {json_util.dumps(plan.update)}, array filters {json_util.dumps(plan.array_filters)}, "
            f"extra conditions {json_util.dumps(plan.conditions)}"
        )
        verdict = guard.enforce(database[automation.collection], automation, plan)  # before anything is written
        collection = database[automation.collection]
        deadline = _run_start(context) + task.cadence.work_budget_seconds
        if config.dry_run:  # counts and samples; nothing written, so nothing journaled
            result = execute(
                collection,
                automation.query,
                plan,
                deadline=deadline,
                dry_run=True,
                batch_size=config.batch_size,
                sample_size=config.sample_size,
                log=context.log.info,
            )
        else:
            journal = ChangeJournal.for_step(
                context,
                database,
                automation=automation.name,
                config_id=task.document.get("_id"),
                config_hash=config_hash(task.document),
                stamp=key.stamp,
                history_days=mongo.history_days,
            )
            result = journal.apply(
                collection,
                automation.query,
                plan,
                deadline=deadline,
                batch_size=config.batch_size,
                log=context.log.info,
            )
    # Expected failures: the Failure's description is the whole message, its stack says nothing (and without a cause
    # the console prints the message alone: runs/console_log.py).
    except (InvalidAutomationError, BlastRadiusExceeded) as exc:
        raise fail(exc) from None
    except DocumentWriteErrors as exc:
        raise fail(exc, exc.result) from None
    except ConnectionFailure as exc:
        raise retry_later(exc) from exc
    except Exception as exc:  # noqa: BLE001 - every other error fails this automation only, recorded
        raise fail(exc) from exc

    # Outside the try above: the data is written, so a record that cannot be written must not turn the automation
    # into a failure (or a retry of work already done).
    try:
        write_entry(database, record(SUCCEEDED, result))
    except PyMongoError as exc:
        context.log.warning(
            f"automation {task.label} succeeded, but its {SUCCEEDED} ledger entry was not written: {exc}"
        )

    if not result.dry_run:  # the collection changed, on the automation's own partition: its history in the UI
        context.log_event(
            history.applied(task.name, automation.collection, task.document, key.stamp, result.matched, result.modified)
        )
    metadata: dict[str, Any] = {
        **_counts(result),
        "duration_seconds": round(result.duration_seconds, 3),
        "batches": result.batches,
        "dry_run": result.dry_run,
        "collection": automation.collection,
        "query_kind": "aggregate" if automation.query.is_aggregate else "find",
        **identity,
    }
    if verdict is not None:
        metadata["max_documents"] = verdict.allowed
    if result.dry_run:
        metadata["sample_ids"] = [str(_id) for _id in result.sample_ids]
    return Output(None, metadata=metadata)


def _counts(result: ExecutionResult) -> dict[str, int]:
    """The document counts a step's output or failure carries (the UI's metadata table, the run summary)."""
    return {
        "matched": result.matched,
        "modified": result.modified,
        "retried": result.retried,
        "contended": result.contended,
    }


def _already_applied(
    context: OpExecutionContext,
    task: AutomationTask,
    key: StampKey,
    earlier: dict[str, Any],
    identity: dict[str, str],
) -> Output[None]:
    """The step's result when the ledger says the automation already succeeded for this stamp: nothing applied."""
    context.log.info(
        f"automation {task.label} was already applied for stamp {key.stamp.isoformat()} by run {earlier.get('runId')} "
        f"({earlier.get('matched')} matched, {earlier.get('modified')} modified); not applied again"
    )
    return Output(
        None,
        metadata={
            "already_applied": True,
            "applied_by_run": str(earlier.get("runId")),
            "modified": 0,
            **identity,
        },
    )


def _withdrawn_because(current: dict[str, Any] | None, cadence: Cadence) -> str | None:
    """Why the automation is no longer to run for its cadence, read from its document as it is now (None: it is).

    The loader's own rules (only active documents of the cadence are loaded), applied again to a document changed
    after it was loaded: deleted, deactivated (``isActive: false``), or given another ``runCadence``."""
    if current is None:
        return f"its document was deleted from {CONFIG_COLLECTION} after it was loaded for this stamp"
    if current.get("isActive") is False:
        return "its document was deactivated (isActive: false) after it was loaded for this stamp"
    if current.get("runCadence") != cadence.value:
        return (
            f"its document's runCadence is now {current.get('runCadence')!r}, no longer {cadence.value!r}, "
            "since it was loaded for this stamp"
        )
    return None


def _withdraw(
    context: OpExecutionContext,
    task: AutomationTask,
    key: StampKey,
    why: str,
    database: Database,
    withdrawn: LedgerEntry,
    identity: dict[str, str],
) -> Output[None]:
    """The step's result when the automation's document no longer selects it for this cadence: nothing applied, the
    ledger's record ``withdrawn`` (terminal: the stamp is complete without it), and a line and metadata saying why."""
    context.log.info(
        f"automation {task.label} is withdrawn from stamp {key.stamp.isoformat()}: {why}; nothing applied, and the "
        f"stamp is complete without it (its {LEDGER_COLLECTION} record says {WITHDRAWN})"
    )
    try:
        write_entry(database, withdrawn)
    except PyMongoError as exc:  # this run still counts it as ended (completeness.py); a later one would say it again
        context.log.warning(
            f"automation {task.label} is withdrawn, but its {WITHDRAWN} ledger entry was not written: {exc}"
        )
    return Output(None, metadata={WITHDRAWN_METADATA_KEY: why, "matched": 0, "modified": 0, **identity})


def _retry_later(context: OpExecutionContext, exc: ConnectionFailure) -> RetryRequested:
    """Dagster tries the step again after ``RETRY_BASE_SECONDS``, then twice that, then four times."""
    wait = RETRY_BASE_SECONDS * 2**context.retry_number
    context.log.warning(f"transient MongoDB error, retrying in {wait:.0f}s: {exc}")
    return RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait)


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
        executor_def=with_run_summary(
            in_process_executor,
            completeness_check(cadence),
            undo=undo_launchpad_url,
            automation_op=apply_automation.name,
        ),
    )
    def data_change_job() -> None:
        load_automations().map(apply_automation)

    return data_change_job


DATA_CHANGE_JOBS: dict[Cadence, JobDefinition] = {cadence: build_data_change_job(cadence) for cadence in Cadence}


@job(
    name=REVERT_JOB_NAME,
    description="Undoes what one run's automations changed (from the change journal), where nothing changed since; "
    "a dry run unless dry_run: false.",
    executor_def=with_run_summary(in_process_executor),  # one step: no process of its own needed
)
def revert_automation_run_job() -> None:
    revert_automation_run()
