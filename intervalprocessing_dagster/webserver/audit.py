"""What a request changes, and the audit line it leaves: one JSON object per GraphQL mutation (and per runless
event reported over the webserver's REST endpoints).

The mutations are read from the schema Dagster's webserver serves, not a hand-made list, so a mutation a later Dagster
adds is audited the day it is installed. A line names who (the token's email, else the OS user), the action, its
targets, the client and the outcome; a launched run gets ``intervalprocessing/launched_by`` set to who. Every field:
docs/decisions/webserver-sign-on-and-audit.md.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TextIO

from dagster_graphql.schema import create_schema
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
    print_ast,
    value_from_ast_untyped,
)

from intervalprocessing_dagster.runs.tags import LAUNCHED_BY_TAG

#: The launch mutations, and where in each argument the new run's tags are (``[]`` marks a list of params).
LAUNCH_TAGS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "launchPipelineExecution": {"executionParams": ("executionMetadata", "tags")},
    "launchRun": {"executionParams": ("executionMetadata", "tags")},
    "launchMultipleRuns": {"executionParamsList": ("[]", "executionMetadata", "tags")},
    "launchPipelineReexecution": {
        "executionParams": ("executionMetadata", "tags"),
        "reexecutionParams": ("extraTags",),
    },
    "launchRunReexecution": {"executionParams": ("executionMetadata", "tags"), "reexecutionParams": ("extraTags",)},
    "launchPartitionBackfill": {"backfillParams": ("tags",)},
    "reexecutePartitionBackfill": {"reexecutionParams": ("extraTags",)},
}
#: Argument keys that name what a mutation acts on, by the target kind they are reported under.
TARGET_KEYS: Mapping[str, str] = {
    "runId": "runs",
    "runIds": "runs",
    "parentRunId": "runs",
    "rootRunId": "runs",
    "pipelineName": "jobs",
    "jobName": "jobs",
    "scheduleName": "schedules",
    "sensorName": "sensors",
    "backfillId": "backfills",
    "partitionSetName": "partition_sets",
    "partitionNames": "partitions",
    "partitionKey": "partitions",
    "partitionKeys": "partitions",
    "repositoryLocationName": "code_locations",
}
#: ``stopRunningSchedule(id:)``, ``stopSensor(id:)`` and friends: the argument is the instigator state's id.
INSTIGATOR_ID_KEYS = ("id", "scheduleOriginId", "scheduleSelectorId", "jobOriginId", "jobSelectorId")
#: REST endpoints of ``dagster-webserver`` that write runless asset events, and the action they are logged as.
REST_ACTIONS = {
    "report_asset_materialization": "reportAssetMaterialization",
    "report_asset_check": "reportAssetCheckEvaluation",
    "report_asset_observation": "reportAssetObservation",
}
_MAX_ERRORS = 10
_MAX_MESSAGE = 300


class LaunchParamsNotVariables(ValueError):
    """A launch mutation's params were written inline; they must be variables so the launcher's tag can be set."""


@dataclass(frozen=True)
class MutationSchema:
    """The mutation fields and the error types of the GraphQL schema the webserver serves."""

    mutations: frozenset[str]
    error_types: frozenset[str]


@cache
def mutation_schema() -> MutationSchema:
    schema = create_schema().graphql_schema
    assert schema.mutation_type is not None
    error_interface = schema.get_type("Error")
    errors = (
        {t.name for t in schema.get_possible_types(error_interface)}  # type: ignore[arg-type]
        if error_interface
        else set()
    )
    return MutationSchema(mutations=frozenset(schema.mutation_type.fields), error_types=frozenset(errors))


@dataclass
class Mutation:
    """One top-level mutation field of a request: its name, the key of its result, and its arguments."""

    action: str
    response_key: str
    arguments: dict[str, Any]
    node: FieldNode
    variable_arguments: dict[str, str] = field(default_factory=dict)  # argument -> variable name


@dataclass
class MutationRequest:
    """A GraphQL request's parsed document and the mutation fields it would execute (none for a query)."""

    document: DocumentNode | None
    mutations: list[Mutation]

    def query_with_typenames(self) -> str:
        """The document with ``__typename`` selected on every mutation's result (the UI selects it; a hand-written
        request may not), so the outcome can be told from the response."""
        assert self.document is not None
        for mutation in self.mutations:
            selection_set = mutation.node.selection_set
            if selection_set is None or any(
                isinstance(s, FieldNode) and s.name.value == "__typename" and s.alias is None
                for s in selection_set.selections
            ):
                continue
            typename = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
            selection_set.selections = (*selection_set.selections, typename)
        return print_ast(self.document)


