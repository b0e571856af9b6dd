"""The operators' webserver as production runs it (``intervalprocessing-webserver``), for real: sign-on verified on
every request against a stand-in load balancer (a key pair made here, its key endpoint on 127.0.0.1), and one audit
line per change, each change sent as the UI sends it (the UI bundle's own documents, ``tests/test_webserver_roles.py``).

A second one on the same project runs without sign-on, as ``dagster dev``-style local use: its lines name the OS user
and land under the project's ``.intervalprocessing/``.

About 50 s: one ``dagster job execute`` and two webservers starting.
"""

from __future__ import annotations

import base64
import getpass
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
import requests
import websockets.exceptions
import websockets.sync.client
from cryptography.hazmat.primitives.asymmetric import ec

from intervalprocessing_dagster.instance.launch_origin import LAUNCHED_BY_TAG
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.settings import DEFAULT_AUDIT_LOG_NAME
from intervalprocessing_dagster.webserver.audit import mutation_schema
from tests.local_project import execute_job, new_project, run_id, user_env, webserver
from tests.test_webserver_roles import JOB, REPOSITORY, launch_variables, ui_document
from tests.webserver.load_balancer import ARN, OTHER_ARN, StandInLoadBalancer, stand_in_load_balancer

SCHEDULE = "hourly_data_change_schedule"
SENSOR = "run_failure_alert_sensor"
WRAPPER = "intervalprocessing_dagster.webserver"
CLIENT = "203.0.113.7"  # the address the load balancer appends to X-Forwarded-For


