"""The newcomer's path in a real browser: CLI runs on the demo data (the hourly data change twice, as the README
says, and a Thursday file generation), then ``dagster dev``, pages rendered by headless Chromium (Debian's package,
driven by Playwright, which never downloads a browser of its own).

What a user looks for: the CLI runs are in the run list, on their job's Runs tab, as recent runs in the Jobs list
and in Overview → Timeline; a data-change run's per-automation steps show matched and modified; one automation's
history is two clicks from the Catalog, and the collections it changes do not say "Never materialized"; the global
lineage shows the ``dataupdateconfigs → collections → reports`` chain as one group, its start in the first view and
all of it after zooming out, as the README says, the configuration collection read by the runs showing when; a
report's lineage goes from the collections to the report; a weekly report skipped on a Thursday says why. The
Dagster UI is a React app, so every check waits for rendered text rather than reading the HTML.
"""

from __future__ import annotations

import re
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pymongo
import pytest
from pymongo.database import Database

from intervalprocessing_dagster.data_change.rules import config_hash
from intervalprocessing_dagster.mongo.demo_data import seed_demo_data
from intervalprocessing_dagster.runs.clock import RUN_STAMP_TAG
from tests.local_project import DagsterDev, dagster_dev, execute_job, new_project, run_id, user_env

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 60_000
THURSDAY = "2024-03-14T03:00:00+00:00"
# Every asset of the code location's one group: the configuration, the collections, the reports.
CHAIN = (
    "dataupdateconfigs",
    "fileprocessingconfigs",
    "storedqueries",
    "audits",
    "medicalrecordrequests",
    "providers",
    "daily_audit_inventory",
    "daily_active_mrr_inventory",
    "weekly_audit_inventory",
    "weekly_mrr_inventory",
    "configured_reports",
)
# Clicks on the lineage's − button after which the whole chain is in a 1600×1000 window (the README says so).
ZOOM_OUT_CLICKS = 6

