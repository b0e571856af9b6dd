"""The re-execution correction (``instance/reexecution.py``) on a plain Dagster job, and the upstream behaviour it
compensates, pinned: the first test fails once Dagster re-plans a killed run's mapped steps itself (then remove the
module and the ``instance_class:`` entries of both dagster.yaml files).

The job is deploy/README.md's reproduction: one op yields six dynamic outputs, another is mapped over them, in one
process with outputs on disk. Its worker is killed for real (SIGKILL, in a spawned process) at the mapped step
``KILL_AT`` names; what run monitoring then does is ``report_run_failed``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DynamicOut,
    DynamicOutput,
    FilesystemIOManager,
    ReexecutionOptions,
    execute_job,
    in_process_executor,
    instance_for_test,
    job,
    op,
    reconstructable,
)
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.execution.plan.state import KnownExecutionState

from intervalprocessing_dagster.instance import reexecution
from intervalprocessing_dagster.instance.reexecution import RecoveringDagsterInstance, dagster_resume_retry_reexecution

REPO = Path(__file__).resolve().parents[2]
KILL_AT = "INTERVALPROCESSING_TEST_KILL_AT"
ALL = [f"work[k{i}]" for i in range(6)]


@op(out=DynamicOut())
def fan_out() -> Iterator[DynamicOutput[int]]:
    for i in range(6):
        yield DynamicOutput(i, mapping_key=f"k{i}")


@op
def work(context, i: int) -> int:  # noqa: ANN001 - Dagster's op context
    if os.environ.get(KILL_AT) == f"k{i}" and not context.run.parent_run_id:
        os.kill(os.getpid(), signal.SIGKILL)  # an out-of-memory kill, a stopped task, a lost host
    return i


@job(executor_def=in_process_executor, resource_defs={"io_manager": FilesystemIOManager()})
def fan() -> None:
    fan_out().map(work)


@op
def alone() -> int:
    return 1


@job(executor_def=in_process_executor, resource_defs={"io_manager": FilesystemIOManager()})
def no_mapping() -> None:
    alone()


def _run_and_die(home: str, kill_at: str) -> None:
    os.environ[KILL_AT] = kill_at
    with DagsterInstance.from_config(home) as instance:
        execute_job(reconstructable(fan), instance=instance)


@pytest.fixture()
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """A persistent instance with Dagster's own re-execution planning (whatever an earlier test installed)."""
    monkeypatch.setattr(
        KnownExecutionState, "build_resume_retry_reexecution", staticmethod(dagster_resume_retry_reexecution)
    )
    with instance_for_test(temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


def killed_at(instance: DagsterInstance, tmp_path: Path, mapping_key: str):  # noqa: ANN201 - a DagsterRun
    """A run of ``fan`` whose worker died as ``work[mapping_key]`` started, failed as run monitoring fails it."""
    child = multiprocessing.get_context("spawn").Process(target=_run_and_die, args=(str(tmp_path), mapping_key))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    (run,) = instance.get_runs()
    instance.report_run_failed(run, "the run worker died")
    return instance.get_run_by_id(run.run_id)


def test_upstream_dagster_still_drops_the_mapped_steps_a_dead_worker_never_started(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    """The canary. When this fails, Dagster plans the missing steps itself: delete instance/reexecution.py."""
    run = killed_at(instance, tmp_path, "k2")
    steps, _ = KnownExecutionState.build_resume_retry_reexecution(instance, run)
    assert steps == ["work[k2]"], (
        f"Dagster now re-plans {steps}: the workaround in intervalprocessing_dagster/instance/reexecution.py (and "
        "the instance_class: entries of dagster.yaml and deploy/dagster.yaml) can go"
    )
    with execute_job(
        reconstructable(fan), instance, reexecution_options=ReexecutionOptions.from_failure(run.run_id, instance)
    ) as result:
        assert result.success  # green, although work[k3]..work[k5] never ran
        ran = {event.step_key for event in result.all_events if event.event_type == DagsterEventType.STEP_SUCCESS}
    assert ran == {"work[k2]"}


def test_upstream_dagster_refuses_an_empty_plan_with_a_misleading_message(instance: DagsterInstance) -> None:
    """A run that failed after its last step (its worker died during the run's last event writes) leaves Dagster
    nothing to re-plan; the Python API then blames the IO manager, which is persistent."""
    with execute_job(reconstructable(fan), instance) as first:
        assert first.success
    instance.report_run_failed(first.dagster_run, "the run worker died after its last step")
    run = instance.get_run_by_id(first.run_id)
    assert KnownExecutionState.build_resume_retry_reexecution(instance, run)[0] == []
    with pytest.raises(DagsterInvariantViolationError, match="Cannot perform reexecution with in-memory io managers"):
        execute_job(
            reconstructable(fan),
            instance,
            reexecution_options=ReexecutionOptions.from_failure(run.run_id, instance),
            raise_on_error=True,
        )


def test_the_correction_re_plans_every_mapped_step_that_did_not_end(instance: DagsterInstance, tmp_path: Path) -> None:
    run = killed_at(instance, tmp_path, "k2")
    steps, _ = reexecution.resume_retry_reexecution(instance, run)
    assert steps == ["work[k2]", "work[k3]", "work[k4]", "work[k5]"]
    reexecution.install()
    with execute_job(
        reconstructable(fan), instance, reexecution_options=ReexecutionOptions.from_failure(run.run_id, instance)
    ) as result:
        assert result.success
        ran = {event.step_key for event in result.all_events if event.event_type == DagsterEventType.STEP_SUCCESS}
    assert ran == {"work[k2]", "work[k3]", "work[k4]", "work[k5]"}  # work[k0], work[k1] had succeeded: not again


def test_what_earlier_re_executions_did_counts_and_what_none_did_is_planned(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    """A chain: the killed run, then a re-execution as Dagster plans it (only ``work[k2]``), which ends green but is
    failed afterwards (its worker died after its last step). From it, the correction plans what no run of the chain
    did; from that one, failed the same way, nothing is left, so its own steps run again."""
    run = killed_at(instance, tmp_path, "k2")
    with execute_job(
        reconstructable(fan), instance, reexecution_options=ReexecutionOptions.from_failure(run.run_id, instance)
    ) as dagster_plan:
        assert dagster_plan.dagster_run.step_keys_to_execute == ["work[k2]"]
    instance.report_run_failed(dagster_plan.dagster_run, "the run worker died after its last step")

    steps, _ = reexecution.resume_retry_reexecution(instance, instance.get_run_by_id(dagster_plan.run_id))
    assert steps == ["work[k3]", "work[k4]", "work[k5]"]
    reexecution.install()
    with execute_job(
        reconstructable(fan),
        instance,
        reexecution_options=ReexecutionOptions.from_failure(dagster_plan.run_id, instance),
    ) as corrected:
        assert corrected.success
    instance.report_run_failed(corrected.dagster_run, "the run worker died after its last step")

    steps, _ = reexecution.resume_retry_reexecution(instance, instance.get_run_by_id(corrected.run_id))
    assert steps == ["work[k3]", "work[k4]", "work[k5]"]


def test_a_run_that_failed_after_its_last_step_is_planned_again_whole(instance: DagsterInstance) -> None:
    with execute_job(reconstructable(fan), instance) as first:
        assert first.success
    instance.report_run_failed(first.dagster_run, "the run worker died after its last step")
    steps, known_state = reexecution.resume_retry_reexecution(instance, instance.get_run_by_id(first.run_id))
    assert steps == ["fan_out", "work[?]"]
    assert "fan_out" not in known_state.dynamic_mappings  # the loader runs again, and its outputs resolve the rest
    reexecution.install()
    with execute_job(
        reconstructable(fan), instance, reexecution_options=ReexecutionOptions.from_failure(first.run_id, instance)
    ) as result:
        assert result.success
        ran = {event.step_key for event in result.all_events if event.event_type == DagsterEventType.STEP_SUCCESS}
    assert ran == {"fan_out", *ALL}


def test_a_job_without_mapped_steps_keeps_dagsters_answer(instance: DagsterInstance) -> None:
    with execute_job(reconstructable(no_mapping), instance) as first:
        assert first.success
    instance.report_run_failed(first.dagster_run, "the run worker died after its last step")
    run = instance.get_run_by_id(first.run_id)
    assert reexecution.resume_retry_reexecution(instance, run) == dagster_resume_retry_reexecution(instance, run)


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/dagster.yaml"])
def test_both_instances_are_the_recovering_one(config: str) -> None:
    """The local instance and production's name the class, so every process that plans a re-execution (daemon,
    webserver, dagster commands) has the correction."""
    assert yaml.safe_load((REPO / config).read_text())["instance_class"] == {
        "module": "intervalprocessing_dagster.instance.reexecution",
        "class": "RecoveringDagsterInstance",
    }


def test_creating_the_instance_installs_the_correction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        KnownExecutionState, "build_resume_retry_reexecution", staticmethod(dagster_resume_retry_reexecution)
    )
    (tmp_path / "dagster.yaml").write_text(
        "instance_class:\n  module: intervalprocessing_dagster.instance.reexecution\n"
        "  class: RecoveringDagsterInstance\ntelemetry:\n  enabled: false\n"
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance, RecoveringDagsterInstance)
        assert KnownExecutionState.build_resume_retry_reexecution is reexecution.resume_retry_reexecution
