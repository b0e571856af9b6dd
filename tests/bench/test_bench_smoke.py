"""The benchmark command runs end to end at a trivial size and writes the documented outputs.

No timing is asserted (a test machine's speed says nothing about the platform); what is checked is that every
scenario ran, did the whole job, and that ``latest.json`` / ``latest.md`` carry the fields the README documents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from intervalprocessing_dagster.mongo.demo_data import STORED_QUERIES
from intervalprocessing_dagster.mongo.shell_syntax import parse_query

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package; a bare `pytest` does not add the cwd
    sys.path.insert(0, str(REPO_ROOT))

from bench import dataset  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402


def test_floor_queries_are_the_stored_queries() -> None:
    """The floors use literal pymongo queries; they must mean what the old, shell-syntax strings mean."""
    assert parse_query(dataset.FIND_QUERY, source="bench").filter == dataset.FIND_FILTER
    assert parse_query(dataset.AGGREGATE_QUERY, source="bench").pipeline == dataset.AGGREGATE_PIPELINE
    stored = {query["name"]: query["query"] for query in STORED_QUERIES}
    assert parse_query(stored["weeklyMRRInventory"], source="bench").pipeline == dataset.REPORT_PIPELINE


def test_benchmark_command_writes_json_and_markdown(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--sizes",
            "200",
            "--automations",
            "2,3",
            "--no-overhead",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    document = json.loads((tmp_path / "latest.json").read_text())
    assert document["sizes"] == [200]
    assert document["automation_counts"] == [2, 3]
    assert {"cpu_count", "cpu_model", "ram_gb", "python", "server_version", "packages"} <= set(document["machine"])
    assert {result["scenario"] for result in document["results"]} == set(SCENARIOS)
    for result in document["results"]:
        assert "error" not in result, result
        assert {
            "wall_seconds",
            "items",
            "bytes",
            "commands",
            "commands_total",
            "peak_rss_mb",
            "rss_baseline_mb",
            "client_cpu_seconds",
            "server_cpu_seconds",
            "check",
        } <= set(result)
        assert result["commands_total"] == sum(result["commands"].values()) > 0
        if result["family"] == "automations":  # N automations of 100 documents, each run as the real job
            assert result["items"] == result["check"]["marked_documents"] == 100 * result["n"], result
            if result["variant"] != "floor":
                assert result["detail"] == {
                    **result["detail"],
                    "run_success": True,
                    "automation_steps": result["n"],
                    "stored_outputs": result["n"],
                }  # the loader's task for each automation
                assert result["check"]["succeeded_run_records"] == result["n"]
                in_s3 = result["detail"]["first_stored_output"].startswith("step-outputs/automations.platform-s3")
                assert in_s3 == (result["variant"] == "platform-s3-outputs"), result["detail"]
            continue
        assert result["items"] == 200
        if result["family"] == "journal":  # every change journaled, by the platform and by the floor's plain write
            assert result["check"]["journaled_documents"] == (0 if result["variant"] == "update-many" else 200)
        if "marked_documents" in result["check"]:
            assert result["check"]["marked_documents"] == 200
        else:
            assert result["check"]["rows"] == 200
    assert {target["status"] for target in document["targets"]} <= {"pass", "fail", "not measured"}

    markdown = (tmp_path / "latest.md").read_text()
    for heading in (
        "## Data change, find-based",
        "## Data change, aggregate-based",
        "## File generation",
        "## Data change, find-based automation with the change journal on",
        "## How the figures grow with N",
        "## A cadence of N automations",
        "## Dagster overhead per run",
        "## Targets",
        "## Machine",
    ):
        assert heading in markdown
    assert "same bytes as floor" in markdown
    assert "WRONG" not in markdown and "DIFFERS" not in markdown
