"""The report stores: S3 multipart upload against moto (all or nothing), the local folder, the generatedfiles record."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError
from pymongo.database import Database

from intervalprocessing_dagster.reports.delivery import (
    CONTENT_TYPE,
    MIN_PART_SIZE,
    LocalReportStore,
    S3ReportStore,
    StoredFile,
    record_generated_file,
)

LINE = b"10000|123456789|Pending Review|HealthCare 123|02/24/2024|12500.00\n"


def _lines(total_bytes: int) -> Iterator[bytes]:
    for _ in range(total_bytes // len(LINE) + 1):
        yield LINE


def _failing_after(good_bytes: int) -> Iterator[bytes]:
    yield from _lines(good_bytes)
    raise ConnectionError("cursor lost mid-report")


def test_s3_upload_is_multipart_with_readable_key_and_content_type(s3_bucket: str) -> None:
    store = S3ReportStore(bucket=s3_bucket, prefix="GeneratedFiles/", part_size_bytes=MIN_PART_SIZE)
    body = b"".join(_lines(2 * MIN_PART_SIZE + 1000))  # three parts: two full ones and a short last one

    stored = store.write("DailyAuditInventory_03152024_030000.txt", _lines(2 * MIN_PART_SIZE + 1000))

    s3 = boto3.client("s3")
    assert stored == StoredFile(
        bucket=s3_bucket,
        location="GeneratedFiles/DailyAuditInventory_03152024_030000.txt",
        url=f"https://s3.console.aws.amazon.com/s3/object/{s3_bucket}"
        "?prefix=GeneratedFiles/DailyAuditInventory_03152024_030000.txt",
    )
    head = s3.head_object(Bucket=s3_bucket, Key=stored.location)
    assert head["ContentType"] == CONTENT_TYPE
    assert head["ETag"].endswith('-3"')  # S3's multipart ETag: "<md5 of part md5s>-<part count>"
    assert s3.get_object(Bucket=s3_bucket, Key=stored.location)["Body"].read() == body


def test_failure_mid_stream_leaves_no_object_and_no_open_upload(s3_bucket: str) -> None:
    store = S3ReportStore(bucket=s3_bucket, part_size_bytes=MIN_PART_SIZE)
    with pytest.raises(ConnectionError, match="cursor lost"):
        store.write("WeeklyMRRInventory_03152024_030000.txt", _failing_after(MIN_PART_SIZE + 10))

    s3 = boto3.client("s3")
    assert s3.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_a_failed_rewrite_keeps_the_previous_object(s3_bucket: str) -> None:
    store = S3ReportStore(bucket=s3_bucket)
    store.write("r.txt", iter([b"header\n", b"first\n"]))
    with pytest.raises(ConnectionError):
        store.write("r.txt", _failing_after(100))
    assert boto3.client("s3").get_object(Bucket=s3_bucket, Key="GeneratedFiles/r.txt")["Body"].read() == (
        b"header\nfirst\n"
    )


def test_part_size_below_the_s3_minimum_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 5242880"):
        S3ReportStore(bucket="b", part_size_bytes=1024)


def test_local_store_replaces_whole_files_and_leaves_no_partial(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet" / "there"
    store = LocalReportStore(directory=str(folder))
    store.write("r.txt", iter([b"a much longer first version\n"]))
    stored = store.write("r.txt", iter([b"short\n"]))  # the old OpenWrite kept the first version's tail
    assert Path(stored.location).read_bytes() == b"short\n"
    assert stored.bucket is None and stored.url == (folder / "r.txt").resolve().as_uri()

    with pytest.raises(ConnectionError):
        store.write("r.txt", _failing_after(100))
    assert [p.name for p in folder.iterdir()] == ["r.txt"]
    assert Path(stored.location).read_bytes() == b"short\n"


# A writer in its own process that writes one line, then waits forever (killed by the test).
_STUCK_WRITER = """
import sys, time
from intervalprocessing_dagster.reports.delivery import LocalReportStore
def chunks():
    yield b"first line of a report\\n"
    print("writing", flush=True)
    time.sleep(3600)
    yield b"never\\n"
LocalReportStore(directory=sys.argv[1]).write("DailyAuditInventory_03152024_030000.txt", chunks())
"""


def test_a_killed_writers_partial_file_is_removed_by_the_next_write_and_a_live_ones_is_not(tmp_path: Path) -> None:
    """SIGKILL leaves the temporary file behind (nothing runs in the killed process); the next write in the folder
    removes it, while a writer still writing keeps its own."""
    folder = tmp_path / "reports"
    killed = subprocess.Popen([sys.executable, "-c", _STUCK_WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline() == "writing\n"
    killed.kill()
    killed.wait(timeout=30)
    (orphan,) = folder.glob(".DailyAuditInventory_03152024_030000.txt.*.partial")
    assert not (folder / "DailyAuditInventory_03152024_030000.txt").exists()  # a hidden leftover, never the file

    store = LocalReportStore(directory=str(folder))
    writing, release = threading.Event(), threading.Event()

    def slow_lines() -> Iterator[bytes]:
        yield b"one\n"
        writing.set()
        release.wait(timeout=60)
        yield b"two\n"

    live = threading.Thread(target=store.write, args=("WeeklyAuditInventory_03152024_030000.txt", slow_lines()))
    live.start()
    try:
        assert writing.wait(timeout=30)
        (live_partial,) = folder.glob(".WeeklyAuditInventory_03152024_030000.txt.*.partial")
        store.write("DailyAuditInventory_03152024_030000.txt", iter([b"whole\n"]))
        assert not orphan.exists()
        assert live_partial.exists()  # held by the writer still at work
    finally:
        release.set()
        live.join(timeout=60)
    assert sorted(p.name for p in folder.iterdir()) == [
        "DailyAuditInventory_03152024_030000.txt",
        "WeeklyAuditInventory_03152024_030000.txt",
    ]
    assert (folder / "WeeklyAuditInventory_03152024_030000.txt").read_bytes() == b"one\ntwo\n"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_local_store_files_get_the_umask_mode_not_the_temp_files_0600(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        stored = LocalReportStore(directory=str(tmp_path)).write("r.txt", iter([b"x\n"]))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(Path(stored.location).stat().st_mode) == mode


def test_generated_file_record_is_upserted_on_its_location(mongo_db: Database) -> None:
    stored = StoredFile(bucket="intervalprocessing", location="GeneratedFiles/r.txt", url="u")
    for size in (10, 12):
        record_generated_file(
            mongo_db,
            stored,
            file_name="r.txt",
            size=size,
            source="DailyAuditInventoryProcessor",
            created=datetime(2024, 3, 15, 8, tzinfo=UTC),
            sha256="ab",
            rows=1,
        )
    [record] = mongo_db.generatedfiles.find({}, {"_id": 0})
    assert record == {
        "bucket": "intervalprocessing",
        "location": "GeneratedFiles/r.txt",
        "fileName": "r.txt",
        "dateCreated": datetime(2024, 3, 15, 8, tzinfo=UTC),
        "fileSize": "12",
        "source": "DailyAuditInventoryProcessor",
        "sha256": "ab",
        "rows": 1,
    }
