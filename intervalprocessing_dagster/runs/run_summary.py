"""One INFO line at the end of every run's logs saying what the run did, failed runs included.

``Run summary: automations 2 applied, 3 matched, 3 modified, 1 failed ('Bad rule')``, and the like for reports, checks
and jobs whose steps give a ``summary``. :func:`with_run_summary` wraps an executor, the one piece of every launch
path that sees every step's events and knows when the last step ended: it is the code location's default executor,
and a job with its own executor wraps it (``executor_def=with_run_summary(in_process_executor)``). A job may give a
:data:`ClosingCheck`, whose unfinished automations fail the run (:class:`IncompleteRunError`). Why not an op, a hook
or a sensor: docs/decisions/run-summary-in-the-executor.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    Executor,
    ExecutorDefinition,
    JobDefinition,
    MetadataValue,
    multi_or_in_process_executor,
)

# Not exported at the top level, but the types of the public Executor interface's arguments and properties (and of
# an engine event's metadata).
from dagster._core.events import EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.in_process import InProcessExecutor

from intervalprocessing_dagster.runs.console_log import (
    RUN_SUMMARY_PREFIX,
    execute_steps_in_process,
    failed_by_blocking_check,
    install_console_filter,
)

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
                ref = _automation_ref(failure.metadata if failure else {}, automation)
                self._add_counts(failure.metadata if failure else {})  # what it wrote before it failed
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
# The UI path that undoes a run, given its id (``data_change/revert.py``'s launchpad link).
UndoLink = Callable[[str], str]
UNDO_METADATA_KEY = "undo_this_run"


class IncompleteRunError(Exception):
    """The run's steps ended, but automations it was to run did not run; the message names them."""


class RunSummaryExecutor(Executor):
    """Runs the plan on ``inner``, then the job's closing check, and logs the :class:`RunSummary` line."""

    def __init__(
        self,
        inner: Executor,
        closing_check: ClosingCheck | None = None,
        undo: UndoLink | None = None,
        automation_op: str | None = None,
    ) -> None:
        self._inner = inner
        self._closing_check = closing_check
        self._undo = undo
        self._automation_op = automation_op

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        install_console_filter(plan_context.log)  # not run summary work: see console_log.py for why it is here
        summary = RunSummary(automation_op=self._automation_op)
        try:
            if isinstance(self._inner, InProcessExecutor):  # its steps log through loggers of their own
                events = execute_steps_in_process(self._inner, plan_context, execution_plan)
            else:
                events = self._inner.execute(plan_context, execution_plan)
            for event in events:
                summary.add(event)
                yield event
            self._check_closing(plan_context, summary)
        except Exception:
            plan_context.log.info(summary.line())
            raise
        if self._undo is not None and summary.modified:
            # One click from the run to its undo: the UI renders a URL metadata value as a link.
            yield DagsterEvent.engine_event(
                plan_context,
                f"Undo this run: revert_automation_run_job, run id {plan_context.run_id} filled in",
                EngineEventData(metadata={UNDO_METADATA_KEY: MetadataValue.url(self._undo(plan_context.run_id))}),
            )
        plan_context.log.info(summary.line())
        if summary.not_run:
            raise IncompleteRunError(summary.incomplete_message())

    def _check_closing(self, plan_context: PlanOrchestrationContext, summary: RunSummary) -> None:
        """Run the job's closing check into ``summary.not_run``. A check that cannot run fails a run that would
        otherwise be green (it cannot be shown complete); a run that already failed on its steps fails on them, with
        the check's error as a warning, so the cause a person reads stays the step's."""
        if self._closing_check is None:
            return
        try:
            summary.not_run = self._closing_check(
                plan_context.dagster_run, plan_context.instance, plan_context.job.get_definition(), summary
            )
        except Exception as exc:
            if not (summary.failed_automations or summary.failed_steps):
                raise
            plan_context.log.warning(f"the closing check could not run: {exc}")

    @property
    def retries(self) -> RetryMode:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._inner.step_dependency_config

    def get_step_event_or_retry_event(self, *args: Any, **kwargs: Any) -> DagsterEvent:
        return self._inner.get_step_event_or_retry_event(*args, **kwargs)


def with_run_summary(
    inner: ExecutorDefinition,
    closing_check: ClosingCheck | None = None,
    undo: UndoLink | None = None,
    automation_op: str | None = None,
) -> ExecutorDefinition:
    """``inner`` with the summary line (and ``closing_check``, if given; with ``undo``, a link to undo a run that
    modified documents, logged just before the line; with ``automation_op``, the op a data-change job maps over its
    automations, whose steps the line counts); same name, config and requirements, so run config is unchanged."""
    return ExecutorDefinition(
        name=inner.name,
        config_schema=inner.config_schema,
        requirements=inner.get_requirements,
        executor_creation_fn=lambda init_context: RunSummaryExecutor(
            inner.executor_creation_fn(init_context), closing_check, undo, automation_op
        ),
        description=f"{inner.description or inner.name}, followed by one INFO line summarizing the run.",
    )


# Dagster's own default executor (multiprocess unless the run config picks in_process), with the summary line.
run_summary_executor = with_run_summary(multi_or_in_process_executor)
