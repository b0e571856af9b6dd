"""Re-execution from failure of a run whose worker died: the mapped steps Dagster leaves out, put back.

What it compensates (Dagster 1.13, ``dagster/_core/execution/plan/state.py``, ``_derive_state_of_past_run``): to
re-execute a failed or canceled run "from failure", Dagster derives the steps to run from the parent run's event
log: every step that failed, every step that started and never ended, and every step that left no event at all
*unless* it is a mapped step whose upstream dynamic output succeeded. Those resolved instances (``apply_automation
[auto_07]`` when the loader had yielded ``auto_07``) are dropped. A data-change run killed after 5 of its 20
automations (SIGKILL: out of memory, a stopped Fargate task, a lost host) is therefore re-executed as the one step that
was in progress; the 15 that had not started never run, and the re-execution ends SUCCESS. Killed between the loader
and the first automation, or after the last automation's step but before the run's end, nothing is left to re-plan:
the daemon and the UI refuse with "No steps needed to be retried in the failed run", and the Python API
(``ReexecutionOptions.from_failure``) with the misleading "Cannot perform reexecution with in-memory io managers"
(``memoization.py``: an empty plan has no first level whose inputs could be persisted, so ``artifacts_persisted`` is
false; the IO manager is not the problem). deploy/README.md has a few-line reproduction in plain Dagster.

The correction, :func:`resume_retry_reexecution`, wraps ``KnownExecutionState.build_resume_retry_reexecution``, the
one function all three production paths call: the daemon's automatic run retries and the UI's "Re-execute → From
failure" (both through ``DagsterInstance.create_reexecuted_run``) and ``ReexecutionOptions.from_failure``. To
Dagster's answer it adds every resolved instance of a mapped step (one per mapping key its dynamic upstream yielded,
as far as the parent's chain of runs knows) that has no ``STEP_SUCCESS`` or ``STEP_SKIPPED`` in the parent or in the
runs before it, back to the run that ran that upstream step: what an earlier re-execution did counts, and what no run
of the chain did is planned, whatever the parent's own plan was (one Dagster planned alone, or a hand-picked step
selection). When that leaves nothing, and the plan has mapped steps, every step the parent was to execute is planned
again (the run failed after its last step: the data-change jobs' ledger makes each automation a no-op that says
"already applied", and their closing check confirms the stamp is complete); a plan without mapped steps keeps
Dagster's answer.

How it is switched on: :class:`RecoveringDagsterInstance`, named by ``instance_class:`` in both ``dagster.yaml`` files,
installs the correction when it is created. Every process that creates re-executions loads the instance from
``dagster.yaml`` (the daemon, the webserver, ``dagster`` commands), so they all have it; the code location is not
involved, which matters because the daemon and the webserver plan a retry before any run worker exists.

Alternatives compared (deploy/README.md, "When a run's task dies", has the full comparison): a closing reconcile op
(skipped by Dagster whenever an automation fails, and it would apply the missing automations inside one step,
without their own logs and metadata); ``dagster/retry_strategy: ALL_STEPS`` plus the ledger's skip (fixes only the
daemon's retries, not the UI's button, and re-reads every document); correcting the plan in the run worker's
executor (cannot help when Dagster refuses to create the run at all). This one is narrow: one function, only mapped
steps, only re-execution from failure.

When Dagster fixes it: ``tests/instance/test_instance_reexecution.py`` runs Dagster's own function on a killed run and
fails once it returns the dropped steps itself; then delete this module and the ``instance_class:`` entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun
from dagster._core.errors import DagsterExecutionPlanSnapshotNotFoundError
from dagster._core.execution.plan.handle import ResolvedFromDynamicStepHandle, StepHandle, UnresolvedStepHandle
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_representation.external import RemoteExecutionPlan

# Dagster's own derivation, as shipped; the correction starts from its answer (and the canary test calls it).
dagster_resume_retry_reexecution = KnownExecutionState.build_resume_retry_reexecution


def resume_retry_reexecution(
    instance: DagsterInstance, parent_run: DagsterRun
) -> tuple[Sequence[str], KnownExecutionState]:
    """Dagster's steps to re-execute ``parent_run`` from failure, plus the resolved mapped steps it leaves out."""
    steps, known_state = dagster_resume_retry_reexecution(instance, parent_run)
    plan = _plan_of(instance, parent_run)
    mapped = mapped_steps(plan, known_state.dynamic_mappings)
    if not mapped:
        return steps, known_state
    finished = finished_steps(instance, parent_run, set(mapped.values()))
    left_out = [key for key in mapped if key not in finished and key not in steps]
    if left_out:
        return [*steps, *left_out], known_state
    if steps:
        return steps, known_state
    # Every mapped step ended well, yet the run failed or was canceled: it died after its last step. Run it again.
    everything = list(parent_run.step_keys_to_execute or [step.key for step in plan.topological_steps()])
    return everything, known_state.update_for_step_selection(everything)


