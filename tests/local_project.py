"""A new user's setup in a temporary folder: the project's dagster.yaml and workspace.yaml, no DAGSTER_HOME, the
dagster CLI.

Each test gets its own folder so the instance (``.intervalprocessing/dagster_home`` under it) starts empty and
nothing touches the developer's. MongoDB is the test's SecantusDB database (``MONGODB_URI``), seeded with the demo
data, rather than a second embedded server per test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

REPO = Path(__file__).parents[1]
DAGSTER = [sys.executable, "-m", "dagster"]
CODE_LOCATION = ["-m", "intervalprocessing_dagster.definitions"]
# Dagster mirrors a run's captured output (its steps' lines) to the console through `tail -F`, stopped the moment
# the capture ends: under heavy load the last lines can be lost (dagster-io/dagster#23336; it made CI fail once, on a
# step's STEP_FAILURE line). A test that reads a step's line from the console waits that race out with Dagster's own
# knob: the seconds to wait before stopping the mirror, one inotify wake-up or two 1 s polls with a margin.
WAIT_FOR_CONSOLE_MIRROR = {"DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH": "2"}
STOP_SECONDS = 20.0  # about 4 s measured on the shared 2-core machine; a hang never ends, so the margin is free
# How a person stops the local UI: Ctrl-C reaches every process of the terminal's group; kill, only the command.
STOP_SIGNALS = pytest.mark.parametrize(
    ("sig", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"]
)


def new_project(folder: Path) -> Path:
    """``folder`` set up as the project root is for a user: the committed dagster.yaml (the instance) and
    workspace.yaml (the code location ``dagster dev`` loads, under its name), nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, folder / name)
    return folder


def user_env(mongo_uri: str, database: str) -> dict[str, str]:
    """The environment of a user who exported nothing Dagster-related (a developer's DAGSTER_HOME is dropped)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DAGSTER_")}
    return {**env, "MONGODB_URI": mongo_uri, "MONGODB_DATABASE": database}


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """``query`` sent to the webserver at ``url`` as the UI sends it; its data (an error fails the test)."""
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 30 s: a server a test or the benchmark started."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def execute_job(project: Path, env: dict[str, str], job: str, tags: dict[str, str] | None = None) -> str:
    """``dagster job execute`` in ``project``; its output (stdout and stderr)."""
    completed = subprocess.run(
        [*DAGSTER, "job", "execute", *CODE_LOCATION, "-j", job, *(["--tags", json.dumps(tags)] if tags else [])],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return completed.stdout + completed.stderr


def run_id(output: str, job: str = "") -> str:
    """The id of the run that ``dagster job execute`` printed as succeeded (of ``job``, if given)."""
    job_part = re.escape(f" - {job}") if job else ""
    found = re.search(rf"{job_part} - (?P<run_id>[0-9a-f-]{{36}}) - \d+ - RUN_SUCCESS - ", output)
    assert found, output[-3000:]
    return found["run_id"]


@dataclass
class DagsterDev:
    """A running ``dagster dev``: its process (leader of its own process group), URL and log."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def group(self) -> list[str]:
        """``pid command`` of every process still in dagster dev's process group (its services and their children)."""
        listing = subprocess.run(
            ["ps", "-ww", "-o", "pid=,stat=,args=", "-g", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [line.strip() for line in listing.splitlines() if line.strip() and not line.split()[1].startswith("Z")]

    def stop(self, sig: signal.Signals, *, to_group: bool, timeout: float) -> float | None:
        """Send ``sig`` (to the whole group, as Ctrl-C in a terminal does, or to dagster dev alone, as ``kill``
        does); seconds until every process of the group had exited, or None if some were still up at ``timeout``."""
        started = time.monotonic()
        if to_group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None and not self.group():
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    def assert_stops(self, sig: signal.Signals, *, to_group: bool) -> None:
        """:meth:`stop` within ``STOP_SECONDS``, or fail with what is still running and the end of the log."""
        seconds = self.stop(sig, to_group=to_group, timeout=STOP_SECONDS)
        assert seconds is not None, (
            f"still running {STOP_SECONDS}s after {sig.name}: {self.group()}\n{self.log_path.read_text()[-3000:]}"
        )

    def kill(self) -> None:
        """Last resort after a failed stop, so a test never leaves processes behind."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


@contextmanager
def served_code_location(folder: Path, env: dict[str, str]) -> Iterator[WorkspaceProcessContext]:
    """The instance and the code location as ``dagster dev`` has them in ``folder`` (its relative paths too), in this
    process: what the UI's GraphQL runs against."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in ("MONGODB_URI", "MONGODB_DATABASE"):
            patch.setenv(name, env[name])
        patch.delenv("DAGSTER_HOME", raising=False)
        with (
            DagsterInstance.from_config(str(folder)) as instance,
            WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])) as context,
        ):
            yield context


@contextmanager
def dagster_dev(project: Path, env: dict[str, str], command: Sequence[str] = (*DAGSTER, "dev")) -> Iterator[DagsterDev]:
    """``dagster dev`` (or ``command``, which takes its options: ``intervalprocessing-dev``) in ``project`` on a free
    port, up and serving; killed afterwards if a test left it up.

    Without code-location arguments, as the README runs it: it loads workspace.yaml's location, under its name."""
    port = free_port()
    log_path = project / "dagster-dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, like a terminal's foreground job
            preexec_fn=_terminal_signals,
        )
    dev = DagsterDev(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_until_serving(dev.url, process, log_path)
        yield dev
    finally:
        if process.poll() is None or dev.group():
            dev.kill()


@contextmanager
def webserver(
    project: Path, env: dict[str, str], *, read_only: bool = False, module: str = "dagster_webserver"
) -> Iterator[str]:
    """``dagster-webserver`` on ``project``'s workspace and instance, as the production services run it (the viewer
    service with ``--read-only``; the operators' with ``module="intervalprocessing_dagster.webserver"``, the same
    command inside the sign-on and audit wrapper); its URL while it serves."""
    port = free_port()
    log_path = project / f"webserver-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "workspace.yaml",
                *(["--read-only"] if read_only else []),
            ],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, log_path)
        yield url
    finally:
        stop_process(process)


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while not _serving(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.args[:4]} did not come up:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def _terminal_signals() -> None:
    """SIGINT and SIGTERM as a terminal leaves them (default), even when the test runner was started with them
    ignored (as a background job of a non-interactive shell is): an ignored signal is inherited, and dagster dev
    with SIGINT ignored never stops (docs/runbook.md "Stopping `dagster dev`")."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _serving(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=2).ok
    except requests.ConnectionError:
        return False
