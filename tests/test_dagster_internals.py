"""The fence around Dagster's private APIs (docs/decisions/dagster-private-apis.md): the table lists every private
import of the package, each listed name exists in the installed Dagster, and what this project repeats of Dagster
(tag values, names, the in-process executor's ``execute``, the cron rules) is still what Dagster does."""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster._core.errors import DagsterAssetCheckFailedError
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR
from dagster._core.storage import tags as dagster_tags
from dagster._utils.tags import get_boolean_tag_value

from intervalprocessing_dagster.instance import run_origin
from intervalprocessing_dagster.runs import console_log, tags
from intervalprocessing_dagster.runs.clock import latest_tick, ticks_after

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "intervalprocessing_dagster"
FENCE = ROOT / "docs" / "decisions" / "dagster-private-apis.md"
ROW = re.compile(r"^\| `(?P<module>[\w/]+\.py)` \| `(?P<private>dagster[\w.]*)` \| (?P<names>[^|]+) \|", re.M)


def _private(module: str | None) -> bool:
    parts = (module or "").split(".")
    return parts[0].startswith("dagster") and any(part.startswith("_") for part in parts[1:])


def _type_only(tree: ast.Module) -> set[ast.ImportFrom]:
    """The imports under ``if TYPE_CHECKING:``: annotations only, never run."""
    return {
        child
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for child in node.body
        if isinstance(child, ast.ImportFrom)
    }


def imports_in_code() -> set[tuple[str, str, frozenset[str], bool]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        type_only = _type_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _private(node.module):
                names = frozenset(alias.name for alias in node.names)
                found.add((path.relative_to(PACKAGE).as_posix(), node.module, names, node in type_only))
            elif isinstance(node, ast.Import):
                assert not any(_private(alias.name) for alias in node.names), f"{path}: import a name, not a module"
    return found


def imports_in_fence() -> set[tuple[str, str, frozenset[str], bool]]:
    """The table's rows; a row whose names end in "(type)" is an import under ``if TYPE_CHECKING:``."""
    return {
        (
            row["module"],
            row["private"],
            frozenset(re.findall(r"`(\w+)`", row["names"])),
            row["names"].strip().endswith("(type)"),
        )
        for row in ROW.finditer(FENCE.read_text())
    }


def test_every_private_import_is_in_the_fence_and_no_more() -> None:
    code, fence = imports_in_code(), imports_in_fence()
    assert code, "no private import found: the scan is broken"
    assert code - fence == set(), "private Dagster imports missing from docs/decisions/dagster-private-apis.md"
    assert fence - code == set(), "rows of docs/decisions/dagster-private-apis.md no module imports any more"


@pytest.mark.parametrize("row", sorted(imports_in_fence()), ids=lambda row: f"{row[0]}:{row[1]}")
def test_each_fenced_name_exists_in_the_installed_dagster(row: tuple[str, str, frozenset[str], bool]) -> None:
    _, private, names, _ = row
    module = importlib.import_module(private)
    assert [name for name in sorted(names) if not hasattr(module, name)] == []


def test_the_run_tags_are_dagsters() -> None:
    ours = {name: value for name, value in vars(tags).items() if name.isupper() and value.startswith("dagster/")}
    assert len(ours) == 11
    assert ours == {name: getattr(dagster_tags, name) for name in ours}
    assert get_boolean_tag_value("true") and not get_boolean_tag_value("false")  # what alerting reads as "true"


def test_the_names_dagster_does_not_export() -> None:
    assert console_log.BLOCKING_CHECK_ERROR == DagsterAssetCheckFailedError.__name__
    assert console_log.LOG_RECORD_METADATA_ATTR == LOG_RECORD_METADATA_ATTR
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME

    assert run_origin.SINGLETON_REPOSITORY_NAME == SINGLETON_REPOSITORY_NAME


def test_the_in_process_execute_is_the_one_runs_executor_repeats() -> None:
    """runs/executor.execute_steps_in_process repeats Dagster 1.13's InProcessExecutor.execute; a new body means
    repeating it again (or dropping the repetition, if Dagster lets an executor reach its steps' loggers)."""
    body = inspect.getsource(InProcessExecutor.execute)
    digest = hashlib.sha256(body.encode()).hexdigest()
    assert digest == "bbf6a314f243a1d86cc7d77ee7bdbd9f5cdac793b541c38cb240cf0bc5535b62", body


def test_ticks_follow_the_schedules_dst_rules() -> None:
    """Dagster's rules, which the schedules follow and so must the stamps: 02:00 in New York does not exist on
    8 March 2026 (the tick is 03:00 EDT); 01:00 happens twice on 1 November (the tick is the second)."""
    spring = latest_tick("0 2 * * *", datetime(2026, 3, 8, 12, tzinfo=UTC), "America/New_York")
    assert spring.isoformat() == "2026-03-08T03:00:00-04:00"
    after = ticks_after(datetime.fromisoformat("2026-11-01T00:00:00-04:00"), "0 1 * * *", "America/New_York")
    assert next(after).isoformat() == "2026-11-01T01:00:00-05:00"  # the doubled hour fires once, at its second 01:00
    assert next(after).isoformat() == "2026-11-02T01:00:00-05:00"
