"""Retention of Dagster's own history: a daily job deletes the runs that have outlived their window, with everything
stored for them, and keeps what the product still reads.

Dagster OSS 1.13 deletes no runs or events (dagster-io/dagster#4100, #33785), and the UI slows as they pile up.
Windows: ``RUN_HISTORY_SUCCESS_DAYS`` / ``RUN_HISTORY_FAILURE_DAYS``, never the last ``RUN_HISTORY_KEEP_ALL_DAYS`` or
an unfinished run; a run holding an asset's or check's latest result, or whose re-execution group is still kept,
stays. One run at a time through Dagster's own storage calls, events and files before the run row, for at most
``max_minutes``. What goes and stays, and why not a storage-level purge: docs/decisions/history-retention.md.
"""

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dagster import DagsterInstance, RunRecord, RunsFilter

from intervalprocessing_dagster.history.resources import FAILURE_STATUSES, SUCCESS_STATUSES, RunRetention
from intervalprocessing_dagster.instance.storage import PooledPostgresEventLogStorage, stored_check_keys
from intervalprocessing_dagster.runs.step_outputs import StepOutputStore
from intervalprocessing_dagster.runs.tags import ROOT_RUN_ID_TAG


@dataclass
class PurgeReport:
    """What one pass deleted (or, in a dry run, would have) and what it kept although past its window."""

    deleted_runs: Counter[str] = field(default_factory=Counter)
    kept_latest: set[str] = field(default_factory=set)
    kept_for_group: set[str] = field(default_factory=set)
    deleted_step_outputs: int = 0
    complete: bool = True
    dry_run: bool = False
    vacuum_seconds: float | None = None

    def summary(self) -> str:
        deleted = sum(self.deleted_runs.values())
        statuses = ", ".join(f"{count} {status.lower()}" for status, count in sorted(self.deleted_runs.items()))
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"history retention {verb} {deleted} run(s)"
            + (f" ({statuses})" if statuses else "")
            + f" and {self.deleted_step_outputs} stored step output(s); kept past their window: "
            f"{len(self.kept_latest)} holding an asset's or check's latest event, "
            f"{len(self.kept_for_group)} whose re-execution group is still kept"
        )
        return text if self.complete else text + "; stopped at the time limit, the next run goes on"


def purge_history(
    instance: DagsterInstance,
    retention: RunRetention,
    step_outputs: StepOutputStore,
    *,
    now: float,
    batch_size: int = 100,
    stop_at: float | None = None,
    dry_run: bool = False,
    vacuum: bool = True,
    log: Callable[[str], None] = lambda _message: None,
) -> PurgeReport:
    """Delete every run past its window with what was stored for it, oldest first; then, on Postgres, when runs were
    deleted and ``vacuum`` is on, a plain ``VACUUM`` of the history tables, so the next days' rows reuse the space at
    once (without it the database carries up to a week of dead rows: docs/decisions/history-retention.md).

    ``now`` is a ``time.time()`` value (the windows count back from it); ``stop_at`` a ``time.monotonic()`` value
    after which no further run is started.
    """
    report = PurgeReport(dry_run=dry_run)
    _delete_past_windows(
        instance, retention, step_outputs, report, now=now, batch_size=batch_size, stop_at=stop_at, log=log
    )
    storage = instance.event_log_storage
    if vacuum and report.deleted_runs and not dry_run and isinstance(storage, PooledPostgresEventLogStorage):
        started = time.monotonic()
        storage.vacuum_run_history()
        report.vacuum_seconds = round(time.monotonic() - started, 2)
    return report