if not Path(CHROMIUM).exists():
    pytest.skip(
        "Chromium is not installed (no chromium on PATH, no /usr/bin/chromium): apt-get install chromium; "
        ".ci/run installs it",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402 - only once Chromium is known to exist

expect.set_options(timeout=RENDER_TIMEOUT_MS)


Runs = dict[str, list[str]]


@pytest.fixture(scope="module")
def demo_database(mongo_uri: str) -> Iterator[Database]:
    """A database seeded with the demo data, for the module's ``dagster dev``; dropped afterwards."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    database: Database = client[f"browser_{uuid.uuid4().hex[:12]}"]
    seed_demo_data(database)
    yield database
    client.drop_database(database.name)
    client.close()


@pytest.fixture(scope="module")
def ui(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, demo_database: Database
) -> Iterator[tuple[DagsterDev, Runs]]:
    """``dagster dev`` on a project folder where the hourly data change ran twice and a Thursday file generation
    once, each with ``dagster job execute``; the run ids by job, in order."""
    project = new_project(tmp_path_factory.mktemp("browser") / "project")
    env = user_env(mongo_uri, demo_database.name)
    runs: Runs = {}
    for job, tags in (
        ("hourly_data_change_job", None),
        ("hourly_data_change_job", None),
        ("file_generation_job", {RUN_STAMP_TAG: THURSDAY}),
    ):
        runs.setdefault(job, []).append(run_id(execute_job(project, env, job, tags=tags), job))
    with dagster_dev(project, env) as dev:
        yield dev, runs
        dev.stop(signal.SIGINT, to_group=True, timeout=30)


@pytest.fixture()
def page(ui: tuple[DagsterDev, Runs], tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a new, empty profile
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1000},
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


def test_the_cli_runs_are_in_the_run_list(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, runs = ui
    open_page(page, dev, "/runs")
    for run in (run for job_runs in runs.values() for run in job_runs):
        expect(page.locator(f'a[href$="/runs/{run}"]').first).to_be_visible()
    expect(page.locator("body")).to_contain_text("hourly_data_change_job")
    expect(page.locator("body")).to_contain_text("file_generation_job")


@pytest.mark.parametrize(
    ("step", "matched", "modified"),
    [
        ("apply_automation[escalate_pending_review_audits]", 2, 2),
        ("apply_automation[note_overdue_record_requests]", 1, 1),
    ],
)
def test_each_automation_step_shows_matched_and_modified(
    page: Page, ui: tuple[DagsterDev, Runs], step: str, matched: int, modified: int
) -> None:
    dev, runs = ui
    open_page(page, dev, f"/runs/{runs['hourly_data_change_job'][0]}?logs={quote(f'step:{step}')}")
    output = page.locator("div", has_text=re.compile(r"^Yielded output \"result\"")).first
    expect(output).to_be_visible()
    logs = page.locator("body")
    expect(logs).to_contain_text(re.compile(rf"matched\s*{matched}\s*modified\s*{modified}"))


def test_the_run_ends_with_its_summary_line(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, runs = ui
    open_page(page, dev, f"/runs/{runs['hourly_data_change_job'][0]}?logs={quote('Run summary')}")
    expect(page.locator("body")).to_contain_text("Run summary: automations 2 applied, 3 matched, 3 modified, 0 failed")


def test_the_lineage_goes_from_the_collections_to_the_report(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, _ = ui
    open_page(page, dev, "/assets/daily_active_mrr_inventory?view=lineage&lineageDepth=1")
    graph = page.locator("body")
    for node in ("medicalrecordrequests", "providers", "daily_active_mrr_inventory"):
        expect(graph.get_by_text(node, exact=True).first).to_be_visible()


def test_a_skipped_weekly_report_says_why(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, _ = ui
    open_page(page, dev, "/assets/weekly_audit_inventory?view=events")
    expect(page.locator("body")).to_contain_text("not a Friday (stamp 2024-03-14T03:00:00+00:00, a Thursday)")


def test_the_cli_runs_are_on_their_jobs_runs_tab(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, runs = ui
    open_page(page, dev, "/locations/intervalprocessing/jobs/hourly_data_change_job/runs")
    for run in runs["hourly_data_change_job"]:
        expect(page.locator(f'a[href$="/runs/{run}"]').first).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("No runs found")


def test_the_jobs_list_shows_each_jobs_latest_cli_run(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, _ = ui
    open_page(page, dev, "/jobs")
    for job in ("hourly_data_change_job", "file_generation_job"):  # "<when> ago" beside the job: its latest run
        expect(page.locator("body")).to_contain_text(re.compile(rf"{job}\s*(a few|an?|\d+) \w+ ago"))
    expect(page.locator("body")).not_to_contain_text(re.compile(r"nightly_data_change_job\s*\S* \w+ ago"))


def test_the_timeline_shows_the_cli_runs(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    dev, _ = ui
    open_page(page, dev, "/overview/activity/timeline")
    for job in ("hourly_data_change_job", "file_generation_job"):  # a job's row is there only with runs in range
        expect(page.locator(f'a[href$="/jobs/{job}"]').first).to_be_visible()


def test_the_global_lineage_opens_on_the_whole_chain(page: Page, ui: tuple[DagsterDev, Runs]) -> None:
    """No group to expand first, and the automations' collection reads as read by the runs, not as never made."""
    dev, _ = ui
    open_page(page, dev, "/asset-groups")
    graph = page.locator("body")
    for node in ("dataupdateconfigs", "audits", "medicalrecordrequests", "daily_audit_inventory"):
        # An expanded node is a card; a collapsed group would show only the group's name.
        expect(graph.locator("div", has_text=re.compile(rf"^{node}\s*Latest event")).first).to_be_visible()
    card = graph.locator("div", has_text=re.compile(r"^dataupdateconfigs\s*Latest event")).last
    expect(card).to_contain_text(re.compile(r"Latest event\s*(a few|an?|\d+) \w+ ago"))
    expect(card).not_to_contain_text("Never materialized")


def test_one_automations_history_is_two_clicks_from_the_catalog(
    page: Page, ui: tuple[DagsterDev, Runs], demo_database: Database
) -> None:
    """Catalog → dataupdateconfigs → the automation's name: every run that applied it, each with its matched and
    modified and the version of its document (config_hash), the latest first."""
    dev, runs = ui
    first, second = runs["hourly_data_change_job"]
    document = demo_database.dataupdateconfigs.find_one({"name": "Escalate Pending Review Audits"})
    open_page(page, dev, "/assets")
    page.get_by_role("link", name="dataupdateconfigs").first.click()  # click 1
    page.get_by_role("link", name="Escalate Pending Review Audits", exact=True).click()  # click 2
    expect(page).to_have_url(re.compile(r"/assets/audits\?view=events&partitions%5B0%5D=Escalate"))
    events = page.locator("body")
    expect(events).to_contain_text(f"Partition Escalate Pending Review Audits materialized in run {second[:8]}")
    expect(events).to_contain_text(re.compile(r"matched\s*0\s*modified\s*0"))  # the second run found nothing left
    expect(events).to_contain_text(re.compile(rf"config_hash\s*{config_hash(document)}"))
    # The earlier run, one line below in the same list: what it changed.
    page.get_by_text("Escalate Pending Review Audits", exact=True).nth(1).click()
    expect(events).to_contain_text(f"Partition Escalate Pending Review Audits materialized in run {first[:8]}")
    expect(events).to_contain_text(re.compile(r"matched\s*2\s*modified\s*2"))


@pytest.mark.parametrize(
    ("collection", "automation"),
    [
        ("audits", "Escalate Pending Review Audits"),
        ("medicalrecordrequests", "Note Overdue Record Requests"),
    ],
)
def test_a_collection_page_says_when_an_automation_last_changed_it(
    page: Page, ui: tuple[DagsterDev, Runs], collection: str, automation: str
) -> None:
    dev, _ = ui
    open_page(page, dev, f"/assets/{collection}")
    status = page.locator("body")
    expect(status).to_contain_text(re.compile(rf"Latest materialization\s*(a few|an?|\d+) \w+ ago\s*{automation}"))
    expect(status).not_to_contain_text("Never materialized")
    open_page(page, dev, f"/assets/{collection}?view=partitions")  # its automations, one partition each
    expect(page.get_by_text(automation, exact=True).first).to_be_visible()


def test_the_lineage_opens_on_the_chains_start_and_zooming_out_shows_all_of_it(
    page: Page, ui: tuple[DagsterDev, Runs]
) -> None:
    """What the README says: Dagster fits the lineage to the window's width, so at 1600×1000 the first view shows
    dataupdateconfigs and part of the rest at reading size, and a few clicks on − show every asset of the chain."""
    dev, _ = ui
    open_page(page, dev, "/asset-groups")
    start = page.locator("div", has_text=re.compile(r"^dataupdateconfigs\s*Latest event")).last
    expect(start).to_be_in_viewport(ratio=1)
    expect(page.locator("div", has_text=re.compile(r"^audits\s*Latest event")).last).not_to_be_in_viewport(ratio=1)
    for _ in range(ZOOM_OUT_CLICKS):
        page.locator("button:has([aria-label='zoom_out'])").click()
        page.wait_for_timeout(300)  # each step animates
    nodes = page.locator("[class*=assetNodeContainer]")  # Dagster renders only the nodes in view
    expect(nodes).to_have_count(len(CHAIN))
    for node in range(len(CHAIN)):
        expect(nodes.nth(node)).to_be_in_viewport(ratio=1)
