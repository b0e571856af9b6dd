"""The two UIs of the deployment, for real: the viewer's ``dagster-webserver --read-only`` refuses every change the
UI can ask for, the operator's full webserver makes each one; both show a CLI run with its job.

Each change is sent as the UI sends it: the GraphQL document is read out of the UI bundle that the installed
``dagster-webserver`` serves (so a renamed or reshaped mutation fails here, not in production), with ``__typename``
added to every selection set as the UI's Apollo Client does. The two webservers share one project instance (the
repo's ``dagster.yaml``), so after each refusal the test checks that nothing changed, and after each accepted change
that it happened. The runs the operator launches stay queued: no daemon runs here to start them.

About 40 s: one ``dagster job execute`` and two webservers starting.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import dagster_webserver
import pymongo
import pytest
import requests
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

from intervalprocessing_dagster.instance.run_origin import CODE_LOCATION_NAME
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from tests.local_project import execute_job, graphql, new_project, run_id, user_env, webserver

UI_BUNDLE = Path(dagster_webserver.__file__).parent / "webapp" / "build" / "_next" / "static" / "chunks"
REPOSITORY = {"repositoryLocationName": CODE_LOCATION_NAME, "repositoryName": "__repository__"}
JOB = "hourly_data_change_job"


def launch_variables(tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """LaunchPipelineExecution's variables for ``JOB`` as the UI's launchpad sends them, with run ``tags``."""
    return {
        "executionParams": {
            "selector": {**REPOSITORY, "pipelineName": JOB},
            "mode": "default",
            "runConfigData": {},
            "executionMetadata": {"tags": tags or []},
        }
    }


SCHEDULE = "hourly_data_change_schedule"


# --- the UI's own GraphQL documents ---------------------------------------------------------------------------


@cache
def _bundle() -> str:
    return "\n".join(path.read_text() for path in sorted(UI_BUNDLE.glob("*.js")))


def _literal_around(index: int) -> str:
    """The JavaScript string literal of the bundle that contains position ``index``, decoded."""
    bundle = _bundle()
    start = bundle.rindex('"', 0, index)
    end = index
    while bundle[end] != '"' or bundle[end - 1] == "\\":
        end += 1
    return json.loads(bundle[start : end + 1])


def _definitions(kind: str, name: str) -> dict[str, Any]:
    """Every definition in the bundle's literal that defines ``kind name`` (a literal may hold several)."""
    found = re.search(rf"\b{kind} {name}\b[\s({{]", _bundle())
    assert found, f"the UI bundle has no {kind} {name}: the UI changed, update this test"
    document = parse(_literal_around(found.start()))
    return {definition.name.value: definition for definition in document.definitions}


class _AddTypename(Visitor):
    """What Apollo Client's ``addTypename`` does to every document the UI sends."""

    def enter_selection_set(self, node: SelectionSetNode, _key: Any, parent: Any, *_: Any) -> Any:
        if isinstance(parent, OperationDefinitionNode) or any(
            isinstance(selection, FieldNode) and selection.name.value == "__typename" for selection in node.selections
        ):
            return None
        typename = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
        return SelectionSetNode(selections=(*node.selections, typename))


@cache
def ui_document(operation: str) -> str:
    """The document the UI sends for ``mutation <operation>``, with the fragments it spreads."""
    definitions = {operation: _definitions("mutation", operation)[operation]}
    pending = [definitions[operation]]
    while pending:
        for spread in _spreads(pending.pop()):
            if spread not in definitions:
                definitions[spread] = _definitions("fragment", spread)[spread]
                pending.append(definitions[spread])
    return "\n\n".join(print_ast(visit(definition, _AddTypename())) for definition in definitions.values())


def _spreads(definition: OperationDefinitionNode | FragmentDefinitionNode) -> list[str]:
    names: list[str] = []

    class Collect(Visitor):
        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            names.append(node.name.value)

    visit(definition, Collect())
    return names


