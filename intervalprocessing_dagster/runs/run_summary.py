"""One INFO line at the end of every run's logs saying what the run did, failed runs included.

``Run summary: automations 2 applied, 3 matched, 3 modified, 1 failed ('Bad rule')``, and the like for reports, checks
and jobs whose steps give a ``summary``. The executor wrapper (``runs/executor.py``), the one piece of every launch
path that sees every step's events and knows when the last step ended, logs it; a job may give it a
:data:`ClosingCheck`, whose unfinished automations fail the run (:class:`IncompleteRunError`). Why not an op, a hook
or a sensor: docs/decisions/run-summary-in-the-executor.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    JobDefinition,
)

from intervalprocessing_dagster.runs.console_log import RUN_SUMMARY_PREFIX, failed_by_blocking_check

# A step output's (or a step failure's) text metadata under this key is the step's own part of the line: the history
# retention job's and the revert's, so that each job's line speaks of its own work.
SUMMARY_METADATA_KEY = "summary"
# The metadata an automation step's output and failure carry (data_change/jobs.py): the document's name and _id.
AUTOMATION_NAME = "automation"
AUTOMATION_ID = "config_id"
# An automation step's output metadata when its document was withdrawn since it was loaded: why (nothing applied).
WITHDRAWN_METADATA_KEY = "withdrawn"
# How many automations a summary line or failure message names before "and N more" (the count is always complete),
# and how much of each name it quotes: the message stays short enough for an alert whatever the documents hold.
NAMED_AT_MOST = 10
NAME_QUOTED_UP_TO = 60


class AutomationRef(NamedTuple):
    """An automation as messages name it: the name in its document, and its ``_id`` for when two names collide."""

    name: str
    config_id: str


@dataclass
class RunSummary:
    """What a run's step events say it did."""

    # The op a data-change job maps over its automations, as the job told its executor (None: not a data-change job);
    # its steps (``<op>[<mapping key>]``) are the automations the line counts.
    automation_op: str | None = None
    applied: int = 0
    already_applied: int = 0
    withdrawn: int = 0
    matched: int = 0
    modified: int = 0
    retried: int = 0  # documents another writer changed between an automation's read and write, written again
    contended: int = 0  # documents another writer kept changing, not written
    failed_automations: list[AutomationRef] = field(default_factory=list)
    not_run: list[AutomationRef] = field(default_factory=list)
    # Mapping keys of the automation steps that ended (succeeded or failed) in this run, and every automation seen.
    ended_automation_keys: set[str] = field(default_factory=set)
    seen_automations: set[AutomationRef] = field(default_factory=set)
    reports: list[tuple[str, str]] = field(default_factory=list)
    skipped_reports: list[tuple[str, str]] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    checks_passed: int = 0
    failed_checks: list[str] = field(default_factory=list)
    step_summaries: list[str] = field(default_factory=list)

    @property
    def data_change(self) -> bool:
        return self.automation_op is not None

    def _mapping_key(self, step_key: str) -> str | None:
        """The mapping key of an automation step (``apply_automation[close_open_audits]``), else None."""
        prefix = f"{self.automation_op}["
        if self.automation_op is None or not (step_key.startswith(prefix) and step_key.endswith("]")):
            return None
        return step_key[len(prefix) : -1]

    def add(self, event: DagsterEvent) -> None:
        step_key = event.step_key or ""
        automation = self._mapping_key(step_key)
        if event.event_type == DagsterEventType.STEP_OUTPUT:
            metadata = event.event_specific_data.metadata
            if automation:
                self.seen_automations.add(_automation_ref(metadata, automation))
                if _flag(metadata.get("already_applied")):
                    self.already_applied += 1
                elif WITHDRAWN_METADATA_KEY in metadata:
                    self.withdrawn += 1
                else:
                    self.applied += 1
                    self._add_counts(metadata)
            elif SUMMARY_METADATA_KEY in metadata:
                self.step_summaries.append(str(metadata[SUMMARY_METADATA_KEY].value))
        elif event.event_type == DagsterEventType.STEP_SUCCESS and automation:
            self.ended_automation_keys.add(automation)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            if automation:
                failure = event.step_failure_data.user_failure_data
                failure_metadata = failure.metadata if failure else {}
                ref = _automation_ref(failure_metadata, automation)
                self._add_counts(failure_metadata)  # what it wrote before it failed
                self.failed_automations.append(ref)
                self.seen_automations.add(ref)
                self.ended_automation_keys.add(automation)
            elif not failed_by_blocking_check(event):  # such a step's check is counted with the failed checks
                self.failed_steps.append(step_key)
                failure = event.step_failure_data.user_failure_data
                if failure is not None and SUMMARY_METADATA_KEY in failure.metadata:  # what it did not do, and why
                    self.step_summaries.append(str(failure.metadata[SUMMARY_METADATA_KEY].value))
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            self._add_asset_event(event, event.event_specific_data.materialization.metadata)
        elif event.event_type == DagsterEventType.ASSET_OBSERVATION:
            self._add_asset_event(event, event.event_specific_data.asset_observation.metadata)
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.passed:
                self.checks_passed += 1
            else:
                self.failed_checks.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")

    def _add_counts(self, metadata: Mapping[str, Any]) -> None:
        self.matched += _number(metadata.get("matched"))
        self.modified += _number(metadata.get("modified"))
        self.retried += _number(metadata.get("retried"))
        self.contended += _number(metadata.get("contended"))

    def _add_asset_event(self, event: DagsterEvent, metadata: Mapping[str, Any]) -> None:
        asset = event.asset_key.to_user_string() if event.asset_key else "?"
        if "location" in metadata:  # one report file (a built-in asset, or one file of configured_reports)
            self.reports.append((asset, str(metadata["location"].value)))
        elif "skipped" in metadata:
            self.skipped_reports.append((asset, str(metadata["skipped"].value)))

    def named(self, automations: list[AutomationRef]) -> str:
        """``'A', 'B' (_id 2), 'B' (_id 3)``: names as stored, the ``_id`` added where this run saw a name on more
        than one document; at most ``NAMED_AT_MOST``, then how many more."""
        ids_per_name = Counter(ref.name for ref in {*self.seen_automations, *automations})
        labels = [
            _quoted(ref.name) + (f" (_id {ref.config_id})" if ids_per_name[ref.name] > 1 else "")
            for ref in automations[:NAMED_AT_MOST]
        ]
        more = len(automations) - len(labels)
        return ", ".join(labels) + (f" and {more} more" if more else "")

    def incomplete_message(self) -> str:
        """The failure of a run that ended without running every automation loaded for its stamp."""
        return (
            f"{len(self.not_run)} automation(s) loaded for this run's stamp did not run: {self.named(self.not_run)}. "
            "Re-execute the run from failure to apply them (each applies once per stamp)."
        )

    def line(self) -> str:
        parts = []
        if self.data_change:
            failed = len(self.failed_automations)
            parts.append(
                f"automations {self.applied} applied, "
                + (f"{self.already_applied} already applied, " if self.already_applied else "")
                + (f"{self.withdrawn} withdrawn, " if self.withdrawn else "")
                + f"{self.matched} matched, {self.modified} modified, "
                + (f"{self.retried} retried (changed by another writer meanwhile), " if self.retried else "")
                + (f"{self.contended} contended (not written), " if self.contended else "")
                + f"{failed} failed"
                + (f" ({self.named(self.failed_automations)})" if failed else "")
                + (f", {len(self.not_run)} not run ({self.named(self.not_run)})" if self.not_run else "")
            )
        elif (
            self.reports
            or self.skipped_reports
            or not (self.checks_passed or self.failed_checks or self.step_summaries or self.failed_steps)
        ):
            written = "; ".join(f"{asset} -> {location}" for asset, location in self.reports)
            parts.append(f"reports written: {written or 'none'}")
            if self.skipped_reports:
                parts.append("skipped: " + "; ".join(f"{a} ({why})" for a, why in self.skipped_reports))
        if self.checks_passed or self.failed_checks:
            failed = len(self.failed_checks)
            parts.append(
                f"checks {self.checks_passed} passed, {failed} failed"
                + (f" ({', '.join(self.failed_checks)})" if failed else "")
            )
        parts.extend(self.step_summaries)
        if self.failed_steps:
            parts.append("failed steps: " + ", ".join(self.failed_steps))
        return RUN_SUMMARY_PREFIX + "; ".join(parts)


