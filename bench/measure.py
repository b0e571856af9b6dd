"""Run ONE scenario in this process and print its measurements: ``python -m bench.measure '<json spec>'``.

Why a process per scenario: peak RSS (``VmHWM``) is a per-process high-water mark, so only a fresh process gives
each scenario its own figure; a scenario that leaks or buffers cannot hide in another one's peak, and the old
algorithm's unbounded list cannot inflate the platform's number. Inside the process the timed section is only the
scenario itself: imports, the client connection and the post-run check happen outside it.

What is measured around the timed section:

* wall time (``perf_counter``) and client CPU time (``getrusage``);
* server CPU time, read from ``/proc/<pid>/stat`` of the server process when the benchmark started it, and the
  CPU time of the benchmark's own process, which only serves moto S3 while it waits for this one;
* every command the client sent, counted by name with a pymongo ``CommandListener`` registered globally *before*
  any client exists, so clients the platform creates itself are counted too;
* peak RSS: the high-water mark is reset (``/proc/self/clear_refs`` = 5) right before the timed section, so the
  figure is the peak *during* the scenario; ``rss_baseline_mb`` is what the process held before it started.

After the timed section the outcome is checked (documents carrying the scenario's mark; output rows and SHA-256),
so a fast-but-wrong scenario cannot pass unnoticed.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from pymongo import MongoClient, monitoring

from bench import dataset
from bench.baselines import JOURNAL_FLOOR_COLLECTION
from bench.scenarios import AUTOMATIONS_FAMILY, SCENARIOS, Context, Work
from intervalprocessing_dagster.data_change.journal import JOURNAL_COLLECTION
from intervalprocessing_dagster.data_change.ledger import LEDGER_COLLECTION

RESULT_PREFIX = "BENCH-RESULT "


class CommandCounter(monitoring.CommandListener):
    """Counts commands sent to the server, by command name (``update``, ``getMore``, ``aggregate``...)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self._counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Only starts are counted; a command that fails still reached the server."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only starts are counted; a command that fails still reached the server."""

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


def main(argv: list[str]) -> None:
    """Measure the scenario described by the JSON in ``argv[1]`` and print one ``BENCH-RESULT`` line."""
    spec = json.loads(argv[1])
    counter = CommandCounter()
    monitoring.register(counter)
    scenario = SCENARIOS[spec["scenario"]]
    function: Callable[[Context], Work] = _load(scenario.target)
    client: MongoClient = MongoClient(spec["uri"], tz_aware=True, appname="intervalprocessing-bench")
    client.admin.command("ping")
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    context = Context(
        db=client[spec["database"]], n=spec["n"], mark=spec["mark"], out_dir=out_dir, bucket=spec["bucket"]
    )
    if scenario.prepare:
        _load(scenario.prepare)(context)

    gc.collect()
    rss_baseline_kb = _proc_status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    commands_before = counter.snapshot()
    server_cpu_before = _process_cpu_seconds(spec.get("server_pid"))
    s3_cpu_before = _process_cpu_seconds(spec.get("s3_pid"))
    cpu_before = _own_cpu_seconds()
    started = time.perf_counter()
    work = function(context)
    wall = time.perf_counter() - started
    cpu = _own_cpu_seconds() - cpu_before
    server_cpu_after = _process_cpu_seconds(spec.get("server_pid"))
    s3_cpu_after = _process_cpu_seconds(spec.get("s3_pid"))
    commands = counter.snapshot() - commands_before
    peak_rss_kb = _proc_status_kb("VmHWM")

    result = {
        "scenario": spec["scenario"],
        "family": scenario.family,
        "variant": scenario.variant,
        "n": context.n,
        "wall_seconds": round(wall, 4),
        "items": work.items,
        "bytes": work.bytes,
        "commands": dict(sorted(commands.items())),
        "commands_total": sum(commands.values()),
        "client_cpu_seconds": round(cpu, 3),
        "server_cpu_seconds": (
            None
            if server_cpu_before is None or server_cpu_after is None
            else round(server_cpu_after - server_cpu_before, 3)
        ),
        "s3_cpu_seconds": (
            None if s3_cpu_before is None or s3_cpu_after is None else round(s3_cpu_after - s3_cpu_before, 3)
        ),
        "rss_baseline_mb": round(rss_baseline_kb / 1024, 1),
        "peak_rss_mb": round(peak_rss_kb / 1024, 1),
        "detail": work.detail,
        "check": _check(context, work, scenario.family),
    }
    client.close()
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def _load(target: str) -> Callable[..., Any]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _check(context: Context, work: Work, family: str) -> dict[str, Any]:
    """Evidence the scenario did the whole job: marked documents, or the output's row count and SHA-256.

    For a cadence of automations: every automation's documents carry the mark, and a whole-run scenario left one
    ``automationruns`` record per automation, each ``succeeded``.
    """
    if family == AUTOMATIONS_FAMILY:
        expected = context.n * dataset.DOCUMENTS_PER_AUTOMATION
        marked = sum(
            context.db[name].count_documents({dataset.MARK_FIELD: context.mark})
            for name in (dataset.AUDITS, dataset.MRRS)
        )
        check = {"marked_documents": marked, "expected_documents": expected}
        if "automation_steps" in work.detail:
            check["succeeded_run_records"] = context.db[LEDGER_COLLECTION].count_documents(
                {"status": "succeeded", "runId": work.detail["run_id"]}
            )
        return check
    if work.output is None:
        check = {
            "marked_documents": sum(
                context.db[name].count_documents({dataset.MARK_FIELD: context.mark})
                for name in (dataset.AUDITS, dataset.MRRS)
            )
        }
        if family == "journal":  # one entry per changed document, every platform page written
            check["journaled_documents"] = _journaled(context)
        return check
    digest = hashlib.sha256()
    lines = 0
    for chunk in _output_chunks(work.output):
        digest.update(chunk)
        lines += chunk.count(b"\n")
    return {"rows": lines - 1, "sha256": digest.hexdigest(), "output": work.output}


def _journaled(context: Context) -> int:
    """Documents the scenario journaled: the platform's pages, or the floor's plain entries; -1 if a platform page is
    not ``written``."""
    if context.db[JOURNAL_COLLECTION].count_documents({"runId": f"bench-{context.mark}", "state": {"$ne": "written"}}):
        return -1
    pages = context.db[JOURNAL_COLLECTION].aggregate(
        [
            {"$match": {"runId": f"bench-{context.mark}"}},
            {"$group": {"_id": None, "documents": {"$sum": {"$size": "$documents"}}}},
        ]
    )
    platform = next(pages, {"documents": 0})["documents"]
    return platform or context.db[JOURNAL_FLOOR_COLLECTION].count_documents({"mark": context.mark})


def _output_chunks(output: str) -> Iterator[bytes]:
    if output.startswith("s3://"):
        bucket, _, key = output.removeprefix("s3://").partition("/")
        yield from boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20)
        return
    with open(output, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


def _proc_status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} missing from /proc/self/status")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of another process (the server), or None when it is not ours to see."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main(sys.argv)
