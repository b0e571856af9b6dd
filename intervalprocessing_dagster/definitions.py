"""The code location: every job, schedule, asset and resource, with local or production parts chosen here.

This is the only place that branches on the environment (see ``settings.py``): no ``MONGODB_URI`` means the
embedded server; no ``REPORTS_S3_BUCKET`` means the local reports folder; no ``STEP_OUTPUTS_S3_BUCKET`` means step
outputs on the local disk (Dagster's filesystem IO manager), where production keeps them in S3 so that a
re-execution "from failure", which runs as a new ECS task with an empty disk, can load what the first task's steps
produced (either way, a step takes what its own process produced from memory: ``runs/step_outputs.py``); no
``ALERTS_SNS_TOPIC_ARN`` means failure alerts are only logged. ``RUN_HISTORY_RETENTION=off`` leaves out the daily
history retention schedule (its job stays). The production *instance* (Postgres, ECS run launcher) is chosen by
``DAGSTER_HOME``'s ``dagster.yaml``, not by code.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableIOManagerFactory, Definitions, EnvVar
from dagster_aws.s3 import S3Resource

from intervalprocessing_dagster.data_change.definitions import data_change_definitions
from intervalprocessing_dagster.data_change.guard import AutomationGuard
from intervalprocessing_dagster.history.retention import (
    RunRetention,
    build_history_retention_schedule,
    history_retention_job,
)
from intervalprocessing_dagster.mongo.resource import EmbeddedMongoResource, MongoResource
from intervalprocessing_dagster.oncall.alerting import (
    AlertChannel,
    LogAlertChannel,
    SnsAlertChannel,
    run_failure_alert_sensor,
)
from intervalprocessing_dagster.oncall.check_alerts import check_failure_alert_sensor
from intervalprocessing_dagster.oncall.config_checks import build_config_checks_schedule, config_checks_job
from intervalprocessing_dagster.reports.definitions import report_definitions
from intervalprocessing_dagster.reports.delivery import LocalReportStore, ReportStore, S3ReportStore
from intervalprocessing_dagster.runs.clock import RunClock
from intervalprocessing_dagster.runs.executor import run_summary_executor
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
        io_manager: ConfigurableIOManagerFactory = S3StepOutputs(
            s3_resource=S3Resource(),
            s3_bucket=settings.step_outputs_s3_bucket,
            s3_prefix=settings.step_outputs_s3_prefix,
        )
        step_output_store: StepOutputStore = S3StepOutputStore(
            s3_resource=S3Resource(),
            s3_bucket=settings.step_outputs_s3_bucket,
            s3_prefix=settings.step_outputs_s3_prefix,
        )
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


def build_definitions(settings: Settings) -> Definitions:
    return Definitions.merge(
        data_change_definitions(settings),
        report_definitions(settings),
        Definitions(
            jobs=[config_checks_job, history_retention_job],
            schedules=[
                build_config_checks_schedule(settings),
                *([build_history_retention_schedule(settings)] if settings.run_history_retention else []),
            ],
            sensors=[run_failure_alert_sensor, check_failure_alert_sensor],
            resources=build_resources(settings),
            # Every job's default executor: Dagster's own, plus one INFO summary line at the end of each run.
            executor=run_summary_executor,
        ),
    )


defs = build_definitions(Settings.from_env())