def mutations_in(query: str, variables: Mapping[str, Any] | None, operation_name: str | None) -> MutationRequest:
    """The mutation fields the request would execute; none for a query, a subscription or a document that does not
    parse (Dagster answers those with an error and changes nothing)."""
    try:
        document = parse(query)
    except GraphQLError:
        return MutationRequest(None, [])
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [op for op in operations if op.name is not None and op.name.value == operation_name]
    known = mutation_schema().mutations
    values = dict(variables) if isinstance(variables, Mapping) else {}
    found: list[Mutation] = []
    for operation in operations:
        if operation.operation != OperationType.MUTATION:
            continue
        for node in _top_level_fields(operation.selection_set, fragments):
            if node.name.value not in known:
                continue
            found.append(
                Mutation(
                    action=node.name.value,
                    response_key=node.alias.value if node.alias else node.name.value,
                    node=node,
                    arguments={arg.name.value: value_from_ast_untyped(arg.value, values) for arg in node.arguments},
                    variable_arguments={
                        arg.name.value: arg.value.name.value
                        for arg in node.arguments
                        if isinstance(arg.value, VariableNode)
                    },
                )
            )
    return MutationRequest(document, found)


def _top_level_fields(
    selection_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterable[FieldNode]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _top_level_fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _top_level_fields(fragments[selection.name.value].selection_set, fragments)


def with_launched_by(mutations: list[Mutation], variables: Mapping[str, Any] | None, who: str) -> dict[str, Any]:
    """The request's variables with ``intervalprocessing/launched_by = who`` in the tags of every run it launches.

    Raises :class:`LaunchParamsNotVariables` when a launch's params are written inline (the UI always sends them as
    variables; rewriting inline literals is not worth the risk of getting a document wrong)."""
    updated = copy.deepcopy(dict(variables or {}))
    for mutation in mutations:
        for argument, path in LAUNCH_TAGS.get(mutation.action, {}).items():
            if argument not in mutation.arguments:
                continue
            variable = mutation.variable_arguments.get(argument)
            if variable is None:
                raise LaunchParamsNotVariables(
                    f"{mutation.action}: pass {argument} as a GraphQL variable, as the UI does, so the run can be "
                    f"tagged {LAUNCHED_BY_TAG}"
                )
            if updated.get(variable) is not None:
                _set_tag(updated[variable], path, who)
    return updated


def _set_tag(value: Any, path: tuple[str, ...], who: str) -> None:
    if path[0] == "[]":
        for item in value or []:
            _set_tag(item, path[1:], who)
        return
    if not isinstance(value, dict):
        return
    if len(path) == 1:
        tags = [tag for tag in value.get(path[0]) or [] if tag.get("key") != LAUNCHED_BY_TAG]
        value[path[0]] = [*tags, {"key": LAUNCHED_BY_TAG, "value": who}]
        return
    if value.get(path[0]) is None:
        value[path[0]] = {}
    _set_tag(value[path[0]], path[1:], who)


def targets_of(arguments: Mapping[str, Any]) -> dict[str, list[str]]:
    """What the arguments name, by kind: runs, jobs, schedules, sensors, backfills, assets, partitions, ..."""
    found: dict[str, list[str]] = {}

    def add(kind: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, (str, int)) and str(item) not in found.setdefault(kind, []):
                found[kind].append(str(item))

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
            return
        if not isinstance(value, dict):
            return
        for key, item in value.items():
            if key in TARGET_KEYS:
                add(TARGET_KEYS[key], item)
            elif key in ("assetKey", "assetKeys"):
                for asset in item if isinstance(item, list) else [item]:
                    if isinstance(asset, dict) and isinstance(asset.get("path"), list):
                        add("assets", "/".join(str(part) for part in asset["path"]))
            elif key == "tags":
                continue  # what the run is tagged with is not what the mutation acts on
            walk(item)

    walk(dict(arguments))
    for key in INSTIGATOR_ID_KEYS:
        if isinstance(arguments.get(key), str):
            add("instigator_states", arguments[key])
    return found


def outcome_of(mutation: Mutation, response: Mapping[str, Any] | None) -> dict[str, Any]:
    """``outcome``, ``result``, ``errors`` and created runs of one mutation, from the GraphQL response body."""
    if response is None:
        return {"outcome": "error", "errors": ["the response was not GraphQL JSON"]}
    graphql_errors = [
        _short(error.get("message", ""))
        for error in response.get("errors") or []
        if isinstance(error, dict) and (not error.get("path") or error["path"][0] == mutation.response_key)
    ]
    data = response.get("data") or {}
    result = data.get(mutation.response_key) if isinstance(data, dict) else None
    if not isinstance(result, dict):
        return {
            "outcome": "error" if graphql_errors else "not executed",
            **({"errors": graphql_errors[:_MAX_ERRORS]} if graphql_errors else {}),
        }
    error_types = mutation_schema().error_types
    typename = result.get("__typename")
    nested = [(t, m) for t, m in _typenames(result, top=True) if t in error_types]
    line: dict[str, Any] = {"result": typename}
    if typename in error_types:
        line["outcome"] = "error"
        line["errors"] = [f"{typename}: {_short(result.get('message') or '')}".rstrip(": ")]
    elif nested or graphql_errors:
        line["outcome"] = "partial"
        line["errors"] = [*graphql_errors, *(f"{t}: {_short(m)}".rstrip(": ") for t, m in nested)][:_MAX_ERRORS]
    else:
        line["outcome"] = "success"
    created = _created_runs(result)
    if created:
        line["created_runs"] = created
    return line


def _typenames(value: Any, *, top: bool = False) -> Iterable[tuple[str, str]]:
    """``(__typename, message)`` of every object below the result (the result itself when ``top`` is false)."""
    if isinstance(value, list):
        for item in value:
            yield from _typenames(item)
    elif isinstance(value, dict):
        if not top and isinstance(value.get("__typename"), str):
            yield value["__typename"], str(value.get("message") or "")
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _typenames(item)


def _created_runs(result: Mapping[str, Any]) -> list[str]:
    """The run a launch created (``LaunchRunSuccess.run``), or each of ``launchMultipleRuns``'s."""
    runs: list[str] = []
    candidates = [result, *(result.get("launchMultipleRunsResult") or [])]
    for candidate in candidates:
        run = candidate.get("run") if isinstance(candidate, dict) else None
        if isinstance(run, dict):
            run_id = run.get("runId") or run.get("id")
            if isinstance(run_id, str):
                runs.append(run_id)
    if isinstance(result.get("backfillId"), str):
        runs.append(f"backfill:{result['backfillId']}")
    return runs


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


class AuditLog:
    """Appends audit lines, one JSON object per line, flushed at once, to a file (created with its folder) or to a
    text stream. Lines from the webserver's threads never interleave."""

    def __init__(self, destination: Path | TextIO) -> None:
        self._lock = threading.Lock()
        if isinstance(destination, Path):
            destination.parent.mkdir(parents=True, exist_ok=True)
            # Owner read/write only: the lines name people.
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._stream: TextIO = os.fdopen(fd, "a", encoding="utf-8")
        else:
            self._stream = destination
        self.destination = str(destination) if isinstance(destination, Path) else "stdout"

    def write(self, line: Mapping[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":"), sort_keys=False, default=str)
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()