def _number(value: Any) -> int:
    """An int metadata value's number (absent: 0)."""
    return int(value.value) if value is not None and value.value is not None else 0


def _quoted(name: str) -> str:
    return repr(name if len(name) <= NAME_QUOTED_UP_TO else name[: NAME_QUOTED_UP_TO - 1] + "…")


def _flag(value: Any) -> bool:
    return bool(value is not None and value.value)


def _automation_ref(metadata: Mapping[str, Any], mapping_key: str) -> AutomationRef:
    """The automation a step's metadata names (``AUTOMATION_NAME``, ``AUTOMATION_ID``); its mapping key if it names
    none (a step that failed before its own code ran)."""
    name, config_id = metadata.get(AUTOMATION_NAME), metadata.get(AUTOMATION_ID)
    return AutomationRef(
        str(name.value) if name is not None else mapping_key,
        str(config_id.value) if config_id is not None else mapping_key,
    )


#: A job's closing check, run once its last step has ended, told to the executor by the job: given the run, the
#: instance, the job and what the run's steps did, the automations that should have run and have no outcome (none:
#: empty; public types only: the domain needs no more).
ClosingCheck = Callable[[DagsterRun, DagsterInstance, JobDefinition, RunSummary], list[AutomationRef]]


class IncompleteRunError(Exception):
    """The run's steps ended, but automations it was to run did not run; the message names them."""
