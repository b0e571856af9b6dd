"""A throw-away PostgreSQL server from Debian's binaries, for the system tests' Dagster storage and the benchmark's
Postgres instance (``bench/``): one way to start it, so both measure and test the same server.

The server trades durability for speed (``fsync=off``, no synchronous commit, no full-page writes): it holds
nothing worth keeping, and a test or benchmark should not wait for a disk flush per event. A production RDS
instance flushes; the benchmark's README says what that means for its figures.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tests.local_project import free_port

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
STARTUP_TIMEOUT_SECONDS = 30


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start; the message says which and what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A throw-away PostgreSQL cluster with password authentication on 127.0.0.1."""

    host: str
    port: int
    username: str
    password: str

    def create_database(self) -> str:
        """A fresh, empty database: each test (or benchmark run) gets its own Dagster storage."""
        name = f"dagster_{uuid.uuid4().hex[:10]}"
        connection = psycopg2.connect(
            host=self.host, port=self.port, user=self.username, password=self.password, dbname="postgres"
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return name

    def dagster_storage(self, database: str, password_env: str) -> str:
        """The ``storage:`` block of a ``dagster.yaml`` on ``database``, with the storage classes production uses
        (``deploy/dagster.yaml``); the password is read from the environment variable ``password_env``."""
        return (
            "storage:\n  custom:\n    module: intervalprocessing_dagster.instance.storage\n"
            "    class: PooledPostgresStorage\n    config:\n      postgres_db:\n"
            f"        hostname: {self.host}\n        port: {self.port}\n        db_name: {database}\n"
            f"        username: {self.username}\n        password: {{env: {password_env}}}\n"
            "        scheme: postgresql+psycopg2\n"
        )


def postgres_bin_dir() -> Path:
    """The newest installed server's ``bin`` folder; ``PostgresUnavailable`` when there is none."""
    candidates = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    found = [path for path in candidates if (path / "initdb").exists() and (path / "postgres").exists()]
    if not found:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found ({POSTGRES_BIN_GLOB}/initdb, postgres): "
            "apt-get install postgresql (the system tests and the benchmark start their own server from them)"
        )
    return found[-1]


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb + postgres, as the ``postgres`` system user when run as root (both refuse to run as root); the server
    and its folder are removed on exit."""
    bin_dir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="intervalprocessing-pg-"))  # outside pytest's 0700 tmp tree: postgres reads it
    password = f"pg-secret-{secrets.token_hex(8)}"
    (base / "pwfile").write_text(password + "\n")
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pwfile", "postgres")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    data = base / "data"
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "dagster",
            "--auth=scram-sha-256",
            f"--pwfile={base / 'pwfile'}",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log_path = base / "postgres.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                *prefix,
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        server = PostgresServer(host="127.0.0.1", port=port, username="dagster", password=password)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                psycopg2.connect(
                    host=server.host, port=port, user="dagster", password=password, dbname="postgres"
                ).close()
                break
            except psycopg2.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise PostgresUnavailable(f"PostgreSQL did not start:\n{log_path.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # "fast shutdown"
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(base, ignore_errors=True)
