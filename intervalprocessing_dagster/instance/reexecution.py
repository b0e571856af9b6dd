"""Re-execution from failure of a run whose worker died: the mapped steps Dagster leaves out, put back.

Dagster 1.13 drops the mapped steps (one automation each) that never started when it plans a re-execution from
failure (dagster-io/dagster#20925). :func:`resume_retry_reexecution` adds every mapped step no run of the chain
finished, or plans the parent's steps again when nothing is left; :class:`RecoveringDagsterInstance`
(``instance_class:`` in both ``dagster.yaml`` files) installs it in every process that plans re-executions: the
daemon, the webserver and ``dagster`` commands. When ``tests/instance/test_instance_reexecution.py``'s canary fails,
Dagster plans these steps itself: delete this module. Details and alternatives:
docs/decisions/reexecution-of-mapped-steps.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun
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
    if snapshot is None:  # Dagster's own derivation, called first, has already failed on a missing snapshot
        raise LookupError(f"Could not load execution plan snapshot for run {run.run_id}")
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
