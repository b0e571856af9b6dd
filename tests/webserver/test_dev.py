"""``intervalprocessing-dev``, the local UI, for real: started as the README runs it (the installed command, in a new
user's project folder, no ``DAGSTER_HOME``), a change sent as the UI sends it leaves its audit line naming the OS user
under the project's ``.intervalprocessing/``, the daemon runs on the same instance, and Ctrl-C (or SIGTERM to the
command alone) stops every process. A service that cannot start (its port taken) stops the command, which names it
and its exit code.

About 35 s: three starts of the command.
"""

from __future__ import annotations

import getpass
import json
import re
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.settings import DEFAULT_AUDIT_LOG_NAME
from tests.local_project import (
    STOP_SECONDS,
    STOP_SIGNALS,
    DagsterDev,
    dagster_dev,
    free_port,
    graphql,
    new_project,
    user_env,
)
from tests.test_webserver_roles import REPOSITORY, ui_document

DEV = [str(Path(sysconfig.get_path("scripts")) / "intervalprocessing-dev")]
SCHEDULE = "hourly_data_change_schedule"
DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    return new_project(tmp_path / "project")


def _post(dev: DagsterDev, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return graphql(dev.url, query, variables)


def _wait_for_healthy_scheduler(dev: DagsterDev, timeout: float = 60) -> None:
    """The daemon's heartbeat, read by the webserver from the instance they share."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = _post(dev, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        if {"daemonType": "SCHEDULER", "healthy": True} in statuses:
            return
        assert time.monotonic() < deadline, (
            f"no healthy scheduler daemon: {statuses}\n{dev.log_path.read_text()[-3000:]}"
        )
        time.sleep(1)


@STOP_SIGNALS
def test_a_change_in_the_local_ui_is_audited_with_the_os_user_and_a_stop_ends_every_process(
    mongo_uri: str, mongo_db: Database, project: Path, sig: signal.Signals, to_group: bool
) -> None:
    seed_demo_data(mongo_db)
    audit_path = project / ".intervalprocessing" / DEFAULT_AUDIT_LOG_NAME
    with dagster_dev(project, user_env(mongo_uri, mongo_db.name), DEV) as dev:
        services = dev.group()
        assert any(" -m intervalprocessing_dagster.webserver " in line for line in services), services
        assert any("dagster-daemon run " in line for line in services), services
        assert not any("dagster_webserver" in line for line in services), services
        _wait_for_healthy_scheduler(dev)

        selector = {"scheduleSelector": {**REPOSITORY, "scheduleName": SCHEDULE}}
        started = _post(dev, ui_document("StartThisSchedule"), selector)["startSchedule"]["scheduleState"]
        assert started["status"] == "RUNNING"
        _post(dev, ui_document("StopSchedule"), {"id": started["id"]})

        lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
        assert [(line["action"], line["who"], line["identity"], line["outcome"]) for line in lines] == [
            ("startSchedule", getpass.getuser(), "os-user", "success"),
            ("stopRunningSchedule", getpass.getuser(), "os-user", "success"),
        ]
        assert lines[0]["targets"]["schedules"] == [SCHEDULE] and lines[1]["client"] == "127.0.0.1"

        dev.assert_stops(sig, to_group=to_group)
        assert dev.process.returncode == 0, dev.log_path.read_text()[-3000:]
    assert not list(project.glob(".tmp_dagster_home_*"))
    # the history is the project's: what the UI changed is there for the next start
    assert (project / ".intervalprocessing" / "dagster_home" / "schedules" / "schedules.db").is_file()


def test_a_service_that_exits_stops_the_other_and_is_named_with_its_exit_code(
    mongo_uri: str, mongo_db: Database, project: Path
) -> None:
    with socket.socket() as taken:  # another server already has the port
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.Popen(
            [*DEV, "-h", "127.0.0.1", "-p", str(port)],
            cwd=project,
            env=user_env(mongo_uri, mongo_db.name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 1, output[-3000:]
    found = re.search(r"Error: the webserver \(intervalprocessing-webserver\) exited with code (\d+),", output)
    assert found and found[1] != "0", output[-3000:]
    assert "Stopping the services..." in output
    # the daemon was stopped, not left behind: nothing of the command's session is left once its code servers end
    deadline = time.monotonic() + STOP_SECONDS
    while left := subprocess.run(["ps", "-o", "pid=,args=", "-s", str(process.pid)], capture_output=True, text=True):
        if not left.stdout.strip():
            break
        assert time.monotonic() < deadline, left.stdout
        time.sleep(0.5)
    assert not list(project.glob(".tmp_dagster_home_*"))