@dataclass
class Operators:
    url: str
    local_url: str
    alb: StandInLoadBalancer
    audit_path: Path
    local_audit_path: Path
    cli_run: str

    def headers(self, token: str | None) -> dict[str, str]:
        return {"x-forwarded-for": f"198.51.100.1, {CLIENT}", **({"x-amzn-oidc-data": token} if token else {})}

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = "valid",
        url: str | None = None,
    ) -> requests.Response:
        token = self.alb.token() if token == "valid" else token
        return requests.post(
            f"{url or self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=self.headers(token),
            timeout=60,
        )

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post(query, variables)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def send(self, operation: str, variables: dict[str, Any], *, url: str | None = None) -> dict[str, Any]:
        response = self.post(ui_document(operation), variables, url=url)
        response.raise_for_status()
        (result,) = response.json()["data"].values()
        return result

    def runs(self) -> dict[str, dict[str, Any]]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }")
        return {run["runId"]: run for run in data["runsOrError"]["results"]}

    def audit_lines(self, path: Path | None = None) -> list[dict[str, Any]]:
        path = path or self.audit_path
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def operators(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[Operators]:
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    database = client[f"audit_{uuid.uuid4().hex[:12]}"]
    seed_demo_data(database)
    project = new_project(tmp_path_factory.mktemp("audit") / "project")
    env = user_env(mongo_uri, database.name)
    cli_run = run_id(execute_job(project, env, JOB))
    audit_path = project / "production-audit.jsonl"
    with stand_in_load_balancer() as alb:
        signed_on = {
            **env,
            "WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN": ARN,
            "WEBSERVER_SIGN_ON_KEY_ENDPOINT": alb.key_endpoint,
            "WEBSERVER_SIGN_ON_CLIENT_ID": "operator-client",
            "WEBSERVER_AUDIT_LOG": str(audit_path),
        }
        with webserver(project, signed_on, module=WRAPPER) as url, webserver(project, env, module=WRAPPER) as local:
            yield Operators(
                url, local, alb, audit_path, project / ".intervalprocessing" / DEFAULT_AUDIT_LOG_NAME, cli_run
            )
    client.drop_database(database.name)
    client.close()


# --- sign-on ---------------------------------------------------------------------------------------------------


def test_requests_without_a_valid_token_are_refused_and_change_nothing(operators: Operators) -> None:
    alb = operators.alb
    runs_before = set(operators.runs())
    lines_before = len(operators.audit_lines())
    launch = launch_variables()
    untrusted = {
        "missing": None,
        "expired": alb.token(expires_in=-600),
        "wrongly signed": alb.token(key=ec.generate_private_key(ec.SECP256R1())),
        "another load balancer": alb.token(signer=OTHER_ARN),
        "the viewers' sign-in": alb.token(client="viewer-client"),
        "forged": _forged(alb.token()),
    }
    for case, token in untrusted.items():
        response = operators.post(ui_document("LaunchPipelineExecution"), launch, token=token)
        assert response.status_code == 401, (case, response.text)
        page = requests.get(f"{operators.url}/runs", headers=operators.headers(token), timeout=60)
        assert page.status_code == 401, case
    assert set(operators.runs()) == runs_before
    refusals = operators.audit_lines()[lines_before:]
    assert [line["action"] for line in refusals] == ["signOnRefused"] * 2 * len(untrusted)
    assert all(line["client"] == CLIENT and line["outcome"] == "refused" for line in refusals)
    # the load balancer's health check reaches the target without a sign-in
    assert requests.get(f"{operators.url}/server_info", timeout=60).status_code == 200


def _forged(token: str) -> str:
    """The payload rewritten to name someone else, the load balancer's signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload))
    claims["email"] = "mallory@example.com"
    return ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode(), signature])


# --- the audit trail -------------------------------------------------------------------------------------------


def test_every_change_from_the_ui_leaves_one_line_naming_the_person(operators: Operators) -> None:
    start = len(operators.audit_lines())

    def last_line() -> dict[str, Any]:
        lines = operators.audit_lines()
        assert len(lines) == last_line.seen + 1, lines[last_line.seen :]
        last_line.seen += 1
        line = lines[-1]
        assert (line["who"], line["identity"], line["client"]) == ("alice@example.com", "load-balancer", CLIENT)
        assert line["subject"] and line["time"].endswith("Z") and line["status"] == 200
        return line

    last_line.seen = start  # type: ignore[attr-defined]

    # a launch, with a launched_by tag the client tries to set itself
    launch = launch_variables([{"key": LAUNCHED_BY_TAG, "value": "someone else"}])
    launched = operators.send("LaunchPipelineExecution", launch)["run"]["id"]
    line = last_line()
    assert (line["action"], line["outcome"], line["result"]) == (
        "launchPipelineExecution",
        "success",
        "LaunchRunSuccess",
    )
    assert line["targets"] == {"jobs": [JOB], "code_locations": [REPOSITORY["repositoryLocationName"]]}
    assert line["created_runs"] == [launched]
    assert {t["key"]: t["value"] for t in operators.runs()[launched]["tags"]}[LAUNCHED_BY_TAG] == "alice@example.com"

    reexecuted = operators.send(
        "LaunchPipelineReexecution", {"reexecutionParams": {"parentRunId": operators.cli_run, "strategy": "ALL_STEPS"}}
    )["run"]["id"]
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == (
        "launchPipelineReexecution",
        "success",
        {"runs": [operators.cli_run]},
    )
    assert line["created_runs"] == [reexecuted]
    assert {t["key"]: t["value"] for t in operators.runs()[reexecuted]["tags"]}[LAUNCHED_BY_TAG] == "alice@example.com"

    several = operators.send("LaunchMultipleRuns", {"executionParamsList": [launch["executionParams"]] * 2})
    created = [result["run"]["id"] for result in several["launchMultipleRunsResult"]]
    line = last_line()
    assert (line["action"], line["outcome"], line["created_runs"]) == ("launchMultipleRuns", "success", created)
    runs = operators.runs()
    assert [{t["key"]: t["value"] for t in runs[run]["tags"]}[LAUNCHED_BY_TAG] for run in created] == [
        "alice@example.com"
    ] * 2

    operators.send("Terminate", {"runIds": [launched], "terminatePolicy": "SAFE_TERMINATE"})
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == ("terminateRuns", "success", {"runs": [launched]})
    # one run terminated, one not found: the line says which part failed
    missing = "00000000-0000-0000-0000-000000000000"
    operators.send("Terminate", {"runIds": [created[0], missing], "terminatePolicy": "SAFE_TERMINATE"})
    line = last_line()
    assert (line["action"], line["outcome"], line["result"]) == ("terminateRuns", "partial", "TerminateRunsResult")
    assert line["targets"] == {"runs": [created[0], missing]}
    assert [error.split(":")[0] for error in line["errors"]] == ["RunNotFoundError"]

    schedule = {"scheduleSelector": {**REPOSITORY, "scheduleName": SCHEDULE}}
    schedule_id = operators.send("StartThisSchedule", schedule)["scheduleState"]["id"]
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]["schedules"]) == ("startSchedule", "success", [SCHEDULE])
    operators.send("StopSchedule", {"id": schedule_id})
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == (
        "stopRunningSchedule",
        "success",
        {"instigator_states": [schedule_id]},
    )

    operators.send("ResetSchedule", schedule)
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]["schedules"]) == ("resetSchedule", "success", [SCHEDULE])

    sensor = operators.graphql(
        "query ($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState { id } } } }",
        {"s": {**REPOSITORY, "sensorName": SENSOR}},
    )["sensorOrError"]["sensorState"]["id"]
    operators.send("StopRunningSensor", {"id": sensor})
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == (
        "stopSensor",
        "success",
        {"instigator_states": [sensor]},
    )
    operators.send("StartSensor", {"sensorSelector": {**REPOSITORY, "sensorName": SENSOR}})
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]["sensors"]) == ("startSensor", "success", [SENSOR])

    operators.send("SetSensorCursorMutation", {"sensorSelector": {**REPOSITORY, "sensorName": SENSOR}, "cursor": "x"})
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]["sensors"]) == ("setSensorCursor", "success", [SENSOR])

    operators.send(
        "ReportEventMutation", {"eventParams": {"eventType": "ASSET_MATERIALIZATION", "assetKey": {"path": ["audits"]}}}
    )
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == (
        "reportRunlessAssetEvents",
        "success",
        {"assets": ["audits"]},
    )
    response = requests.post(
        f"{operators.url}/report_asset_observation/providers",
        json={},
        headers=operators.headers(operators.alb.token()),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == (
        "reportAssetObservation",
        "success",
        {"assets": ["providers"]},
    )

    operators.send("AssetWipeMutation", {"assetPartitionRanges": [{"assetKey": {"path": ["audits"]}}]})
    line = last_line()
    assert (line["action"], line["outcome"], line["result"], line["targets"]) == (
        "wipeAssets",
        "success",
        "AssetWipeSuccess",
        {"assets": ["audits"]},
    )

    operators.send("Delete", {"runId": reexecuted})
    line = last_line()
    assert (line["action"], line["outcome"], line["targets"]) == (
        "deletePipelineRun",
        "success",
        {"runs": [reexecuted]},
    )
    assert reexecuted not in operators.runs()

    # a change Dagster refuses is recorded with its error
    operators.send("Delete", {"runId": "00000000-0000-0000-0000-000000000000"})
    line = last_line()
    assert (line["action"], line["outcome"], line["result"]) == ("deletePipelineRun", "error", "RunNotFoundError")

    # a hand-written request without __typename: the outcome is still told apart
    response = operators.post('mutation { deleteRun(runId: "nope") { ... on DeletePipelineRunSuccess { runId } } }')
    assert response.json()["data"]["deleteRun"] == {"__typename": "RunNotFoundError"}
    assert last_line()["outcome"] == "error"

    # reads leave no line
    operators.runs()
    assert len(operators.audit_lines()) == last_line.seen  # type: ignore[attr-defined]


def test_a_mutation_outside_a_json_post_is_refused_and_recorded(operators: Operators) -> None:
    before = set(operators.runs())
    query = f'mutation {{ deleteRun(runId: "{operators.cli_run}") {{ __typename }} }}'
    response = requests.get(
        f"{operators.url}/graphql",
        params={"query": query},
        headers=operators.headers(operators.alb.token()),
        timeout=60,
    )
    assert response.status_code == 405, response.text
    assert set(operators.runs()) == before
    line = operators.audit_lines()[-1]
    assert (line["action"], line["outcome"], line["targets"]) == ("deleteRun", "refused", {"runs": [operators.cli_run]})


def test_inline_launch_params_are_refused_so_no_run_goes_untagged(operators: Operators) -> None:
    before = set(operators.runs())
    location, repository = REPOSITORY["repositoryLocationName"], REPOSITORY["repositoryName"]
    query = (
        f'mutation {{ launchPipelineExecution(executionParams: {{selector: {{repositoryLocationName: "{location}", '
        f'repositoryName: "{repository}", pipelineName: "{JOB}"}}, mode: "default"}}) {{ __typename }} }}'
    )
    response = operators.post(query)
    assert response.status_code == 400 and "as a GraphQL variable" in response.text
    assert set(operators.runs()) == before


def test_the_audited_mutations_are_the_schemas(operators: Operators) -> None:
    """Read from the schema the webserver serves, so a mutation Dagster adds is audited without a change here."""
    data = operators.graphql("{ __schema { mutationType { fields { name } } } }")
    served = {field["name"] for field in data["__schema"]["mutationType"]["fields"]}
    assert mutation_schema().mutations == served
    assert {"launchPipelineExecution", "deleteRun", "wipeAssets", "startSensor"} <= served


def test_without_sign_on_lines_name_the_os_user_under_the_local_folder(operators: Operators) -> None:
    schedule = {"scheduleSelector": {**REPOSITORY, "scheduleName": SCHEDULE}}
    response = requests.post(
        f"{operators.local_url}/graphql",
        json={"query": ui_document("StartThisSchedule"), "variables": schedule},
        timeout=60,
    )
    state = response.json()["data"]["startSchedule"]["scheduleState"]
    requests.post(
        f"{operators.local_url}/graphql",
        json={"query": ui_document("StopSchedule"), "variables": {"id": state["id"]}},
        timeout=60,
    )
    lines = operators.audit_lines(operators.local_audit_path)
    assert [(line["action"], line["who"], line["identity"], line["outcome"]) for line in lines[-2:]] == [
        ("startSchedule", getpass.getuser(), "os-user", "success"),
        ("stopRunningSchedule", getpass.getuser(), "os-user", "success"),
    ]
    assert lines[-1]["client"] == "127.0.0.1"
    assert operators.local_audit_path.stat().st_mode & 0o077 == 0  # the lines name people: owner only


def test_a_request_with_two_mutations_leaves_two_lines(operators: Operators) -> None:
    before = len(operators.audit_lines())
    selector = {**REPOSITORY, "scheduleName": SCHEDULE}
    query = """
    mutation Both($s: ScheduleSelector!) {
      first: startSchedule(scheduleSelector: $s) { ... on ScheduleStateResult { scheduleState { status } } }
      ...Second
    }
    fragment Second on Mutation { second: resetSchedule(scheduleSelector: $s) { __typename } }"""
    response = operators.post(query, {"s": selector})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["first"]["__typename"] == data["second"]["__typename"] == "ScheduleStateResult"
    lines = operators.audit_lines()[before:]
    assert [(line["action"], line["outcome"], line["targets"]["schedules"]) for line in lines] == [
        ("startSchedule", "success", [SCHEDULE]),
        ("resetSchedule", "success", [SCHEDULE]),
    ]


def test_the_websocket_needs_sign_on_and_carries_subscriptions_only(operators: Operators) -> None:
    """The UI's live updates (graphql-ws): a sign-in is checked at the upgrade, and a mutation sent there closes it
    (Dagster's endpoint would otherwise run whatever it is sent, unaudited)."""
    url = operators.url.replace("http://", "ws://") + "/graphql"
    with (
        pytest.raises(websockets.exceptions.InvalidStatus),
        websockets.sync.client.connect(url, subprotocols=["graphql-ws"], open_timeout=30),
    ):
        pass
    headers = {"x-amzn-oidc-data": operators.alb.token()}

    @contextmanager
    def session() -> Iterator[websockets.sync.client.ClientConnection]:
        with websockets.sync.client.connect(
            url, subprotocols=["graphql-ws"], additional_headers=headers, open_timeout=30
        ) as connection:
            connection.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(connection.recv(timeout=30))["type"] == "connection_ack"
            yield connection

    with session() as connection:
        subscription = "subscription ($runId: ID!) { pipelineRunLogs(runId: $runId) { __typename } }"
        connection.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "start",
                    "payload": {"query": subscription, "variables": {"runId": operators.cli_run}},
                }
            )
        )
        message = json.loads(connection.recv(timeout=30))
        assert (message["type"], message["payload"]["data"]["pipelineRunLogs"]["__typename"]) == (
            "data",
            "PipelineRunLogsSubscriptionSuccess",
        )
    with session() as connection:
        mutation = f'mutation {{ deleteRun(runId: "{operators.cli_run}") {{ __typename }} }}'
        connection.send(json.dumps({"id": "2", "type": "start", "payload": {"query": mutation}}))
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            connection.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert operators.cli_run in operators.runs()
