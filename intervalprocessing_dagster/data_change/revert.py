"""``revert_automation_run_job``: put back what one run's automations changed, from the change journal.

Instead of a point-in-time restore of the whole cluster, the job restores each value journaled in
``automationchanges`` (``journal.py``) for the run's group (the run, its retries and re-executions: one stamp), newest
page first, only where the document still holds what the automation wrote; others are reported as conflicts. A dry
run (the default) writes nothing; a real revert is journaled too, so it can be reverted. ``run_id`` may be a prefix of
at least ``MIN_RUN_ID_PREFIX`` characters, as the UI shows. Design: docs/decisions/revert-from-the-journal.md; the
walk-through: docs/runbook.md "Undo an automation run".
"""

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS
from dagster import (
    Config,
    DagsterRunNotFoundError,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunsFilter,
    op,
)
from pydantic import Field
from pymongo.database import Database

from intervalprocessing_dagster.data_change.changes import (
    ALREADY,
    RESTORE,
    change_from_document,
    projection_of,
    restore_document,
)
from intervalprocessing_dagster.data_change.journal import (
    JOURNAL_COLLECTION,
    WRITING,
    ChangeJournal,
    PlannedWrite,
    read_documents,
    resolve_page,
)
from intervalprocessing_dagster.instance.run_origin import CODE_LOCATION_NAME
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.runs.run_summary import SUMMARY_METADATA_KEY
from intervalprocessing_dagster.runs.tags import LAUNCHED_BY_TAG

JOB_NAME = "revert_automation_run_job"
OP_NAME = "revert_automation_run"
# The UI shows the first 8 characters of a run id; fewer would often name several runs.
MIN_RUN_ID_PREFIX = 8
# Conflicts named per log line (a revert may find thousands; each is named, in lines of this many).
_CONFLICTS_PER_LINE = 20


class RevertConfig(Config):
    """Run config of ``revert_automation_run``."""

    run_id: str = Field(
        description="Id of the run whose changes to undo (any run of its group: the run, a retry or "
        "a re-execution; all of them are undone together). The whole id or its first "
        f"{MIN_RUN_ID_PREFIX} characters or more, as the UI shows them."
    )
    automations: list[str] = Field(
        default_factory=list, description="Names of the automations to undo; empty: every one the run changed."
    )
    dry_run: bool = Field(default=True, description="Only count and show what would be restored; write nothing.")
    sample_size: int = Field(default=3, ge=0, description="Documents shown per automation, values now and after.")


@dataclass
class AutomationRevert:
    """One automation's part of a revert: documents it journaled, and what became of each."""

    journaled: int = 0
    restored: int = 0
    already: int = 0
    conflicts: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self, dry_run: bool) -> dict[str, Any]:
        return {
            "journaled": self.journaled,
            "would restore" if dry_run else "restored": self.restored,
            "already as before": self.already,
            "conflicts": self.conflicts,
        }


def revert_run(
    database: Database,
    root_run_id: str,
    automations: list[str],
    *,
    dry_run: bool,
    journal_for: Callable[[Mapping[str, Any]], ChangeJournal],
    sample_size: int,
    log: Callable[[str], None],
) -> dict[str, AutomationRevert]:
    """Undo (or, in a dry run, classify) the journaled changes of the run group ``root_run_id``, newest page first;
    ``journal_for(page)`` journals the restoring writes of one page's automation."""
    pages = database[JOURNAL_COLLECTION]
    selection: dict[str, Any] = {"rootRunId": root_run_id}
    if automations:
        selection["automation"] = {"$in": automations}
    if not dry_run:  # pages a died attempt left in doubt are settled first, by reading their documents back
        for page in pages.find({**selection, "state": WRITING}):
            resolve_page(database, page)
    reports: dict[str, AutomationRevert] = {}
    for page in pages.find(selection, sort=[("_id", -1)], batch_size=1):
        report = reports.setdefault(page["automation"], AutomationRevert())
        conflicts = _revert_page(
            database, page, report, dry_run=dry_run, journal_for=journal_for, sample_size=sample_size
        )
        report.conflicts += len(conflicts)
        for line in _lines(conflicts):
            log(f"conflicts, left as they are ({page['automation']}, {page['collection']}): {line}")
    return reports


