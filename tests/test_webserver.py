"""Smoke test: the Dagster UI serves this code location, and its GraphQL API lists the jobs and schedules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests

from tests.local_project import new_project
from tests.local_project import webserver as running_webserver
from tests.test_defs import JOBS_AND_CRONS

QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    jobs { name }
    schedules { name cronSchedule executionTimezone pipelineName }
} } } }
"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The full webserver on a new project folder (no MongoDB is reached: the UI only loads the definitions)."""
    project = new_project(tmp_path_factory.mktemp("webserver") / "project")
    env = {key: value for key, value in os.environ.items() if not key.startswith("DAGSTER_")}
    with running_webserver(project, {**env, "INTERVALPROCESSING_LOCAL_DIR": str(project / "local")}) as url:
        yield url


LINEAGE_QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def test_ui_shows_lineage_from_automations_and_config_through_the_collections_to_the_reports(webserver: str) -> None:
    response = requests.post(f"{webserver}/graphql", json={"query": LINEAGE_QUERY}, timeout=60)
    response.raise_for_status()
    upstream = {
        "/".join(node["assetKey"]["path"]): {"/".join(key["path"]) for key in node["dependencyKeys"]}
        for node in response.json()["data"]["assetNodes"]
    }
    config = {"fileprocessingconfigs", "storedqueries"}
    assert upstream["daily_audit_inventory"] == {"audits", *config}
    assert upstream["weekly_mrr_inventory"] == {"medicalrecordrequests", "providers", *config}
    assert upstream["daily_active_mrr_inventory"] == {"medicalrecordrequests", "providers", *config}
    # automations -> collections -> reports
    for collection in ("audits", "medicalrecordrequests", "providers"):
        assert upstream[collection] == {"dataupdateconfigs"}


def test_every_asset_is_in_the_one_group_so_the_global_lineage_opens_expanded(webserver: str) -> None:
    """The UI collapses each group of the global lineage on first view when there are several (the browser test
    shows the expanded chain)."""
    response = requests.post(f"{webserver}/graphql", json={"query": "{ assetNodes { groupName } }"}, timeout=60)
    response.raise_for_status()
    assert {node["groupName"] for node in response.json()["data"]["assetNodes"]} == {"intervalprocessing"}


def test_ui_lists_every_job_and_schedule(webserver: str) -> None:
    response = requests.post(f"{webserver}/graphql", json={"query": QUERY}, timeout=60)
    response.raise_for_status()
    (repository,) = response.json()["data"]["repositoriesOrError"]["nodes"]
    assert {*JOBS_AND_CRONS, "revert_automation_run_job"} <= {job["name"] for job in repository["jobs"]}
    schedules = {schedule["name"]: schedule for schedule in repository["schedules"]}
    for job_name, cron in JOBS_AND_CRONS.items():
        schedule = schedules[job_name.removesuffix("_job") + "_schedule"]
        assert (schedule["pipelineName"], schedule["cronSchedule"], schedule["executionTimezone"]) == (
            job_name,
            cron,
            "UTC",
        )


CHECKS_QUERY = """
{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""


def test_ui_shows_the_on_call_checks_on_the_config_collections_and_reports(webserver: str) -> None:
    response = requests.post(f"{webserver}/graphql", json={"query": CHECKS_QUERY}, timeout=60)
    response.raise_for_status()
    checks = {
        "/".join(node["assetKey"]["path"]): {check["name"] for check in node["assetChecksOrError"].get("checks", [])}
        for node in response.json()["data"]["assetNodes"]
    }
    assert checks["dataupdateconfigs"] == {"automations_are_valid", "automations_within_limits"}
    assert checks["fileprocessingconfigs"] == {"report_processes_are_valid"}
    assert checks["storedqueries"] == {"report_queries_are_valid"}
    for report in (
        "daily_audit_inventory",
        "daily_active_mrr_inventory",
        "weekly_audit_inventory",
        "weekly_mrr_inventory",
        "configured_reports",
    ):
        assert checks[report] == {"freshness_check", "row_count"}, report
