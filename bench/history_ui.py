"""The GraphQL queries the Dagster UI sends for the pages on-call opens, timed against a real webserver.

The queries are not written here: they are read from the installed ``dagster-webserver``'s own UI bundle (its
source maps carry the UI's TypeScript, with every ``gql`` document and fragment), so the benchmark sends exactly what
this Dagster version's UI sends, fragments included, and follows it when Dagster changes them. The variables are the
ones the pages set (page sizes noted beside each, from the same sources). The webserver is the real
``dagster-webserver`` process on the project's ``workspace.yaml`` (started as the system tests start it,
``tests.local_project.webserver``), over HTTP, as a browser reaches it; its event log uses Dagster's pooled webserver
engine, as in production.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import dagster_webserver
import requests
from graphql import FragmentSpreadNode, parse, print_ast, visit
from graphql.language.visitor import Visitor

from bench.history_build import REPOSITORY_LABEL

# The pages' own sizes (ui-core sources): runs feed PAGE_SIZE 30 (useRunsFeedEntries.tsx), asset events 100
# (usePaginatedAssetEvents.tsx), a check's executions 30 + 1 (AssetChecks.tsx, useCursorPaginatedQuery.tsx), run
# logs QUERY_LOG_LIMIT 1000 (LogsProvider.tsx; the websocket subscription loads past events in chunks of 1000 too).
RUNS_PAGE = 30
ASSET_EVENTS_PAGE = 100
CHECK_EXECUTIONS_PAGE = 31
RUN_LOGS_PAGE = 1000


@cache
def ui_documents() -> dict[str, str]:
    """Every ``gql`` definition (query or fragment) of the installed UI, by name."""
    chunks = Path(dagster_webserver.__file__).parent / "webapp" / "build" / "_next" / "static" / "chunks"
    definitions: dict[str, str] = {}
    for source_map in chunks.rglob("*.js.map"):
        data = json.loads(source_map.read_text())
        for source, content in zip(data.get("sources", []), data.get("sourcesContent") or [], strict=False):
            if not content or "node_modules" in source or "gql`" not in content:
                continue
            for body in re.findall(r"gql`(.*?)`", content, re.S):
                document = parse(re.sub(r"\$\{[^}]*\}", "", body))
                for definition in document.definitions:
                    definitions[definition.name.value] = print_ast(definition)
    if not definitions:
        raise RuntimeError(f"no UI GraphQL documents found under {chunks}: is dagster-webserver's UI bundle there?")
    return definitions


class _Spreads(Visitor):
    """The fragment names a GraphQL document spreads."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_args: Any) -> None:
        self.names.append(node.name.value)


def operation(name: str) -> str:
    """The operation ``name`` with every fragment it spreads, directly or through other fragments."""
    definitions = ui_documents()
    wanted, queue = {name}, [name]
    while queue:
        spreads = _Spreads()
        visit(parse(definitions[queue.pop()]), spreads)
        for spread in spreads.names:
            if spread not in wanted:
                wanted.add(spread)
                queue.append(spread)
    return "\n\n".join(definitions[item] for item in sorted(wanted, key=lambda item: item != name))


@dataclass(frozen=True)
class Request:
    """One request a page sends: which page, which operation, with which variables."""

    page: str
    operation: str
    variables: dict[str, Any]