def _revert_page(
    database: Database,
    page: Mapping[str, Any],
    report: AutomationRevert,
    *,
    dry_run: bool,
    journal_for: Callable[[Mapping[str, Any]], ChangeJournal],
    sample_size: int,
) -> list[str]:
    """Undo one page; the conflicts found, each naming its document and why."""
    collection = database[page["collection"]]
    conflicts: list[str] = []
    changes: dict[Any, list[Any]] = {}
    for entry in page["documents"]:
        report.journaled += 1
        if entry.get("unconfirmed"):
            conflicts.append(
                f"_id {entry['_id']}: it changed while the automation wrote it, so the journal cannot "
                "say whether the automation's value is the one it holds"
            )
        else:
            changes[entry["_id"]] = [change_from_document(change) for change in entry["changes"]]
    paths = [change.path for listed in changes.values() for change in listed]
    current = {doc["_id"]: doc for doc in read_documents(collection, list(changes), projection_of(paths), [])}
    writes: list[PlannedWrite] = []
    for document_id, recorded in changes.items():
        document = current.get(document_id)
        if document is None:
            conflicts.append(f"_id {document_id}: the document no longer exists")
            continue
        restoration = restore_document(recorded, document)
        if restoration.state == RESTORE:
            writes.append(PlannedWrite(document_id, restoration.changes, restoration.update, [], restoration.pins))
            if len(report.samples) < sample_size:
                report.samples.append(
                    {"_id": document_id, "now and after": [c.to_document() for c in restoration.changes]}
                )
        elif restoration.state == ALREADY:
            report.already += 1
        else:
            conflicts.append(f"_id {document_id}: {restoration.reason}")
    if dry_run:
        report.restored += len(writes)
        return conflicts
    outcome = journal_for(page).write(collection, writes, [])
    report.restored += outcome.written
    conflicts += [f"_id {document_id}: {reason}" for document_id, reason in outcome.refused]
    conflicts += [f"_id {document_id}: it changed while being restored" for document_id in outcome.skipped]
    if outcome.unconfirmed:
        conflicts.append(
            f"{len(outcome.unconfirmed)} document(s) changed as they were restored; their restoration is "
            "journaled, flagged unconfirmed"
        )
    return conflicts


def _lines(items: list[str]) -> Iterator[str]:
    for start in range(0, len(items), _CONFLICTS_PER_LINE):
        yield "; ".join(items[start : start + _CONFLICTS_PER_LINE])


@op(
    name=OP_NAME,
    out=Out(Nothing),
    description="Restores what a run's automations changed, from the change journal, where nothing changed since "
    "(a dry run by default).",
)
def revert_automation_run(
    context: OpExecutionContext, config: RevertConfig, mongo: MongoResource, clock: RunClock
) -> Output[None]:
    database = mongo.database()
    run_id = _full_run_id(context, database, config.run_id)
    root_run_id = _run_group_root(context, database, run_id)
    stamp = clock.stamp(context)
    if not config.dry_run and (context.retry_number > 0 or context.run.parent_run_id is not None):
        # This revert's own earlier attempt may have left a page in doubt: settle it before reading the state.
        for page in database[JOURNAL_COLLECTION].find(
            {"rootRunId": context.run.root_run_id or context.run_id, "state": WRITING}
        ):
            resolve_page(database, page)
    known = database[JOURNAL_COLLECTION].distinct("automation", {"rootRunId": root_run_id})
    unknown = sorted(set(config.automations) - set(known))
    if unknown:
        raise _not_reverted(
            f"run {run_id} journaled no change for {', '.join(map(repr, unknown))}; it journaled changes for: "
            + (", ".join(map(repr, sorted(known))) or "no automation (it changed nothing, or its journal expired)")
        )

    def journal_for(page: Mapping[str, Any]) -> ChangeJournal:
        return ChangeJournal.for_step(
            context,
            database,
            automation=page["automation"],
            config_id=page["configId"],
            config_hash=page["configHash"],
            stamp=stamp,
            history_days=mongo.history_days,
            revert_of=root_run_id,
        )

    reports = revert_run(
        database,
        root_run_id,
        config.automations,
        dry_run=config.dry_run,
        journal_for=journal_for,
        sample_size=config.sample_size,
        log=context.log.warning,
    )
    totals = AutomationRevert(
        journaled=sum(r.journaled for r in reports.values()),
        restored=sum(r.restored for r in reports.values()),
        already=sum(r.already for r in reports.values()),
        conflicts=sum(r.conflicts for r in reports.values()),
    )
    verb = "would restore" if config.dry_run else "restored"
    launched_by = context.run.tags.get(LAUNCHED_BY_TAG)
    summary = (
        f"Revert of run group {root_run_id}{' (dry run: nothing written)' if config.dry_run else ''}"
        f"{f', launched by {launched_by}' if launched_by else ''}: "
        f"{totals.journaled} journaled document(s), {verb} {totals.restored}, {totals.already} already as before, "
        f"{totals.conflicts} conflict(s)"
    )
    context.log.info(summary)
    metadata: dict[str, Any] = {
        "reverted_run_group": root_run_id,
        "dry_run": config.dry_run,
        **totals.metadata(config.dry_run),
        SUMMARY_METADATA_KEY: summary,  # also the run's closing "Run summary" line
        "by_automation": MetadataValue.md(_table(reports, config.dry_run)),
    }
    for name, report in reports.items():
        if report.samples:
            metadata[f"sample: {name}"] = MetadataValue.json(
                json.loads(json_util.dumps(report.samples, json_options=RELAXED_JSON_OPTIONS))
            )
    return Output(None, metadata=metadata)


