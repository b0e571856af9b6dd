"""The ``history`` benchmark (``python -m bench.history``) runs end to end at a trivial size and writes its outputs.

No timing is asserted; what is checked is that the real template runs happened (one of them failed, as it should),
that the copies landed as Dagster reads them (the UI's queries answered without errors, the big run's page loaded
every event of its template), that the daily retention passes deleted runs, and that ``latest.json`` /
``latest.md`` carry what bench/README.md documents. About 2 minutes (nine real ``dagster job execute`` runs, two
webservers, two code servers).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from intervalprocessing_dagster.oncall.jobs import CONFIG_CHECK_KEYS

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_history_benchmark_builds_both_histories_and_measures_them(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.history",
            "--days",
            "2",
            "--steady-days",
            "3",
            "--success-days",
            "1",
            "--failure-days",
            "1",
            "--keep-all-days",
            "1",
            "--deployment",
            "1,1,1,1",
            "--big-run",
            "3",
            "--repeats",
            "1",
            "--daemon-iterations",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    document = json.loads((tmp_path / "latest.json").read_text())
    templates = document["templates"]
    assert templates["quarter_hourly_failed"]["status"] == "FAILURE"
    assert {t["status"] for key, t in templates.items() if key != "quarter_hourly_failed"} == {"SUCCESS"}
    # One execution per check the job selects.
    assert templates["config_checks_job"]["check_executions"] == len(CONFIG_CHECK_KEYS)
    assert set(document["scenarios"]) == {"year", "retained"}
    for name, scenario in document["scenarios"].items():
        # Every tick of every schedule (data change, config checks, file generation, retention), and the big run.
        runs_per_day = 96 + 48 + 24 + 1 + 24 + 1 + 1
        assert scenario["build"]["rows"]["runs"] == runs_per_day * scenario["days"] + 1, name
        timed = [row for row in scenario["ui"] if "p95_seconds" in row]
        assert {row["operation"] for row in timed} >= {
            "RunsFeedRootQuery",
            "RunFeedTabsCountQuery",
            "RecentAssetEventsQuery",
            "AssetChecksQuery",
            "AssetCheckDetailsQuery",
            "RunRootQuery",
            "RunLogsQuery (page 1)",
        }
        (loaded,) = [row for row in scenario["ui"] if row["operation"] == "events loaded"]
        assert loaded["events"] == templates["hourly_big"]["events"]
        assert scenario["daemon"]["runs_created"] > 0
        assert scenario["size"]["database_bytes"] > 0
    retained = document["scenarios"]["retained"]
    # One-day windows, a pass at the end of each day: the last day's runs and the big run are left.
    assert retained["size"]["runs"] == runs_per_day + 1
    assert all(sum(p["deleted_runs"].values()) > 0 for p in retained["retention_passes"]["all"][1:])
    assert 0 < retained["size"]["compacted_bytes"] <= retained["size"]["database_bytes"]
    year = document["scenarios"]["year"]["one_day_deletion"]
    assert sum(year["deleted_runs"].values()) == runs_per_day  # the oldest day
    assert {target["status"] for target in document["targets"]} <= {"pass", "fail"}
    assert {"start", "during", "end"} <= set(document["machine"]["load_average"])

    markdown = (tmp_path / "latest.md").read_text()
    for heading in (
        "## Targets",
        "## Template runs",
        "## Database",
        "## UI queries",
        "## Daemon iterations",
        "## Deleting one day of history",
        "## Sizing",
        "## Machine",
    ):
        assert heading in markdown
