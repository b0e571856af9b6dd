"""``intervalprocessing-dev``: ``dagster dev``'s two services (the webserver and the daemon, on ``dagster dev``'s
instance and workspace options) with the operators' webserver in place of ``dagster-webserver``, so every change made
in the local UI leaves an audit line naming the OS user. ``dagster dev`` has no hook for another webserver app; why
this command starts its services as it does, and how it differs from ``dagster dev``:
docs/decisions/local-ui-audited.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import yaml
from dagster import DagsterInstance, serialize_value
from dagster_shared.cli import workspace_options
from dagster_shared.ipc import interrupt_ipc_subprocess, open_ipc_subprocess

log = logging.getLogger("intervalprocessing.dev")

#: How long a service has to stop after its interrupt before it is killed.
STOP_SECONDS = 30
#: How often the services are checked for having exited.
_POLL_SECONDS = 0.5
_LOG_LEVELS = click.Choice(["critical", "error", "warning", "info", "debug"], case_sensitive=False)


@dataclass
class _Service:
    """One child: what it is called in messages, and its process."""

    name: str
    process: subprocess.Popen[bytes]

    def request_stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                interrupt_ipc_subprocess(self.process)


class _StopRequested:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``) set a flag the main loop reads, so a signal never lands halfway
    through starting a service (which would leave it running). Installed whatever was inherited: a parent started
    with SIGINT ignored (a background job of a script) still stops on it, and its services, which then start with
    the default handling, stop on the interrupt it sends them (docs/runbook.md "Stopping `dagster dev`" has the case
    where ``dagster dev`` does not)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = True


@contextlib.contextmanager
def dev_instance() -> Iterator[DagsterInstance]:
    """The instance ``dagster dev`` uses in the current folder (see the module docstring)."""
    cwd = Path.cwd()
    config = cwd / "dagster.yaml"
    home = os.environ.get("DAGSTER_HOME")
    if home:
        if config.exists() and Path(home).resolve() != cwd.resolve():
            log.warning("DAGSTER_HOME is %s: the instance is configured by its dagster.yaml, not by %s", home, config)
        with DagsterInstance.get() as instance:
            yield instance
        return
    overrides = (yaml.safe_load(config.read_text()) or {}) if config.exists() else {}
    with tempfile.TemporaryDirectory(prefix=".tmp_dagster_home_", dir=cwd) as tempdir:
        log.info(
            "Instance configured by %s; the temporary directory %s (removed on exit) holds only what that leaves "
            "unplaced",
            config if config.exists() else "Dagster's defaults (no dagster.yaml here, no DAGSTER_HOME)",
            tempdir,
        )
        with DagsterInstance.local_temp(tempdir, overrides=overrides) as instance:
            yield instance


def daemon_executable() -> str:
    """``dagster-daemon``, from the scripts folder of this Python environment (where this command is installed)."""
    scripts = Path(sysconfig.get_path("scripts"))
    executable = scripts / ("dagster-daemon.exe" if sys.platform == "win32" else "dagster-daemon")
    if not executable.exists():
        raise click.UsageError(f"{executable} does not exist: install dagster in this environment ({sys.prefix})")
    return str(executable)


def workspace_args(params: list[click.Parameter], values: Mapping[str, Any]) -> list[str]:
    """The workspace options as given, back as command-line arguments for the services (each takes the same ones)."""
    args: list[str] = []
    for param in params:
        if not isinstance(param, click.Option) or param.name not in values:
            continue
        value, flag = values[param.name], max(param.opts, key=len)
        if param.is_flag:
            args += [flag] if value else []
        elif param.multiple:
            for item in value or ():
                args += [flag, str(item)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def _start(name: str, command: list[str], env: Mapping[str, str]) -> _Service:
    process = open_ipc_subprocess(command, env=env)
    log.info("Started the %s (pid %s)", name, process.pid)
    return _Service(name, process)


def _stop(services: list[_Service]) -> None:
    """An interrupt to every service still running, then a wait; a service still up after ``STOP_SECONDS`` is
    killed."""
    for service in services:
        service.request_stop()
    deadline = time.monotonic() + STOP_SECONDS
    for service in services:
        try:
            service.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "The %s (pid %s) did not stop within %s s: killed", service.name, service.process.pid, STOP_SECONDS
            )
            service.process.kill()
            service.process.wait()


@click.command(
    name="intervalprocessing-dev",
    help=(
        "dagster dev with the operators' webserver: the local UI and the daemon on one instance, every change made "
        "in the UI written to the audit log with the OS user (intervalprocessing_dagster/webserver/dev.py)."
    ),
    context_settings={"help_option_names": ["--help"], "max_content_width": 120},  # -h is the host, as in dagster dev
)
@click.option("--host", "-h", help="Host of the webserver (default 127.0.0.1).")
@click.option("--port", "-p", type=click.INT, help="Port of the webserver (default 3000).")
@click.option("--log-level", default="info", show_default=True, type=_LOG_LEVELS, help="Log level of the services.")
@click.option(
    "--log-format",
    default="colored",
    show_default=True,
    type=click.Choice(["colored", "json", "rich"], case_sensitive=False),
    help="Log format of the services.",
)
@click.option(
    "--code-server-log-level",
    default="warning",
    show_default=True,
    type=_LOG_LEVELS,
    help="Log level of the code servers the services start.",
)
@click.option(
    "--live-data-poll-rate",
    default=2000,
    show_default=True,
    type=click.INT,
    help="How often the UI polls for asset data (ms).",
)
@workspace_options
@click.pass_context
def command(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    log_level: str,
    log_format: str,
    code_server_log_level: str,
    live_data_poll_rate: int,
    **workspace_options_given: Any,
) -> None:
    """Start the webserver and the daemon on one instance; return when stopped, fail if a service exited."""
    workspace = workspace_args(ctx.command.params, workspace_options_given)
    stop = _StopRequested()
    daemon = daemon_executable()
    # As dagster dev: code-location load errors shown the way dagster dev shows them.
    env = {**os.environ, "DAGSTER_IS_DEV_CLI": "1"}
    services: list[_Service] = []
    exited: _Service | None = None
    with dev_instance() as instance:
        shared = [
            "--instance-ref",
            serialize_value(instance.get_ref()),
            "--code-server-log-level",
            code_server_log_level,
            "--log-format",
            log_format,
            *workspace,
        ]
        webserver = [
            *[sys.executable, "-m", "intervalprocessing_dagster.webserver"],
            *(["--host", host] if host else []),
            *(["--port", str(port)] if port else []),
            *["--dagster-log-level", log_level, "--live-data-poll-rate", str(live_data_poll_rate)],
        ]
        try:
            services.append(_start("webserver (intervalprocessing-webserver)", [*webserver, *shared], env))
            services.append(
                _start("daemon (dagster-daemon run)", [daemon, "run", "--log-level", log_level, *shared], env)
            )
            while exited is None and not stop.requested:
                time.sleep(_POLL_SECONDS)
                exited = next((service for service in services if service.process.poll() is not None), None)
            if stop.requested:
                exited = None  # Ctrl-C reaches the services too: their exit is the stop asked for, not a failure
        finally:
            log.info("Stopping the services...")
            _stop(services)
    if exited is not None:
        code = exited.process.returncode
        killed = f" (killed by {signal.Signals(-code).name})" if code < 0 else ""
        raise click.ClickException(
            f"the {exited.name} exited with code {code}{killed}, so intervalprocessing-dev stopped the other "
            "service too; its output above says why"
        )
    log.info("Stopped.")


def main() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s - intervalprocessing-dev - %(levelname)s - %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    command()


if __name__ == "__main__":
    main()
