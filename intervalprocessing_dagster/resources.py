"""The resources of the code location, local or production, chosen here from the settings and nowhere else.

No ``MONGODB_URI``: the embedded server; no ``REPORTS_S3_BUCKET``: the local reports folder; no
``STEP_OUTPUTS_S3_BUCKET``: step outputs on the local disk; no ``ALERTS_SNS_TOPIC_ARN``: alerts only logged. Each
resource class lives with its domain (``mongo/resources.py``, ``reports/delivery.py``, ``oncall/resources.py``,
``history/resources.py``, ``data_change/guard.py``, ``runs/clock.py``, ``runs/step_outputs.py``).
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableIOManagerFactory, EnvVar
from dagster_aws.s3 import S3Resource

from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.history.resources import RunRetention
from intervalprocessing_dagster.mongo.resources import EmbeddedMongoResource, MongoResource
from intervalprocessing_dagster.oncall.resources import AlertChannel, LogAlertChannel, SnsAlertChannel
from intervalprocessing_dagster.reports.delivery import LocalReportStore, ReportStore, S3ReportStore
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.runs.step_outputs import (
    LocalStepOutputs,
    LocalStepOutputStore,
    S3StepOutputs,
    S3StepOutputStore,
    StepOutputStore,
)
from intervalprocessing_dagster.settings import Settings


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for this environment, keyed by the names ops and assets ask for."""
    if settings.mongodb_uri_is_set:
        mongo: MongoResource = MongoResource(
            uri=EnvVar("MONGODB_URI"),
            database_name=settings.mongodb_database,
            history_days=settings.automation_history_days,
        )
    else:
        mongo = EmbeddedMongoResource(
            data_dir=str(settings.embedded_mongo_dir),
            database_name=settings.mongodb_database,
            history_days=settings.automation_history_days,
        )
    if settings.reports_s3_bucket:
        report_store: ReportStore = S3ReportStore(bucket=settings.reports_s3_bucket, prefix=settings.reports_s3_prefix)
    else:
        report_store = LocalReportStore(directory=str(settings.reports_local_dir))
    if settings.step_outputs_s3_bucket:
        # One place in S3: the IO manager writes the step outputs there, the retention job deletes them from there.
        where = {
            "s3_resource": S3Resource(),
            "s3_bucket": settings.step_outputs_s3_bucket,
            "s3_prefix": settings.step_outputs_s3_prefix,
        }
        io_manager: ConfigurableIOManagerFactory = S3StepOutputs(**where)
        step_output_store: StepOutputStore = S3StepOutputStore(**where)
    else:
        io_manager = LocalStepOutputs()  # the instance's storage folder, as Dagster's default
        step_output_store = LocalStepOutputStore()
    if settings.alerts_sns_topic_arn:
        alerts: AlertChannel = SnsAlertChannel(
            topic_arn=settings.alerts_sns_topic_arn,
            webserver_url=settings.webserver_url,
            hand_launched_runs=settings.alert_on_hand_launched_runs,
        )
    else:
        alerts = LogAlertChannel(
            webserver_url=settings.webserver_url, hand_launched_runs=settings.alert_on_hand_launched_runs
        )
    return {
        "mongo": mongo,
        "clock": RunClock(timezone=settings.timezone),
        "report_store": report_store,
        "io_manager": io_manager,
        "alerts": alerts,
        "guard": AutomationGuard.of(settings.automation_max_documents),
        "step_output_store": step_output_store,
        "retention": RunRetention(
            success_days=settings.run_history_success_days,
            failure_days=settings.run_history_failure_days,
            keep_all_days=settings.run_history_keep_all_days,
        ),
    }