# --- the two webservers on one project -------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    viewer: str
    operator: str
    cli_run: str

    def graphql(self, url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(url, query, variables)

    def send(self, role: str, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The UI's mutation ``operation`` sent to the viewer's or the operator's webserver; its one result."""
        (result,) = self.graphql(getattr(self, role), ui_document(operation), variables).values()
        return result

    def runs(self) -> dict[str, str]:
        data = self.graphql(self.operator, "{ runsOrError { ... on Runs { results { runId status } } } }")
        return {run["runId"]: run["status"] for run in data["runsOrError"]["results"]}

    def schedule_state(self) -> tuple[str, str]:
        data = self.graphql(
            self.operator,
            """
            query ($selector: ScheduleSelector!) {
              scheduleOrError(scheduleSelector: $selector) { ... on Schedule { scheduleState { id status } } }
            }""",
            {"selector": {**REPOSITORY, "scheduleName": SCHEDULE}},
        )
        state = data["scheduleOrError"]["scheduleState"]
        return state["id"], state["status"]

    def audits_events(self) -> int:
        """The events the automations recorded on ``audits``: a materialization per applied automation on its
        partition, an observation per failure."""
        data = self.graphql(
            self.operator,
            """
            { assetOrError(assetKey: {path: ["audits"]}) { ... on Asset {
                assetMaterializations { timestamp } assetObservations { timestamp } } } }""",
        )
        asset = data["assetOrError"]
        return len(asset["assetMaterializations"]) + len(asset["assetObservations"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[Deployment]:
    """One CLI run of the hourly data change on the demo data, then both webservers on that project's instance."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    database = client[f"roles_{uuid.uuid4().hex[:12]}"]
    seed_demo_data(database)
    project = new_project(tmp_path_factory.mktemp("roles") / "project")
    env = user_env(mongo_uri, database.name)
    cli_run = run_id(execute_job(project, env, JOB))
    with webserver(project, env, read_only=True) as viewer, webserver(project, env) as operator:
        yield Deployment(viewer=viewer, operator=operator, cli_run=cli_run)
    client.drop_database(database.name)
    client.close()


# --- the tests -------------------------------------------------------------------------------------------------


def test_both_see_the_cli_run_on_its_job_page_and_in_the_timeline(deployment: Deployment) -> None:
    query = """
    query ($selector: PipelineSelector!) {
      pipelineOrError(params: $selector) { ... on Pipeline { runs { runId } } }
      runsOrError { ... on Runs { results { runId repositoryOrigin { repositoryLocationName repositoryName } } } }
    }"""
    for url in (deployment.viewer, deployment.operator):
        data = deployment.graphql(url, query, {"selector": {**REPOSITORY, "pipelineName": JOB}})
        assert [run["runId"] for run in data["pipelineOrError"]["runs"]] == [deployment.cli_run]  # the job's Runs tab
        (run,) = [run for run in data["runsOrError"]["results"] if run["runId"] == deployment.cli_run]
        assert run["repositoryOrigin"] == REPOSITORY  # the timeline draws only runs with an origin


def test_the_viewer_is_refused_every_change_and_the_operator_makes_each(deployment: Deployment) -> None:
    def refused(operation: str, variables: dict[str, Any]) -> None:
        result = deployment.send("viewer", operation, variables)
        if result["__typename"] == "TerminateRunsResult":  # refused run by run
            assert [(r["__typename"], r["message"]) for r in result["terminateRunResults"]] == [
                ("TerminateRunFailure", "You do not have permission to terminate this run")
            ], result
        else:
            assert result["__typename"] == "UnauthorizedError", result

    def accepted(operation: str, variables: dict[str, Any], typename: str) -> dict[str, Any]:
        result = deployment.send("operator", operation, variables)
        assert result["__typename"] == typename, result
        return result

    runs_before = deployment.runs()

    launch = launch_variables()
    refused("LaunchPipelineExecution", launch)
    assert deployment.runs() == runs_before
    launched = accepted("LaunchPipelineExecution", launch, "LaunchRunSuccess")["run"]["id"]
    assert deployment.runs()[launched] == "QUEUED"

    reexecute = {"reexecutionParams": {"parentRunId": deployment.cli_run, "strategy": "ALL_STEPS"}}
    refused("LaunchPipelineReexecution", reexecute)
    assert set(deployment.runs()) == {*runs_before, launched}
    reexecuted = accepted("LaunchPipelineReexecution", reexecute, "LaunchRunSuccess")["run"]
    assert reexecuted["parentRunId"] == deployment.cli_run  # a CLI run can be re-executed from the UI

    terminate = {"runIds": [launched], "terminatePolicy": "SAFE_TERMINATE"}
    refused("Terminate", terminate)
    assert deployment.runs()[launched] == "QUEUED"
    result = accepted("Terminate", terminate, "TerminateRunsResult")
    assert [r["__typename"] for r in result["terminateRunResults"]] == ["TerminateRunSuccess"]
    assert deployment.runs()[launched] == "CANCELED"

    selector = {"scheduleSelector": {**REPOSITORY, "scheduleName": SCHEDULE}}
    refused("StartThisSchedule", selector)
    assert deployment.schedule_state()[1] == "STOPPED"
    accepted("StartThisSchedule", selector, "ScheduleStateResult")
    schedule_id, status = deployment.schedule_state()
    assert status == "RUNNING"
    refused("StopSchedule", {"id": schedule_id})
    assert deployment.schedule_state()[1] == "RUNNING"
    accepted("StopSchedule", {"id": schedule_id}, "ScheduleStateResult")
    assert deployment.schedule_state()[1] == "STOPPED"

    wipe = {"assetPartitionRanges": [{"assetKey": {"path": ["audits"]}}]}
    assert deployment.audits_events() > 0  # the CLI run's automations recorded their changes on the collection
    refused("AssetWipeMutation", wipe)
    assert deployment.audits_events() > 0
    accepted("AssetWipeMutation", wipe, "AssetWipeSuccess")
    assert deployment.audits_events() == 0

    delete = {"runId": reexecuted["id"]}
    refused("Delete", delete)
    assert reexecuted["id"] in deployment.runs()
    accepted("Delete", delete, "DeletePipelineRunSuccess")
    assert reexecuted["id"] not in deployment.runs()


def test_the_viewer_cannot_report_asset_events_over_http(deployment: Deployment) -> None:
    """The webserver's REST endpoints for runless events (what ``dagster-webserver``'s external-asset API accepts)."""
    viewer = requests.post(f"{deployment.viewer}/report_asset_materialization/audits", json={}, timeout=60)
    assert viewer.status_code == 401, viewer.text
    operator = requests.post(f"{deployment.operator}/report_asset_materialization/audits", json={}, timeout=60)
    assert operator.status_code == 200, operator.text
