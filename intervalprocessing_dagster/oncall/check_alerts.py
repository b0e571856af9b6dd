"""A red check reaches a person: ``check_failure_alert_sensor`` tells the alerts channel once per new failure and
once when it is fixed.

Alerts on a config check failed at any severity and on any other check failed at ERROR. The sensor's cursor holds a
hash of each problem already told about, so a check that stays red does not page every hour, a new broken document
does, and a daemon restart neither repeats nor loses an alert. Runs in the daemon, on by default, through the same
``alerts`` channel as ``run_failure_alert_sensor``. Details: docs/decisions/check-alerts.md.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import AssetCheckEvaluation, AssetCheckKey, AssetCheckSeverity, DagsterEventType, SensorEvaluationContext

from intervalprocessing_dagster.oncall.alerting import alert_subject, excerpt
from intervalprocessing_dagster.oncall.jobs import CONFIG_CHECK_KEYS
from intervalprocessing_dagster.oncall.resources import Alert, AlertChannel

if TYPE_CHECKING:  # the type the event log storage returns; Dagster exports no name for it
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord

# A check's description lists every broken document; an alert quotes this many lines of it.
MAX_DESCRIPTION_LINES = 40


@dataclass(frozen=True)
class CheckResult:
    """A check's latest completed evaluation, and the run that made it."""

    key: AssetCheckKey
    run_id: str
    evaluation: AssetCheckEvaluation

    @property
    def alerts(self) -> bool:
        """Red in a way a person must hear about (see the module docstring)."""
        if self.evaluation.passed:
            return False
        return self.key in CONFIG_CHECK_KEYS or self.evaluation.severity == AssetCheckSeverity.ERROR

    @property
    def problems(self) -> list[str]:
        """The problems the check reported (the items of its ``problems`` metadata, a Markdown list whose items may
        run over several lines, as a query's syntax error does), or its whole failure as one."""
        listing = self.evaluation.metadata.get("problems")
        items: list[str] = []
        for line in str(listing.value).splitlines() if listing is not None else []:
            if line.startswith("- ") or not items:
                items.append(line)
            else:
                items[-1] += "\n" + line
        return items or [""]


def latest_results(context: SensorEvaluationContext) -> list[CheckResult]:
    """The latest completed evaluation of every check of the code location, in key order."""
    keys = sorted(context.repository_def.asset_graph.asset_check_keys, key=str)
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    results = [_result(records[key]) for key in keys if key in records]
    return [result for result in results if result is not None]


def failure_alert(result: CheckResult, new: list[str], alerts: AlertChannel) -> Alert:
    """The check's failure and every problem it lists; ``new`` (when the check was already red) marks the news."""
    evaluation = result.evaluation
    severity = evaluation.severity.value
    lines = [*_header(result, alerts), f"Result: failed ({severity})"]
    lines.extend(excerpt(evaluation.description or "no description", MAX_DESCRIPTION_LINES))
    if any(new):
        lines.append(f"New since the last alert ({len(new)}):")
        lines.extend(excerpt("\n".join(new), MAX_DESCRIPTION_LINES))
    subject = alert_subject(f"check {result.key.name} failed ({severity})")
    return Alert(subject=subject, text="\n".join(lines), attributes=_attributes(result))


def fixed_alert(result: CheckResult, alerts: AlertChannel) -> Alert:
    evaluation = result.evaluation
    outcome = "passed" if evaluation.passed else f"failed ({evaluation.severity.value}), which does not alert"
    lines = [*_header(result, alerts), f"Result: {outcome}", *excerpt(evaluation.description or "no description")]
    subject = alert_subject(f"check {result.key.name} passes again")
    return Alert(subject=subject, text="\n".join(lines), attributes=_attributes(result), level=logging.INFO)


def _result(record: AssetCheckExecutionRecord) -> CheckResult | None:
    event = record.event
    if event is None or event.dagster_event_type != DagsterEventType.ASSET_CHECK_EVALUATION:
        return None  # planned or in progress: the previous result stands until this one completes
    evaluation = record.event.dagster_event.event_specific_data
    return CheckResult(key=record.key, run_id=record.run_id, evaluation=evaluation)


def _header(result: CheckResult, alerts: AlertChannel) -> list[str]:
    return [
        f"Check: {result.key.name} on {result.key.asset_key.to_user_string()}",
        f"Run: {result.run_id}",
        alerts.link_line(result.run_id),
    ]


def _attributes(result: CheckResult) -> dict[str, str]:
    return {"check": result.key.to_user_string(), "run_id": result.run_id}


def problem_hash(problem: str) -> str:
    """A short stand-in for a problem line in the cursor (the lines themselves can be long)."""
    return hashlib.sha256(problem.encode()).hexdigest()[:16]
