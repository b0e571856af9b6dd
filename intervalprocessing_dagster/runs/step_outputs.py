"""Where step outputs live, and why a step of the same run process takes its input from memory.

Outputs are stored by Dagster's own IO managers: the filesystem one locally, dagster-aws's S3 pickle IO manager in
production, so that a re-execution from failure or a run retry, which runs in a new ECS task with an empty disk, can
load what the first task's steps produced (``definitions.py`` chooses). That store is still written for every
output. What changes is the load: a data-change run executes all its steps in one process (``in_process_executor``),
so every automation step's input, the task its loader yielded moments before, is already in that process's memory,
and reading it back cost one S3 ``GetObject`` per automation in production (a network round trip each; on the
benchmark's local moto S3, with no network latency, the loads alone added about 0.01 s per automation to a run:
bench/README.md) and a file read and a log event locally. An output this process did not handle (a re-execution's
parent run, a step that ran in another process) is loaded from the store as before.

What a run stored goes with the run when the history retention job deletes it (``history/retention.py``): an op's
output lives under a folder of its own run, ``<base_dir>/<run_id>/`` on disk and ``<s3_prefix>/storage/<run_id>/``
in S3 (the IO managers' own layout), and ``LocalStepOutputStore`` / ``S3StepOutputStore`` delete that folder. Asset
outputs are stored per asset key, not per run, and are left alone.
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from pathlib import Path
from typing import Any

from dagster import (
    ConfigurableResource,
    DagsterInstance,
    FilesystemIOManager,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
)
from dagster_aws.s3 import S3PickleIOManager, S3Resource
from pydantic import Field

# S3 DeleteObjects takes at most this many keys per call.
_S3_DELETE_BATCH = 1000


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


class StepOutputStore(ConfigurableResource):
    """Where the step outputs of the code location's IO manager are stored, to delete a run's (resource key
    ``step_output_store``; ``definitions.py`` gives the one that matches ``io_manager``)."""

    @abstractmethod
    def delete_run(self, run_id: str, instance: DagsterInstance) -> int:
        """Delete every output stored for ``run_id``; the number of files or objects deleted (0 when none)."""


class LocalStepOutputStore(StepOutputStore):
    """``LocalStepOutputs``' folder: ``base_dir``, or the instance's storage folder as the IO manager defaults to."""

    base_dir: str | None = Field(default=None, description="LocalStepOutputs' base_dir, if it was given one.")

    def delete_run(self, run_id: str, instance: DagsterInstance) -> int:
        folder = Path(self.base_dir or instance.storage_directory()) / run_id
        if not folder.is_dir():
            return 0
        files = sum(1 for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder)
        return files


class S3StepOutputStore(StepOutputStore):
    """``S3StepOutputs``' objects: ``<s3_prefix>/storage/<run_id>/...`` in ``s3_bucket``."""

    s3_resource: S3Resource = Field(description="The S3 client's settings (default: the AWS chain, the task role).")
    s3_bucket: str = Field(description="S3StepOutputs' bucket (STEP_OUTPUTS_S3_BUCKET).")
    s3_prefix: str = Field(description="S3StepOutputs' prefix (STEP_OUTPUTS_S3_PREFIX).")

    def delete_run(self, run_id: str, instance: DagsterInstance) -> int:
        client = self.s3_resource.get_client()
        folder = f"{self.s3_prefix.strip('/')}/storage/{run_id}/"
        deleted = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.s3_bucket, Prefix=folder):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            for start in range(0, len(keys), _S3_DELETE_BATCH):
                batch = keys[start : start + _S3_DELETE_BATCH]
                response = client.delete_objects(Bucket=self.s3_bucket, Delete={"Objects": batch, "Quiet": True})
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise RuntimeError(
                        f"S3 refused to delete {len(response['Errors'])} step output(s) of run {run_id} in "
                        f"s3://{self.s3_bucket}/{folder}, e.g. {first.get('Key')}: {first.get('Code')} "
                        f"{first.get('Message')}"
                    )
                deleted += len(batch)
        return deleted
