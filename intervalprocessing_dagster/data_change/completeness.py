"""Never green while incomplete: a data-change run that ends without an outcome for every automation loaded for its
stamp fails, naming the automations that did not run.

Dagster's plan of a re-execution can leave automations out; the ledger (``ledger.py``) knows what the stamp loaded.
The check runs in the executor wrapper (``runs/executor.py``), the one place that knows when the last step ended,
and fails the run with :class:`~intervalprocessing_dagster.runs.run_summary.IncompleteRunError` (which run retries
retry). Failed and ``withdrawn`` automations have an outcome and do not count. Design and alternatives:
docs/decisions/completeness-check.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, DagsterRun, JobDefinition, build_resources

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.ledger import StampKey, unfinished_entries
from intervalprocessing_dagster.runs.clock import run_stamp
from intervalprocessing_dagster.runs.run_summary import AutomationRef, ClosingCheck, RunSummary

# The op whose run config says whether a run is a dry run (``jobs.DataChangeConfig``: false unless set).
APPLY_OP = "apply_automation"


def dry_run_of(run_config: Mapping[str, Any]) -> bool:
    """Whether a run's config makes it a dry run (``ops: {apply_automation: {config: {dry_run: true}}}``): its records
    are the stamp's dry-run ones. The loader and this check need it, and only ``apply_automation`` has the config."""
    return bool(run_config.get("ops", {}).get(APPLY_OP, {}).get("config", {}).get("dry_run", False))


def completeness_check(cadence: Cadence) -> ClosingCheck:
    """The closing check of ``cadence``'s job: the automations loaded for the run's stamp that did not run."""

    def unfinished_automations(
        run: DagsterRun, instance: DagsterInstance, job: JobDefinition, summary: RunSummary
    ) -> list[AutomationRef]:
        key = StampKey(cadence.value, run_stamp(run, instance), dry_run_of(run.run_config))
        with build_resources(
            {"mongo": job.resource_defs["mongo"]}, instance=instance, resource_config=run.run_config.get("resources")
        ) as resources:
            records = unfinished_entries(resources.mongo.database(), key)
        return [
            AutomationRef(str(record.get("automation")), str(record.get("configId")))
            for record in records
            if record.get("mappingKey") not in summary.ended_automation_keys
        ]

    return unfinished_automations
