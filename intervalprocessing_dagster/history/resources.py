"""How long run history is kept (resource key ``retention``): the windows for successful and failed runs, and the
days within which everything is kept; set from ``RUN_HISTORY_*`` in ``intervalprocessing_dagster/resources.py``.
"""

from __future__ import annotations

from dagster import ConfigurableResource, DagsterRunStatus
from pydantic import Field

from intervalprocessing_dagster.settings import (
    DEFAULT_RUN_HISTORY_FAILURE_DAYS,
    DEFAULT_RUN_HISTORY_KEEP_ALL_DAYS,
    DEFAULT_RUN_HISTORY_SUCCESS_DAYS,
)

SECONDS_PER_DAY = 86400
SUCCESS_STATUSES = (DagsterRunStatus.SUCCESS,)
FAILURE_STATUSES = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


class RunRetention(ConfigurableResource):
    """How long finished runs are kept (resource key ``retention``, from the ``RUN_HISTORY_*`` settings)."""

    success_days: int = Field(
        default=DEFAULT_RUN_HISTORY_SUCCESS_DAYS, ge=1, description="Days a successful run is kept after it finished."
    )
    failure_days: int = Field(
        default=DEFAULT_RUN_HISTORY_FAILURE_DAYS, ge=1, description="Days a failed or canceled run is kept."
    )
    keep_all_days: int = Field(
        default=DEFAULT_RUN_HISTORY_KEEP_ALL_DAYS,
        ge=1,
        description="Every run of this many last days is kept, whatever its status and the windows.",
    )

    def cutoff(self, status: DagsterRunStatus, now: float) -> float | None:
        """The finish time before which a run with ``status`` may go, or None: a run that has not finished stays."""
        if status in SUCCESS_STATUSES:
            days = self.success_days
        elif status in FAILURE_STATUSES:
            days = self.failure_days
        else:
            return None
        return now - max(days, self.keep_all_days) * SECONDS_PER_DAY
