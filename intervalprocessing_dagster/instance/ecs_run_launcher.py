"""Dagster's ``EcsRunLauncher`` with the run tasks' network taken from comma-separated environment variables.

The CDK stack hands the run tasks' subnets and security groups as one comma-separated variable each
(``DAGSTER_RUN_SUBNETS``, ``DAGSTER_RUN_SECURITY_GROUPS``), which the stock launcher's ``run_task_kwargs`` cannot
split; and run monitoring leaves the ``processToRun`` entry point's runs alone (``check_run_worker_health``). Only the
deployed instance loads it (``deploy/dagster.yaml``). Why not ``use_current_ecs_task_config``, and the module's moves:
docs/decisions/ecs-run-launcher-network.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagster import DagsterRun, Field, StringSource
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_aws.ecs import EcsRunLauncher

from intervalprocessing_dagster.runs.tags import LAUNCHED_BY_PROCESS_TO_RUN, LAUNCHED_BY_TAG

if TYPE_CHECKING:
    from dagster._serdes.config_class import ConfigurableClassData

ASSIGN_PUBLIC_IP_VALUES = ("ENABLED", "DISABLED")


class EnvNetworkEcsRunLauncher(EcsRunLauncher):
    """``EcsRunLauncher`` plus ``subnets``, ``security_groups`` and ``assign_public_ip`` for ``awsvpc`` run tasks."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        *,
        subnets: str,
        security_groups: str,
        assign_public_ip: str = "DISABLED",
        run_task_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if run_task_kwargs and "networkConfiguration" in run_task_kwargs:
            raise ValueError(
                "run_task_kwargs.networkConfiguration would be replaced: set the network with the launcher's "
                "subnets, security_groups and assign_public_ip instead"
            )
        if assign_public_ip not in ASSIGN_PUBLIC_IP_VALUES:
            raise ValueError(f"assign_public_ip must be one of {ASSIGN_PUBLIC_IP_VALUES}, got {assign_public_ip!r}")
        network = {
            "awsvpcConfiguration": {
                "subnets": split_ids(subnets, "subnets (DAGSTER_RUN_SUBNETS)"),
                "securityGroups": split_ids(security_groups, "security_groups (DAGSTER_RUN_SECURITY_GROUPS)"),
                "assignPublicIp": assign_public_ip,
            }
        }
        super().__init__(
            inst_data=inst_data, run_task_kwargs={**(run_task_kwargs or {}), "networkConfiguration": network}, **kwargs
        )

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """Leave the old task definitions' runs alone: they have no ECS task of ours to check.

        Run monitoring asks about every run in progress. For a run that this launcher did not start, the stock
        launcher answers UNKNOWN, and monitoring fails the run while it is still going. That is what a run of the
        ``processToRun`` entry point would be during the migration (it executes in the old EventBridge task).
        Their runtime limit still applies.
        """
        if run.tags.get(LAUNCHED_BY_TAG) == LAUNCHED_BY_PROCESS_TO_RUN:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run by the processToRun entry point, not an ECS task")
        return super().check_run_worker_health(run)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **super().config_type(),
            "subnets": Field(StringSource, description="Comma-separated subnet ids for the run tasks' ENIs."),
            "security_groups": Field(StringSource, description="Comma-separated security group ids of the run tasks."),
            "assign_public_ip": Field(
                StringSource,
                is_required=False,
                default_value="DISABLED",
                description="ENABLED or DISABLED; private subnets behind a NAT gateway need DISABLED.",
            ),
        }


def split_ids(value: str, what: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; an empty list is refused here, because ECS would only say so per run."""
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise ValueError(f"{what} is empty: the run tasks need at least one")
    return ids
