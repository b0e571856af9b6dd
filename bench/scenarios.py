"""The scenario registry: every measured scenario, its family (what job it does) and its variant (which side).

Each family is measured on the same data, on the same server, in the same run: the ``old`` algorithm, the
``floor`` (plain pymongo), and the ``platform``. The ``automations`` family has its own data set and sizes (N
automations of 100 documents each, ``--automations``), and its platform side is a whole cadence run on a real
Dagster instance: SQLite (``platform``), Postgres (``platform-postgres``), or SQLite with the step outputs in S3 on
moto (``platform-s3-outputs``, production's IO manager on a local stand-in for S3). The ``journal`` family is the
find-based automation with the change journal on, against the bare ``update_many`` and the floor of ``update_many``
plus a plain journal write of the same documents (``baselines.journal_floor``), and with another client writing the
same field meanwhile (``contended``). A scenario is a function
``(Context) -> Work``, named here as ``"module:function"`` so the measuring process imports only the side it runs
(the platform side imports Dagster).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo.database import Database


@dataclass(frozen=True)
class Context:
    """What a scenario gets: the database, the size, its own mark value, and where to write files."""

    db: Database
    n: int
    mark: str
    out_dir: Path
    bucket: str


@dataclass(frozen=True)
class Work:
    """What a scenario did: documents changed or rows written, bytes written, and where the output is."""

    items: int
    bytes: int = 0
    output: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A registry entry: which family it belongs to, which side it is, and the function that runs it."""

    family: str
    variant: str
    target: str  # "module:function", imported before the timed section
    prepare: str | None = None  # "module:function" taking the Context, called just before the timed section
    instance: str | None = None  # the Dagster instance a whole-run scenario gets: "sqlite" or "postgres"
    step_outputs_in_s3: bool = False  # a whole run's step outputs in the benchmark's moto S3, as production's in S3


FAMILIES = {
    "find": "Data change, find-based automation (documents)",
    "aggregate": "Data change, aggregate-based automation (documents)",
    "report-local": "File generation, WeeklyMRRInventory to the local folder (rows)",
    "report-s3": "File generation, WeeklyMRRInventory to S3 on moto (rows)",
    "automations": "Data change, one cadence of N automations of 100 documents each (documents)",
    "journal": "Data change, find-based automation with the change journal on (documents)",
}

AUTOMATIONS_FAMILY = "automations"
"""The family measured over automation counts (``--automations``) instead of document counts (``--sizes``)."""

SCENARIOS: dict[str, Scenario] = {
    "find.old": Scenario("find", "old", "bench.baselines:find_old"),
    "find.floor": Scenario("find", "floor", "bench.baselines:find_floor"),
    "find.platform": Scenario("find", "platform", "bench.platform_calls:find_platform"),
    "aggregate.old": Scenario("aggregate", "old", "bench.baselines:aggregate_old"),
    "aggregate.floor": Scenario("aggregate", "floor", "bench.baselines:aggregate_floor"),
    "aggregate.floor-in": Scenario("aggregate", "floor-in", "bench.baselines:aggregate_floor_in"),
    "aggregate.platform": Scenario("aggregate", "platform", "bench.platform_calls:aggregate_platform"),
    "report-local.floor": Scenario("report-local", "floor", "bench.baselines:report_local_floor"),
    "report-local.platform": Scenario("report-local", "platform", "bench.platform_calls:report_local_platform"),
    "report-s3.floor": Scenario("report-s3", "floor", "bench.baselines:report_s3_floor"),
    "report-s3.platform": Scenario("report-s3", "platform", "bench.platform_calls:report_s3_platform"),
    "automations.floor": Scenario("automations", "floor", "bench.baselines:automations_floor"),
    "automations.platform": Scenario(
        "automations",
        "platform",
        "bench.cadence_run:cadence_platform",
        prepare="bench.cadence_run:mark_automations",
        instance="sqlite",
    ),
    "automations.platform-postgres": Scenario(
        "automations",
        "platform-postgres",
        "bench.cadence_run:cadence_platform",
        prepare="bench.cadence_run:mark_automations",
        instance="postgres",
    ),
    "automations.platform-s3-outputs": Scenario(
        "automations",
        "platform-s3-outputs",
        "bench.cadence_run:cadence_platform",
        prepare="bench.cadence_run:mark_automations",
        instance="sqlite",
        step_outputs_in_s3=True,
    ),
    "journal.update-many": Scenario("journal", "update-many", "bench.baselines:find_floor"),
    "journal.floor": Scenario("journal", "floor", "bench.baselines:journal_floor"),
    "journal.platform": Scenario("journal", "platform", "bench.platform_calls:journal_platform"),
    "journal.contended": Scenario("journal", "contended", "bench.platform_calls:journal_contended"),
}
