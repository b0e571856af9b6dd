"""The file-generation modules' docstrings point at code that exists (a renamed or moved function leaves no stale
``module.name`` reference behind)."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import intervalprocessing_dagster.reports as reports_package

REPORT_MODULES = sorted(
    f"{reports_package.__name__}.{module.name}" for module in pkgutil.iter_modules(reports_package.__path__)
)
# ``delivery.record_generated_file``, ``intervalprocessing_dagster.definitions.build_resources`` (file names such
# as ``layouts.py`` match too and are skipped below).
_REFERENCE = re.compile(r"``([a-z_]+(?:\.[A-Za-z_]\w*)+)``")


def _resolve(reference: str) -> object:
    """The object a dotted reference names: a reports module (``delivery.X``) or a full module path."""
    parts = reference.split(".")
    if parts[0] != "intervalprocessing_dagster":
        parts = [*reports_package.__name__.split("."), *parts]
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(reference)


@pytest.mark.parametrize("module_name", REPORT_MODULES)
def test_docstring_references_resolve(module_name: str) -> None:
    doc = importlib.import_module(module_name).__doc__ or ""
    for reference in _REFERENCE.findall(doc):
        if reference.endswith(".py") or reference.split(".")[0] not in (
            "intervalprocessing_dagster",
            *(name.rsplit(".", 1)[1] for name in REPORT_MODULES),
        ):
            continue
        try:
            _resolve(reference)
        except (ModuleNotFoundError, AttributeError) as exc:
            pytest.fail(f"{module_name} docstring refers to ``{reference}``, which does not exist: {exc}")