def mapped_steps(
    plan: RemoteExecutionPlan, dynamic_mappings: Mapping[str, Mapping[str, Sequence[str] | None]]
) -> dict[str, str]:
    """Every resolved instance of each mapped step in ``plan`` (``apply_automation[?]``, or the resolved ones a
    re-execution's plan lists), one per mapping key its dynamic upstream yielded as far as the run's chain knows, with
    the key of that upstream step: ``{"apply_automation[auto_07]": "load_hourly_automations", ...}``."""
    resolved: dict[str, str] = {}
    for step in plan.topological_steps():
        handle = StepHandle.parse_from_key(step.key)
        if isinstance(handle, ResolvedFromDynamicStepHandle):
            handle = handle.unresolved_form
        if not isinstance(handle, UnresolvedStepHandle):
            continue
        for step_input in step.inputs:
            for upstream in step_input.upstream_output_handles:
                for mapping_key in dynamic_mappings.get(upstream.step_key, {}).get(upstream.output_name) or []:
                    resolved.setdefault(handle.resolve(mapping_key).to_key(), upstream.step_key)
    return resolved


def finished_steps(instance: DagsterInstance, parent_run: DagsterRun, producers: set[str]) -> set[str]:
    """The steps that succeeded or were skipped in ``parent_run`` or in the runs before it, back to the run that ran
    the step (``producers``) whose dynamic outputs the mapped steps are resolved from: what an earlier re-execution
    already did counts, whatever that re-execution's own plan was."""
    finished: set[str] = set()
    run: DagsterRun | None = parent_run
    while run is not None:
        ended = {
            record.step_key
            for record in instance.all_logs(
                run.run_id, of_type={DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_SKIPPED}
            )
        }
        finished |= ended
        if ended & producers or not run.parent_run_id:
            break
        run = instance.get_run_by_id(run.parent_run_id)
    return finished


def _plan_of(instance: DagsterInstance, run: DagsterRun) -> RemoteExecutionPlan:
    snapshot_id = run.execution_plan_snapshot_id
    snapshot = instance.get_execution_plan_snapshot(snapshot_id) if snapshot_id else None
    if snapshot is None:  # Dagster's own derivation raised the same a moment ago; kept for the type checker
        raise DagsterExecutionPlanSnapshotNotFoundError(f"Could not load execution plan snapshot for run {run.run_id}")
    return RemoteExecutionPlan(execution_plan_snapshot=snapshot)


def install() -> None:
    """Make every re-execution from failure in this process use :func:`resume_retry_reexecution` (idempotent)."""
    KnownExecutionState.build_resume_retry_reexecution = staticmethod(  # type: ignore[method-assign]
        resume_retry_reexecution
    )


class RecoveringDagsterInstance(DagsterInstance):
    """Dagster's instance, unchanged, except that creating it installs the correction above in its process.

    Named in ``dagster.yaml`` (``instance_class:``); everything else in that file configures it as before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        install()

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """No settings of its own (Dagster asks a custom instance class for its extra ``dagster.yaml`` keys)."""
        return {}

    @classmethod
    def config_defaults(cls, base_dir: str) -> Mapping[str, Any]:
        """Dagster's own defaults for everything ``dagster.yaml`` leaves out."""
        return InstanceRef.config_defaults(base_dir)
