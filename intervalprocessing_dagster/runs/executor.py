"""The project's executor: Dagster's, wrapped so that every run ends with its summary line and its job's closing check.

Why the executor and not an op, a hook or a sensor: docs/decisions/run-summary-in-the-executor.md. This is the one
module built on Dagster's executor internals (the types of the public ``Executor`` interface, and the in-process
executor's own ``execute``, repeated to put the console filter on its steps' loggers); each is checked by
``tests/test_dagster_internals.py`` against the installed Dagster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dagster import DagsterEvent, Executor, ExecutorDefinition, MetadataValue, multi_or_in_process_executor

# Not exported at the top level: an engine event's data, and what Dagster's InProcessExecutor.execute is made of.
from dagster._core.events import EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.executor.in_process import InProcessExecutor, inprocess_execution_iterator
from dagster_shared.utils.timing import format_duration

from intervalprocessing_dagster.runs.console_log import install_console_filter
from intervalprocessing_dagster.runs.run_summary import ClosingCheck, IncompleteRunError, RunSummary

if TYPE_CHECKING:  # the types of the Executor interface's arguments and properties
    from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan
    from dagster._core.execution.retries import RetryMode
    from dagster._core.execution.step_dependency_config import StepDependencyConfig

# The UI path that undoes a run, given its id (``data_change/revert.py``'s launchpad link).
UndoLink = Callable[[str], str]
UNDO_METADATA_KEY = "undo_this_run"


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


def execute_steps_in_process(
    executor: InProcessExecutor, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
) -> Iterator[DagsterEvent]:
    """``InProcessExecutor.execute`` as Dagster 1.13 writes it, with the console filter on the loggers of the context
    it runs the steps in (the CLI tests fail if that ever changes)."""

    def steps(job_context: PlanExecutionContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        install_console_filter(job_context.log)
        yield from inprocess_execution_iterator(job_context, execution_plan)

    step_keys = execution_plan.step_keys_to_execute
    yield DagsterEvent.engine_event(
        plan_context,
        f"Executing steps in process (pid: {os.getpid()})",
        event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
    )
    started = time.perf_counter()
    yield from ExecuteRunWithPlanIterable(
        execution_plan=plan_context.execution_plan,
        iterator=steps,
        execution_context_manager=PlanExecutionContextManager(
            job=plan_context.job,
            retry_mode=plan_context.retry_mode,
            execution_plan=plan_context.execution_plan,
            run_config=plan_context.run_config,
            dagster_run=plan_context.dagster_run,
            instance=plan_context.instance,
            raise_on_error=plan_context.raise_on_error,
            output_capture=plan_context.output_capture,
            step_dependency_config=executor.step_dependency_config,
        ),
    )
    yield DagsterEvent.engine_event(
        plan_context,
        f"Finished steps in process (pid: {os.getpid()}) in {format_duration((time.perf_counter() - started) * 1000)}",
        event_specific_data=EngineEventData.in_process(os.getpid(), step_keys),
    )
