"""Where step outputs live, and why a step of the same run process takes its input from memory.

Outputs are stored by Dagster's own IO managers (disk locally, S3 in production, so a re-execution in a new task can
load them); an output this process produced is loaded from memory instead of one S3 read per automation. What a run
stored lives under its run id's folder, which ``LocalStepOutputStore`` / ``S3StepOutputStore`` delete with the run.
Measurements: docs/decisions/step-outputs-from-memory.md.
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