def _not_reverted(reason: str) -> Failure:
    """The step's failure when the revert cannot start: ``reason`` alone (an expected refusal, no stack trace), and
    as the run's summary (``run_summary.py``), so the run says what it did not do."""
    return Failure(
        description=reason, metadata={SUMMARY_METADATA_KEY: f"revert not done: {reason}"}, allow_retries=False
    )


def _full_run_id(context: OpExecutionContext, database: Database, given: str) -> str:
    """The run id ``given`` names: itself if it is a run of this instance or a run group in the journal, else the one
    id of either that starts with it (at least ``MIN_RUN_ID_PREFIX`` characters)."""
    run_id = given.strip().lower()
    journal = database[JOURNAL_COLLECTION]
    if context.instance.has_run(run_id) or journal.find_one({"rootRunId": run_id}, {"_id": 1}) is not None:
        return run_id
    if len(run_id) < MIN_RUN_ID_PREFIX:
        raise _not_reverted(
            f"run id {given!r} is too short: give at least its first {MIN_RUN_ID_PREFIX} characters "
            "(as the UI's run pages and lists show them) or the whole id"
        )
    in_instance = [candidate for candidate in context.instance.get_run_ids() if candidate.startswith(run_id)]
    journaled = journal.distinct("rootRunId", {"rootRunId": {"$regex": f"^{re.escape(run_id)}"}})
    candidates = sorted({*in_instance, *journaled})
    if len(candidates) == 1:
        context.log.info(f"run id {given!r} is run {candidates[0]}")
        return candidates[0]
    if len(candidates) > 1:
        raise _not_reverted(
            f"run id {given!r} is ambiguous: it starts {len(candidates)} runs' ids: "
            + "; ".join(_describe(context, candidate) for candidate in candidates)
            + ". Give more of the id (the run page's address ends with the whole id)"
        )
    return run_id  # no run starts with it: _run_group_root says so


def _describe(context: OpExecutionContext, run_id: str) -> str:
    """``<id> (<job>, <when it was created>)``, or that only the journal knows the run."""
    record = next(iter(context.instance.get_run_records(RunsFilter(run_ids=[run_id]), limit=1)), None)
    if record is None:
        return f"{run_id} (only in the change journal: its Dagster history was deleted)"
    return f"{run_id} ({record.dagster_run.job_name}, {record.create_timestamp:%Y-%m-%d %H:%M} UTC)"


def undo_launchpad_url(run_id: str) -> str:
    """The UI's path to this job's launchpad with a dry run of undoing ``run_id`` filled in.

    Dagster's UI (1.13) opens ``/locations/<location>/jobs/<job>/playground/setup?config=<YAML>`` as a new launchpad
    tab holding that run config (``LaunchpadSetupRoot``, the route behind its own "Open in Launchpad" links), and
    renders a URL metadata value as a link. The path is relative to the UI's address, which the run does not know."""
    config = f"ops:\n  {OP_NAME}:\n    config:\n      run_id: {json.dumps(run_id)}\n      dry_run: true\n"
    return f"/locations/{quote(CODE_LOCATION_NAME)}/jobs/{JOB_NAME}/playground/setup?config={quote(config)}"


def _run_group_root(context: OpExecutionContext, database: Database, run_id: str) -> str:
    """The root run of ``run_id``'s group, once every run of the group has finished."""
    try:
        group = context.instance.get_run_group(run_id)
    except DagsterRunNotFoundError:
        group = None
    if group is None:
        # Not in this instance (its history was deleted, or it ran elsewhere): its id may still be a root the
        # journal knows.
        if database[JOURNAL_COLLECTION].find_one({"rootRunId": run_id}, {"_id": 1}) is None:
            raise _not_reverted(
                f"no run {run_id} in this Dagster instance and no journaled change under that id: "
                "check the run id (the UI's run page shows it)"
            )
        return run_id
    root_run_id, runs = group
    unfinished = [run for run in runs if not run.is_finished]
    if unfinished:
        raise _not_reverted(
            "not reverted: "
            + ", ".join(f"run {run.run_id} is {run.status.value}" for run in unfinished)
            + "; revert once every run of the group has finished"
        )
    return root_run_id


def _table(reports: Mapping[str, AutomationRevert], dry_run: bool) -> str:
    verb = "would restore" if dry_run else "restored"
    rows = [f"| automation | journaled | {verb} | already as before | conflicts |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {name} | {r.journaled} | {r.restored} | {r.already} | {r.conflicts} |" for name, r in reports.items()]
    return "\n".join(rows)