def _delete_past_windows(
    instance: DagsterInstance,
    retention: RunRetention,
    step_outputs: StepOutputStore,
    report: PurgeReport,
    *,
    now: float,
    batch_size: int,
    stop_at: float | None,
    log: Callable[[str], None],
) -> None:
    """``purge_history``'s deletions, counted in ``report``; at ``stop_at`` it stops with ``report.complete`` off."""
    dry_run = report.dry_run
    protected = runs_holding_latest_events(instance)
    for statuses in (SUCCESS_STATUSES, FAILURE_STATUSES):
        cutoff = retention.cutoff(statuses[0], now)
        assert cutoff is not None  # finished statuses always have one
        runs_filter = RunsFilter(statuses=list(statuses), updated_before=datetime.fromtimestamp(cutoff, UTC))
        cursor: str | None = None  # the last run read that still exists (a deleted one cannot be a cursor)
        while True:
            records = instance.get_run_records(runs_filter, limit=batch_size, cursor=cursor, ascending=True)
            deleted_before = sum(report.deleted_runs.values())
            groups = _re_execution_groups(instance, records)
            for record in records:
                if stop_at is not None and time.monotonic() >= stop_at:
                    report.complete = False
                    return
                run = record.dagster_run
                if run.run_id in protected:
                    report.kept_latest.add(run.run_id)
                elif not all(_past_window(member, retention, now, protected) for member in groups[_root(record)]):
                    report.kept_for_group.add(run.run_id)
                else:
                    if not dry_run:
                        report.deleted_step_outputs += delete_run(instance, step_outputs, run.run_id)
                    report.deleted_runs[run.status.value] += 1
                    continue
                cursor = run.run_id
            if dry_run and records:
                cursor = records[-1].dagster_run.run_id
            deleted = sum(report.deleted_runs.values()) - deleted_before
            if deleted:
                log(
                    f"{'would delete' if dry_run else 'deleted'} {deleted} {statuses[0].value.lower()} run(s) "
                    f"finished before {records[-1].update_timestamp:%Y-%m-%d %H:%M} UTC"
                )
            if len(records) < batch_size:
                break


def delete_run(instance: DagsterInstance, step_outputs: StepOutputStore, run_id: str) -> int:
    """Delete one run and everything stored for it, files first, the run record last (why:
    docs/decisions/history-retention.md); the number of step-output files or objects deleted. Logs are deleted by
    their own prefix, ``[run_id, "compute_logs"]`` (Dagster's ``build_log_key_for_run``), before the outputs: on the
    local instance both live in the run's folder of the storage directory, and only the outputs are counted."""
    instance.compute_log_manager.delete_logs(prefix=[run_id, "compute_logs"])
    deleted_outputs = step_outputs.delete_run(run_id, instance)
    instance.event_log_storage.delete_events(run_id)
    instance.run_storage.delete_run(run_id)
    return deleted_outputs


def runs_holding_latest_events(instance: DagsterInstance) -> set[str]:
    """The runs that hold an asset's latest materialization or observation, or a check's latest completed
    evaluation."""
    runs: set[str] = set()
    for record in instance.get_asset_records():
        entry = record.asset_entry
        if entry.last_materialization_record is not None:
            runs.add(entry.last_materialization_record.run_id)
        observations = instance.fetch_observations(entry.asset_key, limit=1).records
        if observations:
            runs.add(observations[0].run_id)
    storage = instance.event_log_storage
    summaries = storage.get_asset_check_summary_records(list(stored_check_keys(storage)))
    for summary in summaries.values():
        if summary.last_completed_check_execution_record is not None:
            runs.add(summary.last_completed_check_execution_record.run_id)
    runs.discard("")  # events reported outside any run
    return runs


def _root(record: RunRecord) -> str:
    return record.dagster_run.root_run_id or record.dagster_run.run_id


def _re_execution_groups(instance: DagsterInstance, records: Sequence[RunRecord]) -> Mapping[str, list[RunRecord]]:
    """Root run id -> every run of the group, for the groups of ``records``: the root and the runs tagged with it,
    as the UI's re-execution and run retries tag them and as Dagster's own run-group view finds them."""
    roots = sorted({_root(record) for record in records})
    groups: dict[str, list[RunRecord]] = {root: [] for root in roots}
    if not roots:
        return groups
    members = [
        *instance.get_run_records(RunsFilter(run_ids=roots)),
        *instance.get_run_records(RunsFilter(tags={ROOT_RUN_ID_TAG: roots})),
    ]
    for member in members:
        groups[_root(member)].append(member)
    return groups


def _past_window(record: RunRecord, retention: RunRetention, now: float, protected: set[str]) -> bool:
    cutoff = retention.cutoff(record.dagster_run.status, now)
    return (
        cutoff is not None
        and record.update_timestamp.timestamp() < cutoff
        and record.dagster_run.run_id not in protected
    )
