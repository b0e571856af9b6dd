"""Who or what started a run, as the tag ``intervalprocessing/launched_by`` on the run.

Set by whoever starts it: the ``processToRun`` entry point (``processToRun``), the operators' webserver (the signed-in
person, ``webserver/audit.py``), and, for the runs no person starts, the instance's run storage when it stores the
run (:func:`with_launch_origin`, applied by ``instance/run_origin.py``'s storages, the one place every run passes):
a schedule's run says ``schedule:<name>``, a sensor's ``sensor:<name>``, a backfill's ``backfill:<id>`` and a retry
by the daemon ``retry <n> of <parent run>`` (a retry copies its parent's tags, which would otherwise name the person
who launched the parent as launching the retry).
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import DagsterRun

from intervalprocessing_dagster.runs.tags import (
    BACKFILL_ID_TAG,
    LAUNCHED_BY_TAG,
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    SCHEDULE_NAME_TAG,
    SENSOR_NAME_TAG,
)


def launch_origin_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` with ``launched_by`` naming the schedule, sensor, backfill or retry that creates the run; a run a
    person or ``processToRun`` starts keeps the tag it was given."""
    if tags.get(RETRY_NUMBER_TAG):  # only the daemon's retries have it (a re-execution drops it)
        origin = f"retry {tags[RETRY_NUMBER_TAG]} of {tags.get(PARENT_RUN_ID_TAG, 'its parent run')}"
    elif tags.get(LAUNCHED_BY_TAG):  # a person, processToRun, or a re-execution's inherited origin
        return dict(tags)
    elif tags.get(SCHEDULE_NAME_TAG):
        origin = f"schedule:{tags[SCHEDULE_NAME_TAG]}"
    elif tags.get(SENSOR_NAME_TAG):
        origin = f"sensor:{tags[SENSOR_NAME_TAG]}"
    elif tags.get(BACKFILL_ID_TAG):
        origin = f"backfill:{tags[BACKFILL_ID_TAG]}"
    else:
        return dict(tags)
    return {**tags, LAUNCHED_BY_TAG: origin}


def with_launch_origin(run: DagsterRun) -> DagsterRun:
    """``run`` with :func:`launch_origin_tags` applied (unchanged when there is nothing to say)."""
    tags = launch_origin_tags(run.tags)
    return run if tags == dict(run.tags) else run.with_tags(tags)
