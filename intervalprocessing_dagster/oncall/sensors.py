"""The on-call sensors: one alert per failed unattended run, one per config check turning red or green again.

The alerts' texts are composed in ``alerting.py`` and ``check_alerts.py``; where they go, ``resources.py``.
"""

from __future__ import annotations

import json

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    sensor,
)

from intervalprocessing_dagster.oncall.alerting import (
    build_failure_alert,
    failed_only_through_checks,
    unattended_by,
    will_be_retried,
)
from intervalprocessing_dagster.oncall.check_alerts import failure_alert, fixed_alert, latest_results, problem_hash
from intervalprocessing_dagster.oncall.resources import AlertChannel


@run_failure_sensor(
    name="run_failure_alert_sensor",
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING,
    description="Sends one alert per failed unattended run (schedules, sensors, backfills, after its last retry) to "
    "the alerts channel: ALERTS_SNS_TOPIC_ARN, or the sensor's log when unset.",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertChannel) -> None:
    run = context.dagster_run
    if not alerts.hand_launched_runs and unattended_by(run) is None:
        context.log.info(
            f"run {run.run_id} of {run.job_name} failed; a person launched it (UI or CLI) and sees it: "
            "no alert (ALERT_ON_HAND_LAUNCHED_RUNS=on alerts these too)"
        )
        return
    if will_be_retried(context):
        context.log.info(f"run {run.run_id} of {run.job_name} failed and will be retried; its retry reports")
        return
    step_failures = context.get_step_failure_events()
    if failed_only_through_checks(context.failure_event, step_failures):
        context.log.info(
            f"run {run.run_id} of {run.job_name} failed only through its blocking checks; "
            "check_failure_alert_sensor tells about them, once per new failure"
        )
        return
    alerts.send(build_failure_alert(context, step_failures, alerts), context.log)


@sensor(
    name="check_failure_alert_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Sends one alert when a config check (or any check at ERROR) turns red or finds a new problem, and one "
    "when it passes again, to the alerts channel: ALERTS_SNS_TOPIC_ARN, or the sensor's log when unset.",
)
def check_failure_alert_sensor(context: SensorEvaluationContext, alerts: AlertChannel) -> SensorResult:
    told: dict[str, list[str]] = json.loads(context.cursor) if context.cursor else {}
    for result in latest_results(context):
        name = result.key.to_user_string()
        if result.alerts:
            hashes = {problem_hash(problem): problem for problem in result.problems}
            new = [problem for digest, problem in hashes.items() if digest not in told.get(name, [])]
            if new:
                alerts.send(failure_alert(result, new if name in told else [], alerts), context.log)
            told[name] = sorted(hashes)
        elif name in told:
            alerts.send(fixed_alert(result, alerts), context.log)
            del told[name]
    return SensorResult(cursor=json.dumps(told, sort_keys=True))
