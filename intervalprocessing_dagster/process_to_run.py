"""The old entry point: ``processToRun`` chooses a Dagster job, so the old ECS task definitions keep working.

The C# app read the environment variable ``processToRun`` (spec §1.1) and EventBridge started one ECS task per
process. Pointing those task definitions at the new image (console script ``intervalprocessing``) runs the matching
Dagster job against the instance in ``DAGSTER_HOME``, so operators can move one process at a time to the Dagster
daemon's schedules (deploy/README.md, "Migrating from the EventBridge tasks").

The log lines mirror the old app's (``processToRun: ...``, ``Initiating IntervalProcessing Processes...``, ...)
because operators search CloudWatch for them. An unknown or missing value is one clear line and exit code 2, not the
old ``NotImplementedException`` trace (so is a bad setting or a missing ``DAGSTER_HOME``); a failed run is exit
code 1, so ECS and EventBridge see the failure. A process whose job still has a run in flight is skipped (exit 0):
two runs of one cadence never overlap, whichever way they were started.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from dagster import DagsterError, DagsterInstance, DagsterInvalidConfigError, JobDefinition, RunsFilter

from intervalprocessing_dagster.data_change.cadence import Cadence
from intervalprocessing_dagster.data_change.schedules import ACTIVE_RUN_STATUSES
from intervalprocessing_dagster.reports.jobs import PROCESS_TO_RUN as FILE_GENERATION_PROCESS
from intervalprocessing_dagster.reports.jobs import file_generation_job
from intervalprocessing_dagster.runs.clock import latest_tick, run_stamp_tags
from intervalprocessing_dagster.runs.tags import LAUNCHED_BY_PROCESS_TO_RUN, LAUNCHED_BY_TAG
from intervalprocessing_dagster.settings import Settings, SettingsError

PROCESS_TO_RUN_VARIABLE = "processToRun"

#: The old ``processToRun`` keys, in the old switch's order, and the Dagster job each one now runs (the names come
#: from the domains, which own both spellings).
JOB_BY_PROCESS: Mapping[str, str] = {
    FILE_GENERATION_PROCESS: file_generation_job.name,
    **{cadence.process_to_run: cadence.job_name for cadence in Cadence},
}

#: Tagged on every run started this way (with LAUNCHED_BY_TAG), so the UI tells them apart from scheduled runs.
PROCESS_TO_RUN_TAG = "intervalprocessing/process_to_run"

EXIT_SUCCESS = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("intervalprocessing")


def load_job(job_name: str) -> JobDefinition:
    """The job from definitions built for *this* process's environment, not the import-time ``definitions.defs``
    (which a long-lived interpreter, or a test, may have built before the environment was set). Imported here, once
    ``main`` has checked the settings: importing the code location builds it from the environment, and a bad
    setting must be one line, not a traceback."""
    from intervalprocessing_dagster.definitions import build_definitions

    return build_definitions(Settings.from_env()).resolve_job_def(job_name)


def main() -> int:
    """Run the job ``processToRun`` names; the return value is the exit code (console scripts ``sys.exit`` it)."""
    _configure_logging()
    process = os.environ.get(PROCESS_TO_RUN_VARIABLE, "").strip()
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
        settings = Settings.from_env()
        instance = DagsterInstance.get()
    except (SettingsError, DagsterError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE

    log.info("Initiating IntervalProcessing Processes...")
    with instance:
        # These runs bypass the daemon's run queue, so its one-run-per-cadence limit does not hold them back: check
        # here, or an EventBridge tick would overlap a slow run of the same process (spec §5.7).
        in_flight = instance.get_runs(RunsFilter(job_name=job_name, statuses=ACTIVE_RUN_STATUSES), limit=1)
        if in_flight:
            run = in_flight[0]
            log.info(
                "%s process skipped: Dagster run %s of %s is still %s", process, run.run_id, job_name, run.status.value
            )
            return EXIT_SUCCESS
        log.info("Executing %s process (Dagster job %s)...", process, job_name)
        # In this one process, step after step, like the old app (and its task size): the old task definitions were
        # sized for one process, and a step subprocess per automation would only add start-up time.
        result = load_job(job_name).execute_in_process(
            instance=instance,
            tags={
                LAUNCHED_BY_TAG: LAUNCHED_BY_PROCESS_TO_RUN,
                PROCESS_TO_RUN_TAG: process,
                **_tick_tags(process, settings.timezone),
            },
            raise_on_error=False,
        )
    run_id, success = result.run_id, result.success
    if not success:
        log.error("%s process failed: Dagster run %s did not succeed (see its logs in the Dagster UI)", process, run_id)
        return EXIT_RUN_FAILED
    log.info("%s process complete (Dagster run %s)...", process, run_id)
    log.info("IntervalProcessing Complete...")
    return EXIT_SUCCESS


def _tick_tags(process: str, timezone: str) -> dict[str, str]:
    """A data-change run stands for its cadence's latest tick, as a scheduled run does.

    The old EventBridge schedules fire on the same crons, and their retries come within the interval: sharing the
    tick's stamp makes a retry's note pushes the ones already made (spec §5.5). File generation keeps its launch
    time: the old file-generation schedule and ``FILE_GENERATION_CRON`` need not agree, and a stamp from the wrong
    day would misname the files and misjudge the Friday rule.
    """
    try:
        cadence = Cadence.from_process_to_run(process)
    except ValueError:
        return {}
    return run_stamp_tags(latest_tick(cadence.cron, now(), timezone))


def now() -> datetime:
    """The current time; a function so tests can stand at a chosen moment."""
    return datetime.now(UTC)


def _one_line(exc: Exception) -> str:
    """The useful part of a configuration error; Dagster's config errors bury it under schema dumps and traces."""
    missing = sorted(set(re.findall(r'environment variable "(\w+)" which is not set', str(exc))))
    if missing:
        return f"the instance configuration in $DAGSTER_HOME needs these unset variables: {', '.join(missing)}"
    if isinstance(exc, DagsterInvalidConfigError) and exc.errors:
        return exc.errors[0].message.strip().splitlines()[0]
    return str(exc).strip().splitlines()[0]


def _configure_logging() -> None:
    """Timestamped lines on stdout, like the old ``Console.WriteLine($"{DateTime.Now} ...")`` (CloudWatch reads it).

    The handler is replaced on every call so it writes to the *current* ``sys.stdout``.
    """
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
