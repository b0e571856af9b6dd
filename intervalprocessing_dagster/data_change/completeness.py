"""Never green while incomplete: a data-change run that ends without an outcome for every automation loaded for its
stamp fails, naming the automations that did not run.

Why a check at the end of the run, and why here. Dagster's own answer to "did the run do everything?" is "every
step it planned ended", and the plan of a re-execution is Dagster's guess at what is left: for a run whose worker
died, a guess that leaves automations out (``instance/reexecution.py``), and a re-execution of chosen steps leaves
out the rest by design. The ledger (``record.py``) holds the answer instead: the loader wrote a ``pending`` record for
every automation it loaded for the stamp, and each automation's step turns its record ``succeeded`` or ``failed``.
So the comparison is:

    loaded for this stamp      the ``automationruns`` records of the run's (cadence, stamp, dry run), any run's
    without an outcome         those whose status is not terminal (``pending``, ``running``, ``retrying``)
    but ended in this run      minus the automations whose step ended (succeeded or failed) in this very run: a
                               record the step could not write (it warns) does not turn applied work into "not run"

and what is left did not run. The check runs in the executor wrapper (``runs/executor.py``), which every launch
path goes through and which alone knows when the last step ended: a closing op downstream of the automations would
be skipped exactly when one of them failed or was left out of the plan. It reads MongoDB through the job's own
``mongo`` resource, built for the one query; the records are found by their ``_id`` prefix (``StampKey.prefix``),
i.e. on the ``_id`` index.

Compared and not chosen: deriving the loaded set from Dagster's event log (the loader's mapping keys, here and in
the parent runs) needs no database call but knows nothing of other runs of the stamp ("Re-execute all", a new run
with the same tick) and trusts the event log over the data; a closing op is skipped when it matters most.

A run whose automations failed is not incomplete: failed is an outcome, the run fails as before on its steps
(``STEP_FAILURE``, which run retries leave alone). Only automations with no outcome make it fail here, with
:class:`~intervalprocessing_dagster.runs.run_summary.IncompleteRunError`, which run retries do retry.

Nor is a run whose automation was *withdrawn*: its document was deleted, deactivated or moved to another cadence
after the stamp loaded it, so its step applied nothing and recorded ``withdrawn``. Someone decided that automation is
not to run; counting it as "did not run" would keep every re-execution of the stamp red for ever, with nothing left
that could make it green (``record.py`` compares it with the other outcomes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, DagsterRun, JobDefinition, build_resources

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.record import StampKey, unfinished_records
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
            records = unfinished_records(resources.mongo.database(), key)
        return [
            AutomationRef(str(record.get("automation")), str(record.get("configId")))
            for record in records
            if record.get("mappingKey") not in summary.ended_automation_keys
        ]

    return unfinished_automations
