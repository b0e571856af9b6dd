"""The newcomer's path in a real browser: two CLI runs on the demo data, then ``dagster dev``, pages rendered by
headless Chromium (Debian's package, driven by Playwright, which never downloads a browser of its own).

What a user looks for: the CLI runs are in the run list; a data-change run's per-automation steps show matched and
modified; a report's lineage goes from the collections to the report; a weekly report skipped on a Thursday says
why. The Dagster UI is a React app, so every check waits for rendered text rather than reading the HTML.
"""

from __future__ import annotations

import re
import uuid
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pymongo
import pytest
from pymongo.database import Database

from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from tests.local_project import DagsterDev, dagster_dev, execute_job, new_project, run_id, user_env

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RENDER_TIMEOUT_MS = 60_000
THURSDAY = "2024-03-14T03:00:00+00:00"

if not Path(CHROMIUM).exists():
    pytest.skip("Chromium is not installed (no chromium on PATH, no /usr/bin/chromium): apt-get install chromium; "
                ".ci/run installs it", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402 - only once Chromium is known to exist

expect.set_options(timeout=RENDER_TIMEOUT_MS)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[tuple[DagsterDev, dict[str, str]]]:
    """``dagster dev`` on a project folder where the hourly data change and a Thursday file generation ran."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    database: Database = client[f"browser_{uuid.uuid4().hex[:12]}"]
    seed_demo_data(database)
    project = new_project(tmp_path_factory.mktemp("browser") / "project")
    env = user_env(mongo_uri, database.name)
    runs = {job: run_id(execute_job(project, env, job, tags={RUN_STAMP_TAG: THURSDAY}), job)
            for job in ("hourly_data_change_job", "file_generation_job")}
    with dagster_dev(project, env) as dev:
        yield dev, runs
        dev.stop(signal.SIGINT, to_group=True, timeout=30)
    client.drop_database(database.name)
    client.close()


@pytest.fixture()
def page(ui: tuple[DagsterDev, dict[str, str]], tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a new, empty profile
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1600, "height": 1000},
        )
        page = browser.new_page()
        page.set_default_timeout(RENDER_TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()


def open_page(page: Page, dev: DagsterDev, path: str) -> None:
    page.goto(dev.url + path)
    skip = page.get_by_role("button", name="Skip")  # the first-visit "Join the community" dialog
    try:
        skip.click(timeout=5_000)
    except Exception:  # noqa: BLE001 - the dialog is not shown on every page load
        pass


def test_the_cli_runs_are_in_the_run_list(page: Page, ui: tuple[DagsterDev, dict[str, str]]) -> None:
    dev, runs = ui
    open_page(page, dev, "/runs")
    for job, run in runs.items():
        expect(page.locator(f'a[href$="/runs/{run}"]').first).to_be_visible()
    expect(page.locator("body")).to_contain_text("hourly_data_change_job")
    expect(page.locator("body")).to_contain_text("file_generation_job")


@pytest.mark.parametrize(("step", "matched", "modified"), [
    ("apply_automation[escalate_pending_review_audits]", 2, 2),
    ("apply_automation[note_overdue_record_requests]", 1, 1),
])
def test_each_automation_step_shows_matched_and_modified(
    page: Page, ui: tuple[DagsterDev, dict[str, str]], step: str, matched: int, modified: int
) -> None:
    dev, runs = ui
    open_page(page, dev, f"/runs/{runs['hourly_data_change_job']}?logs={quote(f'step:{step}')}")
    output = page.locator("div", has_text=re.compile(r"^Yielded output \"result\"")).first
    expect(output).to_be_visible()
    logs = page.locator("body")
    expect(logs).to_contain_text(re.compile(rf"matched\s*{matched}\s*modified\s*{modified}"))


def test_the_run_ends_with_its_summary_line(page: Page, ui: tuple[DagsterDev, dict[str, str]]) -> None:
    dev, runs = ui
    open_page(page, dev, f"/runs/{runs['hourly_data_change_job']}?logs={quote('Run summary')}")
    expect(page.locator("body")).to_contain_text(
        "Run summary: automations 2 applied, 3 matched, 3 modified, 0 failed"
    )


def test_the_lineage_goes_from_the_collections_to_the_report(
    page: Page, ui: tuple[DagsterDev, dict[str, str]]
) -> None:
    dev, _ = ui
    open_page(page, dev, "/assets/daily_active_mrr_inventory?view=lineage&lineageDepth=1")
    graph = page.locator("body")
    for node in ("medicalrecordrequests", "providers", "daily_active_mrr_inventory"):
        expect(graph.get_by_text(node, exact=True).first).to_be_visible()


def test_a_skipped_weekly_report_says_why(page: Page, ui: tuple[DagsterDev, dict[str, str]]) -> None:
    dev, _ = ui
    open_page(page, dev, "/assets/weekly_audit_inventory?view=events")
    expect(page.locator("body")).to_contain_text("not a Friday (stamp 2024-03-14T03:00:00+00:00, a Thursday)")
