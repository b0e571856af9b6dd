"""What Dagster costs per run: ``dagster job execute`` of a cadence with zero automations vs a bare import.

Every scheduled run pays this before the first document is touched (process start, loading the code location,
run storage, the event log, each op's process), so on a quarter-hourly cadence it is the floor of every run's
duration. Zero automations isolates it: the job reads an empty ``dataupdateconfigs`` and does nothing else.

Both commands run with the benchmark's MongoDB (``MONGODB_URI``, an empty ``bench_overhead`` database) and a fresh
``DAGSTER_HOME`` and ``INTERVALPROCESSING_LOCAL_DIR``, so nothing is read from, or left in, a developer's setup.
Each is repeated and the median reported, because process start times are noisy.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

JOB = "hourly_data_change_job"
REPEATS = 3


def measure(uri: str, scratch: Path) -> dict[str, Any]:
    """Median wall seconds of each command, and the job's overhead over the bare import."""
    home = scratch / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MONGODB_URI": uri,
        "MONGODB_DATABASE": "bench_overhead",
        "DAGSTER_HOME": str(home),
        "INTERVALPROCESSING_LOCAL_DIR": str(scratch / "local"),
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    commands = {
        "bare_import": [sys.executable, "-c", "import intervalprocessing_dagster"],
        "job_execute": [dagster, "job", "execute", "-m", "intervalprocessing_dagster.definitions", "-j", JOB],
    }
    figures: dict[str, Any] = {"job": JOB, "repeats": REPEATS}
    for name, command in commands.items():
        timings = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            completed = subprocess.run(command, env=env, capture_output=True, text=True)
            timings.append(time.perf_counter() - started)
            if completed.returncode != 0:
                tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
                figures["error"] = f"{' '.join(command[-4:])} exited {completed.returncode}: " + " | ".join(tail)
                return figures
        figures[f"{name}_seconds"] = round(statistics.median(timings), 3)
    figures["overhead_seconds"] = round(figures["job_execute_seconds"] - figures["bare_import_seconds"], 3)
    print(f"overhead: {figures}", file=sys.stderr)
    return figures
