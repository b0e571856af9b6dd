"""Where generated files go (resource key ``report_store``), and the ``generatedfiles`` record of each one.

``S3ReportStore`` (``REPORTS_S3_BUCKET`` set) streams a multipart upload, credentials from the default AWS chain;
``LocalReportStore`` writes ``REPORTS_LOCAL_DIR`` through a locked temporary file renamed into place, sweeping
orphans of killed writers. Either way no reader sees a partial file, and the key, ``<prefix><fileName>`` from the run's
stamp, is the same on a retry, so a retry rewrites the file and ``record_generated_file`` upserts its record. How each
store guarantees it: docs/decisions/report-delivery.md.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field, field_validator
from pymongo.database import Database

GENERATED_FILES_COLLECTION = "generatedfiles"
CONTENT_TYPE = "text/plain; charset=utf-8"
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
# The local store's temporary files: ``.<file name>.<random><PARTIAL_SUFFIX>`` beside the final file.
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class StoredFile:
    """Where a file landed: ``bucket`` is None for the local store, ``location`` the key or the absolute path."""

    bucket: str | None
    location: str
    url: str


class ReportStore(ConfigurableResource):
    """Writes one report file from a stream of byte chunks, all or nothing."""

    @abstractmethod
    def write(self, file_name: str, chunks: Iterable[bytes]) -> StoredFile:
        """Consume ``chunks`` into ``file_name``; on any error nothing is left at the final location."""


class LocalReportStore(ReportStore):
    """A folder on the local disk (the embedded default)."""

    directory: str = Field(description="Folder the files are written into (REPORTS_LOCAL_DIR); created if missing.")

    def write(self, file_name: str, chunks: Iterable[bytes]) -> StoredFile:
        folder = Path(self.directory).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / file_name
        for orphan in remove_orphaned_partials(folder):
            get_dagster_logger().warning(f"removed {orphan}, the partial file of a writer that was killed")
        with _folder_lock(folder, fcntl.LOCK_SH):
            handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{file_name}.", suffix=PARTIAL_SUFFIX)
            fcntl.flock(handle, fcntl.LOCK_EX)  # held until the descriptor closes, after the rename
        try:
            # mkstemp creates 0600; give the final file the mode an ordinary create would, so consumers running
            # as another user can read it.
            os.fchmod(handle, 0o666 & ~_current_umask())
            with os.fdopen(os.dup(handle), "wb") as temp:
                for chunk in chunks:
                    temp.write(chunk)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        finally:
            os.close(handle)
        return StoredFile(bucket=None, location=str(target), url=target.as_uri())


def remove_orphaned_partials(folder: Path) -> list[str]:
    """Delete the temporary files in ``folder`` that no live writer holds (their writers were killed); their names.

    Under the folder's exclusive lock, so no writer is between creating its file and locking it."""
    removed = []
    with _folder_lock(folder, fcntl.LOCK_EX):
        for partial in folder.glob(f".*{PARTIAL_SUFFIX}"):
            try:
                handle = os.open(partial, os.O_RDONLY)
            except FileNotFoundError:  # its writer finished (renamed it) or failed (removed it) meanwhile
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                partial.unlink()
                removed.append(partial.name)
            except (BlockingIOError, FileNotFoundError):  # a live writer holds it, or just renamed it whole
                continue
            finally:
                os.close(handle)
    return removed


@contextmanager
def _folder_lock(folder: Path, operation: int) -> Iterator[None]:
    """``flock`` on the folder itself (Linux and macOS lock a directory's descriptor like a file's): no lock file."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, operation)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``, no race with other
    threads creating files); elsewhere set and restored at once, the only portable way to read it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


class S3ReportStore(ReportStore):
    """An S3 bucket and key prefix (production), reached with the default AWS credential chain."""

    bucket: str = Field(description="Bucket the files are uploaded to (REPORTS_S3_BUCKET).")
    prefix: str = Field(default="GeneratedFiles/", description="Key prefix (REPORTS_S3_PREFIX), ending in '/'.")
    part_size_bytes: int = Field(
        default=DEFAULT_PART_SIZE,
        description="Bytes buffered per multipart part; S3 needs at least 5 MiB, and allows 10,000 parts.",
    )

    @field_validator("part_size_bytes")
    @classmethod
    def _at_least_s3_minimum(cls, value: int) -> int:
        if value < MIN_PART_SIZE:
            raise ValueError(f"part_size_bytes must be at least {MIN_PART_SIZE} (S3's minimum part size)")
        return value

    def write(self, file_name: str, chunks: Iterable[bytes]) -> StoredFile:
        import boto3  # here, not at module level: every run loads this module, only an S3 upload needs boto3 (~60 ms)

        key = f"{self.prefix}{file_name}"
        client = boto3.client("s3")
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE)["UploadId"]
        try:
            parts: list[dict[str, object]] = []
            buffer = bytearray()
            for chunk in chunks:
                buffer += chunk
                if len(buffer) >= self.part_size_bytes:
                    parts.append(self._upload_part(client, key, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()
            if buffer or not parts:
                parts.append(self._upload_part(client, key, upload_id, len(parts) + 1, buffer))
            client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as failure:
            try:
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as abort_failure:  # keep the original error; say what is left behind
                failure.add_note(
                    f"aborting multipart upload {upload_id} of s3://{self.bucket}/{key} also failed: "
                    f"{abort_failure!r}; a bucket lifecycle rule should expire incomplete uploads"
                )
            raise
        return StoredFile(
            bucket=self.bucket,
            location=key,
            url=f"https://s3.console.aws.amazon.com/s3/object/{quote(self.bucket)}?prefix={quote(key)}",
        )

    def _upload_part(self, client: Any, key: str, upload_id: str, number: int, body: bytearray) -> dict[str, object]:
        response = client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(body)
        )
        return {"PartNumber": number, "ETag": response["ETag"]}


def record_generated_file(
    db: Database,
    stored: StoredFile,
    *,
    file_name: str,
    size: int,
    source: str,
    created: datetime,
    sha256: str,
    rows: int,
) -> None:
    """Upsert the file's ``generatedfiles`` record, keyed on where it is, so a rewrite updates the one record.

    The old fields keep their old meaning and types (``fileSize`` is a string, ``source`` the processor name);
    ``sha256`` and ``rows`` are new, for checking a delivered file against its run.
    """
    db[GENERATED_FILES_COLLECTION].update_one(
        {"bucket": stored.bucket, "location": stored.location},
        {
            "$set": {
                "fileName": file_name,
                "dateCreated": created,
                "fileSize": str(size),
                "source": source,
                "sha256": sha256,
                "rows": rows,
            }
        },
        upsert=True,
    )
