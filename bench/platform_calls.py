"""The platform under test, called directly (no Dagster run): the same functions its ops and assets call.

Calling them directly measures the data path alone; what Dagster adds on top of it (process start, definitions
load, run storage, event log) is measured separately as the overhead figure (``bench.overhead``). This module
imports the platform, and so Dagster, at the top: ``bench.measure`` imports it before the timed section starts, and
only in the processes of platform scenarios, so the baselines' processes never pay for it.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime

import pymongo

from bench import dataset
from bench.scenarios import Context, Work
from intervalprocessing_dagster.data_change.execute import execute
from intervalprocessing_dagster.data_change.journal import ChangeJournal
from intervalprocessing_dagster.data_change.plan import build_plan
from intervalprocessing_dagster.data_change.rules import config_hash, parse_automation
from intervalprocessing_dagster.reports.config import load_process
from intervalprocessing_dagster.reports.delivery import LocalReportStore, ReportStore, S3ReportStore
from intervalprocessing_dagster.reports.generate import generate_report

STAMP = datetime(2024, 3, 15, 3, 0, tzinfo=UTC)
"""The run stamp (a Friday, so the weekly report is due); fixed so file names and pushed dates never vary."""

DEADLINE_SECONDS = 24 * 3600
"""Generous on purpose: the benchmark measures throughput, not the cadence's time budget."""


def find_platform(context: Context) -> Work:
    return _apply(context, "find")


def aggregate_platform(context: Context) -> Work:
    return _apply(context, "aggregate")


def journal_platform(context: Context) -> Work:
    """The find-based automation as a cadence step applies it: every change journaled (``data_change/journal.py``)."""
    return _apply(context, "find", journaled=True)


def journal_contended(context: Context) -> Work:
    """``journal_platform`` while another client keeps changing the field it sets, on the matching documents it has
    not written yet: what reading and writing again the documents changed between read and write costs."""
    with _Writer(context) as writer:
        work = journal_platform(context)
    return Work(items=work.items, detail={**work.detail, "writer_updates": writer.updates})


def report_local_platform(context: Context) -> Work:
    return _report(context, LocalReportStore(directory=str(context.out_dir)))


def report_s3_platform(context: Context) -> Work:
    return _report(context, S3ReportStore(bucket=context.bucket, prefix=f"bench/{context.mark}/"))


def _apply(context: Context, kind: str, *, journaled: bool = False) -> Work:
    """Parse the config document, plan the update, execute it: the per-automation path of a cadence job (with the
    change journal, as the job runs it, when ``journaled``; the ``find`` and ``aggregate`` families measure the
    write alone, as they did before the journal existed)."""
    document = dataset.automation(kind, context.mark)
    automation = parse_automation(document)
    plan = build_plan(automation, STAMP)
    journal = None
    if journaled:
        run_id = f"bench-{context.mark}"
        journal = ChangeJournal(
            context.db,
            run_id=run_id,
            root_run_id=run_id,
            stamp=STAMP,
            automation=automation.name,
            config_id=automation.name,
            config_hash=config_hash(document),
            history_days=90,
        )
    collection, deadline = context.db[automation.collection], time.time() + DEADLINE_SECONDS
    if journal is None:
        result = execute(collection, automation.query, plan, deadline=deadline)
    else:
        result = journal.apply(
            collection, automation.query, plan, deadline=deadline, batch_size=1000, log=lambda _message: None
        )
    return Work(
        items=result.modified,
        detail={
            "matched": result.matched,
            "batches": result.batches,
            "retried": result.retried,
            "contended": result.contended,
        },
    )


class _Writer:
    """A thread with its own client that sets ``MARK_FIELD`` to a value of its own on random matching documents
    the automation has not marked yet (it never touches a marked one, so every document still ends up marked)."""

    def __init__(self, context: Context) -> None:
        automation = parse_automation(dataset.automation("find", context.mark))
        self.collection = context.db[automation.collection]
        self.ids = [doc["_id"] for doc in self.collection.find(automation.query.filter, {"_id": 1})]
        self.client = pymongo.MongoClient(*context.db.client.address)
        self.mine = self.client[context.db.name][automation.collection]
        self.mark = context.mark
        self.stop = threading.Event()
        self.updates = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()

    def _run(self) -> None:
        rng = random.Random(0)
        while not self.stop.is_set() and self.ids:
            self.mine.update_one(
                {"_id": rng.choice(self.ids), dataset.MARK_FIELD: {"$ne": self.mark}},
                {"$set": {dataset.MARK_FIELD: f"app {self.updates}"}},
            )
            self.updates += 1


def _report(context: Context, store: ReportStore) -> Work:
    """Config → query → cursor → render → deliver → ``generatedfiles`` record: one report asset's work."""
    report = generate_report(context.db, store, load_process(context.db, dataset.REPORT_PROCESS), STAMP)
    stored = report.stored
    output = stored.location if stored.bucket is None else f"s3://{stored.bucket}/{stored.location}"
    return Work(
        items=report.rows,
        bytes=report.size,
        output=output,
        detail={"sanitized_values": report.sanitized_values, "rows_without_join": report.rows_without_join},
    )