def page_requests(job: str, asset_keys: list[str], check: tuple[str, str]) -> list[Request]:
    """The runs list, a job's runs tab, assets' events tabs and a checks tab, as the UI opens them."""
    check_asset, check_name = check
    requests_ = [
        Request("runs list", "RunsFeedRootQuery", {"limit": RUNS_PAGE, "filter": {}, "view": "ROOTS"}),
        Request(
            "runs list",
            "RunFeedTabsCountQuery",
            {
                "queuedFilter": {"statuses": ["QUEUED"]},
                "inProgressFilter": {"statuses": ["STARTED", "STARTING", "SUSPENDED", "CANCELING"]},
                "view": "RUNS",
            },
        ),
        Request(
            f"job runs tab ({job})",
            "RunsFeedRootQuery",
            {
                "limit": RUNS_PAGE,
                "view": "RUNS",
                "filter": {"pipelineName": job, "tags": [{"key": ".dagster/repository", "value": REPOSITORY_LABEL}]},
            },
        ),
    ]
    for asset in asset_keys:
        requests_.append(
            Request(
                f"asset events tab ({asset})",
                "RecentAssetEventsQuery",
                {
                    "assetKey": {"path": [asset]},
                    "limit": ASSET_EVENTS_PAGE,
                    "eventTypeSelectors": ["MATERIALIZATION", "OBSERVATION", "FAILED_TO_MATERIALIZE"],
                },
            )
        )
    requests_ += [
        Request(f"asset checks tab ({check_asset})", "AssetChecksQuery", {"assetKey": {"path": [check_asset]}}),
        Request(
            f"asset checks tab ({check_asset})",
            "AssetCheckDetailsQuery",
            {
                "assetKey": {"path": [check_asset]},
                "checkName": check_name,
                "limit": CHECK_EXECUTIONS_PAGE,
            },
        ),
    ]
    return requests_


@dataclass(frozen=True)
class Webserver:
    """A running ``dagster-webserver`` (``tests.local_project.webserver``), queried as the UI queries it."""

    url: str

    def query(self, request: Request) -> tuple[float, dict[str, Any], int]:
        """Seconds, the response's ``data``, and its size in bytes; a GraphQL error raises, naming the request."""
        started = time.perf_counter()
        response = requests.post(
            f"{self.url}/graphql",
            json={
                "operationName": request.operation,
                "query": operation(request.operation),
                "variables": request.variables,
            },
            timeout=600,
        )
        seconds = time.perf_counter() - started
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"{request.page}: {request.operation} failed: {str(body.get('errors'))[:2000]}")
        if "PythonError" in json.dumps(body["data"]):
            raise RuntimeError(f"{request.page}: {request.operation} returned an error: {json.dumps(body)[:2000]}")
        return seconds, body["data"], len(response.content)


def measure(
    server: Webserver, requests_: list[Request], run_id: str, automations: int, repeats: int
) -> list[dict[str, Any]]:
    """Each request once to warm up, then ``repeats`` times in rounds; and the run page of ``run_id``: its root
    query and every page of its events, ``repeats`` times. Latencies in seconds; p95 of ``repeats`` samples is the
    second-slowest of 20, the slowest of fewer."""
    timings: dict[tuple[str, str, str], list[float]] = {}
    sizes: dict[tuple[str, str, str], int] = {}
    page = f"run page ({automations} automations)"
    run_page = [Request(page, "RunRootQuery", {"runId": run_id})]
    for request in requests_ + run_page:
        server.query(request)
    for _ in range(repeats):
        for request in requests_ + run_page:
            key = (request.page, request.operation, "")
            seconds, _data, size = server.query(request)
            timings.setdefault(key, []).append(seconds)
            sizes[key] = size
        cursor, pages, events = None, 0, 0
        while True:
            request = Request(page, "RunLogsQuery", {"runId": run_id, "cursor": cursor, "limit": RUN_LOGS_PAGE})
            seconds, data, size = server.query(request)
            pages += 1
            key = (request.page, request.operation, f"page {pages}")
            timings.setdefault(key, []).append(seconds)
            sizes[key] = size
            connection = data["logsForRun"]
            events += len(connection["events"])
            if len(connection["events"]) < RUN_LOGS_PAGE:
                break
            cursor = connection["cursor"]
    results = []
    for (page, name, part), samples in timings.items():
        ordered = sorted(samples)
        results.append(
            {
                "page": page,
                "operation": name + (f" ({part})" if part else ""),
                "samples": len(samples),
                "p50_seconds": round(statistics.median(ordered), 3),
                "p95_seconds": round(ordered[math.ceil(0.95 * len(ordered)) - 1], 3),  # nearest rank
                "max_seconds": round(ordered[-1], 3),
                "response_bytes": sizes[(page, name, part)],
            }
        )
    results.append({"page": page, "operation": "events loaded", "events": events, "pages": pages})
    return results
