"""The old entry point: ``processToRun`` chooses a Dagster job, so the old ECS task definitions keep working.

The C# app read the environment variable ``processToRun`` (spec §1.1) and EventBridge started one ECS task per
process. Pointing those task definitions at the new image (console script ``intervalprocessing``) runs the matching
Dagster job against the instance in ``DAGSTER_HOME``, so operators can move one process at a time to the Dagster
daemon's schedules (deploy/README.md, "Migrating from the EventBridge tasks").

The log lines mirror the old app's (``processToRun: ...``, ``Initiating IntervalProcessing Processes...``, ...)
because operators search CloudWatch for them. An unknown or missing value is one clear line and exit code 2, not the
old ``NotImplementedException`` trace (so is a bad setting or a missing ``DAGSTER_HOME``); a failed run is exit
code 1, so ECS and EventBridge see the failure.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping

from dagster import DagsterInstance, JobDefinition, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob, build_reconstructable_job
from dagster._core.errors import DagsterHomeNotSetError, DagsterInvalidConfigError, DagsterInvariantViolationError

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.definitions import build_definitions
from intervalprocessing_dagster.settings import Settings, SettingsError

PROCESS_TO_RUN_VARIABLE = "processToRun"

#: The old ``processToRun`` keys, in the old switch's order, and the Dagster job each one now runs (the data-change
#: names come from the cadence table, the one place that ties the old and new names together).
JOB_BY_PROCESS: Mapping[str, str] = {
    "FileGenerationProcesses": "file_generation_job",
    **{cadence.process_to_run: cadence.job_name for cadence in Cadence},
}

#: Tags on every run started this way, so the UI tells them apart from the daemon's scheduled runs.
LAUNCHED_BY_TAG = "intervalprocessing/launched_by"
PROCESS_TO_RUN_TAG = "intervalprocessing/process_to_run"

EXIT_SUCCESS = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("intervalprocessing")


def load_job(job_name: str) -> JobDefinition:
    """The job from definitions built for *this* process's environment.

    Module-level so that Dagster can rebuild the job in each step process (``build_reconstructable_job``); it builds
    the definitions from the environment instead of importing ``definitions.defs``, which may have been built
    before the caller set the environment (tests, or a long-lived interpreter).
    """
    return build_definitions(Settings.from_env()).resolve_job_def(job_name)


def reconstructable_job(job_name: str) -> ReconstructableJob:
    """A job Dagster can execute out of process, like a run worker does."""
    return build_reconstructable_job(__name__, load_job.__name__, reconstructable_args=(job_name,))


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the job ``processToRun`` names; the return value is the exit code (console scripts ``sys.exit`` it).

    ``environ`` is only for reading ``processToRun`` and checking the settings; the job itself reads the real
    environment, as every Dagster run does.
    """
    env = os.environ if environ is None else environ
    _configure_logging()
    process = env.get(PROCESS_TO_RUN_VARIABLE, "").strip()
    log.info("processToRun: %s", process)
    job_name = JOB_BY_PROCESS.get(process)
    if job_name is None:
        shown = repr(process) if process else "not set"
        print(
            f"error: {PROCESS_TO_RUN_VARIABLE} is {shown}; valid values: {', '.join(JOB_BY_PROCESS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE

    # Configuration mistakes are the operator's to fix: one line saying what, without a trace. (DAGSTER_HOME unset
    # or not a directory, dagster.yaml invalid or naming an unset variable, a bad INTERVALPROCESSING_* value.)
    try:
        Settings.from_env(env)
        instance = DagsterInstance.get()
    except (SettingsError, DagsterHomeNotSetError, DagsterInvariantViolationError, DagsterInvalidConfigError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE

    log.info("Initiating IntervalProcessing Processes...")
    log.info("Executing %s process (Dagster job %s)...", process, job_name)
    with instance, execute_job(
        reconstructable_job(job_name),
        instance=instance,
        tags={LAUNCHED_BY_TAG: PROCESS_TO_RUN_VARIABLE, PROCESS_TO_RUN_TAG: process},
        raise_on_error=False,
    ) as result:
        run_id, success = result.run_id, result.success
    if not success:
        log.error("%s process failed: Dagster run %s did not succeed (see its logs in the Dagster UI)", process, run_id)
        return EXIT_RUN_FAILED
    log.info("%s process complete (Dagster run %s)...", process, run_id)
    log.info("IntervalProcessing Complete...")
    return EXIT_SUCCESS


def _one_line(exc: Exception) -> str:
    """The useful part of a configuration error; Dagster's config errors bury it under schema dumps and traces."""
    missing = sorted(set(re.findall(r'environment variable "(\w+)" which is not set', str(exc))))
    if missing:
        return f"the instance configuration in $DAGSTER_HOME needs these unset variables: {', '.join(missing)}"
    if isinstance(exc, DagsterInvalidConfigError) and exc.errors:
        return exc.errors[0].message.strip().splitlines()[0]
    return str(exc).strip().splitlines()[0]


def _configure_logging() -> None:
    """Timestamped lines on stdout, like the old ``Console.WriteLine($"{DateTime.Now} ...")`` (CloudWatch reads it)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

