"""Where step outputs live, and why a step of the same run process takes its input from memory.

Outputs are stored by Dagster's own IO managers: the filesystem one locally, dagster-aws's S3 pickle IO manager in
production, so that a re-execution from failure or a run retry, which runs in a new ECS task with an empty disk, can
load what the first task's steps produced (``definitions.py`` chooses). That store is still written for every
output. What changes is the load: a data-change run executes all its steps in one process (``in_process_executor``),
so every automation step's input, the task its loader yielded moments before, is already in that process's memory,
and reading it back cost one S3 ``GetObject`` per automation in production (a network round trip each; on the
benchmark's local moto S3, with no network latency, the loads alone added about 0.01 s per automation to a run:
bench/README.md) and a file read and a log event locally. An output this process did not handle (a re-execution's parent run, a step that ran in another process) is loaded from
the store as before.
"""

from __future__ import annotations

from typing import Any

from dagster import FilesystemIOManager, InitResourceContext, InputContext, IOManager, OutputContext
from dagster_aws.s3 import S3PickleIOManager


class _RemembersOutputs:
    """Mixin for one of Dagster's IO manager classes: its IO manager, wrapped by ``_RememberingIOManager``."""

    def create_io_manager(self, context: InitResourceContext) -> IOManager:
        return _RememberingIOManager(super().create_io_manager(context))  # type: ignore[misc]


class LocalStepOutputs(_RemembersOutputs, FilesystemIOManager):
    """Dagster's ``FilesystemIOManager`` (the instance's storage folder unless ``base_dir`` says otherwise)."""


class S3StepOutputs(_RemembersOutputs, S3PickleIOManager):
    """dagster-aws's ``S3PickleIOManager``: every output a pickle under ``s3_prefix`` in ``s3_bucket``."""


class _RememberingIOManager(IOManager):
    """Stores through ``store`` and keeps each output until a step of this process loads it (once: a second load,
    such as a retried step's, reads the store)."""

    def __init__(self, store: IOManager) -> None:
        self._store = store
        self._handled: dict[tuple[str, ...], Any] = {}

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        self._store.handle_output(context, obj)
        self._handled[tuple(context.get_identifier())] = obj

    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        key = tuple(upstream.get_identifier()) if upstream is not None else None
        if key in self._handled:
            return self._handled.pop(key)
        return self._store.load_input(context)
