"""The four data-change cadences: the one table that ties the old names to the new jobs, schedules and limits.

The old app knew a cadence by three spellings: the ``runCadence`` string stored in ``dataupdateconfigs``, the
``processToRun`` value of its ECS task, and its EventBridge cron (spec §1.1, §1.4, §3.1). Keeping all of them, and
the new Dagster names and time limits, on one enum means a reader (or the compatibility entry point) never has to
guess how ``HalfHourlyDataChangeProcesses`` relates to ``half_hourly_data_change_job``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# Run tag carried by every data-change run; the production run queue limits each value to one run at a time.
CADENCE_TAG = "intervalprocessing/cadence"
# Dagster's run-monitoring tag: a run still going after this many seconds is failed by the daemon.
MAX_RUNTIME_TAG = "dagster/max_runtime"
# Time kept back from a run's max runtime so automations stop on their own (between batches, or by the server's
# time limit) and record why, before run monitoring would kill the run without a word.
_STOP_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class _CadenceSpec:
    key: str
    cron: str
    interval_seconds: int


_SPECS: dict[str, _CadenceSpec] = {
    "Nightly": _CadenceSpec("nightly", "0 2 * * *", 24 * 3600),
    "Hourly": _CadenceSpec("hourly", "0 * * * *", 3600),
    "HalfHourly": _CadenceSpec("half_hourly", "*/30 * * * *", 1800),
    "QuarterHourly": _CadenceSpec("quarter_hourly", "*/15 * * * *", 900),
}


class Cadence(Enum):
    """A cadence; its value is the exact ``runCadence`` string stored in ``dataupdateconfigs``."""

    NIGHTLY = "Nightly"
    HOURLY = "Hourly"
    HALF_HOURLY = "HalfHourly"
    QUARTER_HOURLY = "QuarterHourly"

    @property
    def key(self) -> str:
        """Snake-case name used in job, schedule and op names and as the concurrency tag value."""
        return _SPECS[self.value].key

    @property
    def cron(self) -> str:
        """The old EventBridge cron, in standard five-field form."""
        return _SPECS[self.value].cron

    @property
    def interval_seconds(self) -> int:
        return _SPECS[self.value].interval_seconds

    @property
    def job_name(self) -> str:
        return f"{self.key}_data_change_job"

    @property
    def schedule_name(self) -> str:
        return f"{self.key}_data_change_schedule"

    @property
    def process_to_run(self) -> str:
        """The old ECS task's ``processToRun`` value, e.g. ``HalfHourlyDataChangeProcesses``."""
        return f"{self.value}DataChangeProcesses"

    @property
    def max_runtime_seconds(self) -> int:
        """A run's hard limit: 90% of the interval, so a run is over before the next tick wants to start."""
        return self.interval_seconds * 9 // 10

    @property
    def work_budget_seconds(self) -> int:
        """How long automations may work, counted from the run's start; see ``_STOP_MARGIN_SECONDS``."""
        return self.max_runtime_seconds - _STOP_MARGIN_SECONDS

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags on every run of this cadence's job: the runtime limit and the one-at-a-time concurrency key.

        No retry strategy: the daemon's default, from failure, works in production because step outputs live in S3
        (``STEP_OUTPUTS_S3_BUCKET``), so a retry's new ECS task loads what the loader read and repeats only the
        automations that did not finish (all of them: ``instance/reexecution.py``)."""
        return {MAX_RUNTIME_TAG: str(self.max_runtime_seconds), CADENCE_TAG: self.key}

    @classmethod
    def from_process_to_run(cls, process_to_run: str) -> Cadence:
        """The cadence an old ``processToRun`` value names; ``ValueError`` listing the valid values otherwise."""
        for cadence in cls:
            if cadence.process_to_run == process_to_run:
                return cadence
        valid = ", ".join(c.process_to_run for c in cls)
        raise ValueError(f"processToRun={process_to_run!r} is not a data-change process; expected one of {valid}")
