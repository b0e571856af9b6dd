"""Every run says who or what started it (``intervalprocessing/launched_by``): the run storage of both
``dagster.yaml`` files tags the runs no person starts (``instance/launch_origin.py``); a person's own tag, set by the
operators' webserver (``tests/webserver/test_audited_webserver.py``), is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, job, op
from dagster._core.storage.tags import (
    BACKFILL_ID_TAG,
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    SCHEDULE_NAME_TAG,
    SENSOR_NAME_TAG,
)

from intervalprocessing_dagster.instance import ecs_run_launcher
from intervalprocessing_dagster.instance.launch_origin import LAUNCHED_BY_TAG
from intervalprocessing_dagster.oncall import alerting
from tests.local_project import new_project


@op
def noop() -> None:
    """Nothing to do: the stored run's tags are what the test looks at."""


@job
def tagged_job() -> None:
    noop()


@pytest.mark.parametrize(
    ("tags", "launched_by"),
    [
        ({SCHEDULE_NAME_TAG: "hourly_data_change_schedule"}, "schedule:hourly_data_change_schedule"),
        ({SENSOR_NAME_TAG: "some_sensor"}, "sensor:some_sensor"),
        ({BACKFILL_ID_TAG: "abcdefgh"}, "backfill:abcdefgh"),
        # a retry copies its parent's tags, the person who launched the parent among them
        (
            {RETRY_NUMBER_TAG: "2", PARENT_RUN_ID_TAG: "parent-run", LAUNCHED_BY_TAG: "alice@example.com"},
            "retry 2 of parent-run",
        ),
        # a person re-executing a scheduled run: the webserver's tag wins over the inherited schedule
        ({SCHEDULE_NAME_TAG: "hourly_data_change_schedule", LAUNCHED_BY_TAG: "bob@example.com"}, "bob@example.com"),
        ({LAUNCHED_BY_TAG: "processToRun"}, "processToRun"),
        ({}, None),
    ],
)
def test_the_stored_run_says_who_or_what_started_it(
    tags: dict[str, str], launched_by: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path / "project")
    monkeypatch.chdir(project)  # dagster.yaml's storage folder is relative to the project folder
    with DagsterInstance.from_config(str(project)) as instance:
        result = tagged_job.execute_in_process(instance=instance, tags=tags)
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None
        assert stored.tags.get(LAUNCHED_BY_TAG) == launched_by


def test_every_copy_of_the_tag_name_is_the_same() -> None:
    assert LAUNCHED_BY_TAG == ecs_run_launcher.LAUNCHED_BY_TAG == alerting.LAUNCHED_BY_TAG
