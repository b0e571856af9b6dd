"""The benchmark's report of consecutive runs on one database, from committed results (no benchmark is run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package; a bare `pytest` does not add the cwd
    sys.path.insert(0, str(REPO_ROOT))

from bench import report  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "automations"


def test_the_cadence_table_lists_a_scenarios_runs_in_order_with_their_trend() -> None:
    document = json.loads((RESULTS / "consecutive-100x20.json").read_text())
    walls = next(r for r in document["results"] if r["scenario"] == "automations.platform")["wall_seconds_runs"]
    runs = range(len(walls))
    mean_run, mean_wall = sum(runs) / len(walls), sum(walls) / len(walls)
    per_run = sum((i - mean_run) * (w - mean_wall) for i, w in zip(runs, walls, strict=True)) / sum(
        (i - mean_run) ** 2 for i in runs
    )

    lines = report.markdown(document).splitlines()

    table = lines[next(i for i, line in enumerate(lines) if line.startswith("Consecutive runs on one database")) :]
    row = next(line for line in table if line.startswith("| platform | 100 | "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert len(walls) == 20 and cells[2] == ", ".join(f"{wall:.2f}" for wall in walls)  # in the order they ran
    assert cells[3] == f"{walls[-1] / walls[0]:.2f}"
    assert cells[4] == f"{per_run / walls[0]:+.1%}" and per_run > 0  # those 20 runs on one database grew


def test_a_single_run_per_scenario_has_no_consecutive_table() -> None:
    document = json.loads((RESULTS / "issue-28-after.json").read_text())
    for result in document["results"]:
        result["wall_seconds_runs"] = result["wall_seconds_runs"][:1]

    assert "Consecutive runs on one database" not in report.markdown(document)
