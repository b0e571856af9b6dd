"""The code location: every job, schedule, asset and resource, with local or production parts chosen here.

This is the only place that branches on the environment (see ``settings.py``): no ``MONGODB_URI`` means the
embedded server; no ``REPORTS_S3_BUCKET`` means the local reports folder. The production *instance* (Postgres,
ECS run launcher) is chosen by ``DAGSTER_HOME``'s ``dagster.yaml``, not by code.
"""

from __future__ import annotations

from typing import Any

from dagster import Definitions, EnvVar

from intervalprocessing_dagster.data_change.definitions import data_change_definitions
from intervalprocessing_dagster.mongo.resource import EmbeddedMongoResource, MongoResource
from intervalprocessing_dagster.reports.definitions import report_definitions
from intervalprocessing_dagster.reports.delivery import LocalReportStore, ReportStore, S3ReportStore
from intervalprocessing_dagster.run_clock import RunClock
from intervalprocessing_dagster.run_summary import run_summary_executor
from intervalprocessing_dagster.settings import Settings


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for this environment, keyed by the names ops and assets ask for."""
    if settings.mongodb_uri_is_set:
        mongo: MongoResource = MongoResource(uri=EnvVar("MONGODB_URI"), database_name=settings.mongodb_database)
    else:
        mongo = EmbeddedMongoResource(
            data_dir=str(settings.embedded_mongo_dir), database_name=settings.mongodb_database
        )
    if settings.reports_s3_bucket:
        report_store: ReportStore = S3ReportStore(bucket=settings.reports_s3_bucket, prefix=settings.reports_s3_prefix)
    else:
        report_store = LocalReportStore(directory=str(settings.reports_local_dir))
    return {"mongo": mongo, "clock": RunClock(timezone=settings.timezone), "report_store": report_store}


def build_definitions(settings: Settings) -> Definitions:
    return Definitions.merge(
        data_change_definitions(settings),
        report_definitions(settings),
        # Every job's default executor: Dagster's own, plus one INFO summary line at the end of each run.
        Definitions(resources=build_resources(settings), executor=run_summary_executor),
    )


defs = build_definitions(Settings.from_env())
