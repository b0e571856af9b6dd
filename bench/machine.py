"""The machine a run measured, recorded with its results: absolute figures mean nothing without it."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def describe(server_version: str, server_description: str, load_at_start: tuple[float, ...]) -> dict[str, Any]:
    """CPU count and model, RAM, OS, Python, the versions of everything on the measured path, and the load.

    The load average at the start and end of the run says whether other work shared the CPUs, which is the first
    thing to ask of a surprising figure.
    """
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gb": round(_mem_total_kb() / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "server": server_description,
        "server_version": server_version,
        "load_average": {"start": [round(x, 2) for x in load_at_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "packages": {name: _version(name) for name in ("SecantusDB", "pymongo", "dagster", "boto3", "moto")},
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
