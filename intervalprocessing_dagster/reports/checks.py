"""Checks that show report problems before they hurt: the configuration, freshness, and row counts.

* ``report_processes_are_valid`` (on ``fileprocessingconfigs``) and ``report_queries_are_valid`` (on
  ``storedqueries``): every ``processes[]`` entry, its layout and projection, and every stored query a process names,
  read and parsed by the same functions ``generate_report`` calls (``config.load_process``, ``load_projection``,
  ``load_query``, ``layouts.resolve_layout``). They run on the hourly config-check schedule and on demand, read only
  the config, and never run a report. A failure names every broken process or query and what is wrong with it.
* Freshness (Dagster's last-update freshness checks, evaluated by ``report_freshness_sensor``): a daily report (and
  ``configured_reports``) not materialized within 26 hours, a weekly one not within 8 days.
* ``row_count`` on each report: WARN when a materialization has 0 rows or fewer than half the rows of the one before
  (a query that stopped matching, a collection emptied by mistake). It runs right after its report in the same run.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetsDefinition,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SupersessionWarning,
    asset_check,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
)

from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.reports.assets import BUILT_IN_REPORTS, FILE_PROCESSING_CONFIGS, STORED_QUERIES
from intervalprocessing_dagster.reports.config import (
    PROCESSES_COLLECTION,
    QUERIES_COLLECTION,
    ReportConfigError,
    ReportProcess,
    load_process,
    load_projection,
    load_query,
    process_names,
)
from intervalprocessing_dagster.reports.layouts import LayoutError, resolve_layout

DAILY_FRESHNESS = timedelta(hours=26)
WEEKLY_FRESHNESS = timedelta(days=8)
# Problems a config can have: ReportConfigError, LayoutError, and the query parser's errors (ValueError subclasses).
_CONFIG_ERRORS = (ReportConfigError, LayoutError, ValueError)


def _verdict(collection: str, checked: int, problems: list[str], valid: str) -> AssetCheckResult:
    """Passed (``valid`` says what was found valid), or failed at ERROR with every problem listed."""
    if not problems:
        return AssetCheckResult(passed=True, metadata={"checked": checked, "invalid": 0}, description=valid)
    listing = "\n".join(f"- {problem}" for problem in problems)
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        description=f"{len(problems)} problem(s) in {collection} ({checked} process(es) checked):\n{listing}",
        metadata={"checked": checked, "invalid": len(problems), "problems": MetadataValue.md(listing)},
    )


def _processes(mongo: MongoResource) -> tuple[list[str], list[ReportProcess], list[str]]:
    """The configured process names, the processes that parse, and a problem line for each one that does not."""
    db = mongo.database()
    names = process_names(db)
    parsed: list[ReportProcess] = []
    problems: list[str] = []
    for name in names:
        try:
            parsed.append(load_process(db, name))
        except _CONFIG_ERRORS as exc:
            problems.append(str(exc))
    return names, parsed, problems


@asset_check(
    asset=FILE_PROCESSING_CONFIGS.key,
    name="report_processes_are_valid",
    description="Every processes[] entry, its layout and its projection parse as the reports read them.",
    blocking=True,  # failed (always at ERROR), it fails its run too (oncall/jobs.py says why)
)
def report_processes_are_valid(mongo: MongoResource) -> AssetCheckResult:
    try:
        names, processes, problems = _processes(mongo)
    except ReportConfigError as exc:  # no config document, or no processes list: no report can run
        return _verdict(PROCESSES_COLLECTION, 0, [str(exc)], valid="")
    db = mongo.database()
    for process in processes:
        try:
            resolve_layout(db, process.writer_type_key, process=process.name)
            load_projection(process)
        except _CONFIG_ERRORS as exc:
            problems.append(f"process {process.name!r}: {exc}")
    return _verdict(PROCESSES_COLLECTION, len(names), problems, valid=f"all {len(names)} process(es) are valid")


@asset_check(
    asset=STORED_QUERIES.key,
    name="report_queries_are_valid",
    description="Every stored query a report names exists and parses.",
    blocking=True,  # failed (always at ERROR), it fails its run too (oncall/jobs.py says why)
)
def report_queries_are_valid(mongo: MongoResource) -> AssetCheckResult:
    try:
        _, processes, _ = _processes(mongo)  # an unparsable process is report_processes_are_valid's to name
    except ReportConfigError as exc:
        return _verdict(QUERIES_COLLECTION, 0, [str(exc)], valid="")
    db = mongo.database()
    problems: list[str] = []
    for process in processes:
        try:
            load_query(db, process)
        except _CONFIG_ERRORS as exc:
            problems.append(str(exc))
    return _verdict(
        QUERIES_COLLECTION, len(processes), problems, valid=f"the queries of all {len(processes)} process(es) are valid"
    )


def _row_count_check(report: AssetsDefinition) -> AssetChecksDefinition:
    @asset_check(
        asset=report,
        name="row_count",
        description="Warns when the report has 0 rows, or fewer than half the rows of its previous materialization.",
    )
    def row_count(context: AssetCheckExecutionContext) -> AssetCheckResult:
        records = context.instance.fetch_materializations(report.key, limit=2).records
        materialized = [record.asset_materialization.metadata for record in records if record.asset_materialization]
        if not materialized:
            return AssetCheckResult(passed=True, description="not materialized yet (the freshness check says so)")
        if "reports" in materialized[0] and materialized[0]["reports"].value == 0:  # configured_reports, none set up
            return AssetCheckResult(passed=True, description="no configured report produced a file")
        rows = [metadata["rows"].value for metadata in materialized if "rows" in metadata]
        latest, previous = rows[0], (rows[1] if len(rows) > 1 else None)
        metadata = {"rows": latest, "previous_rows": previous if previous is not None else MetadataValue.null()}
        if latest == 0:
            return AssetCheckResult(
                passed=False, severity=AssetCheckSeverity.WARN, metadata=metadata, description="the report has 0 rows"
            )
        if previous is not None and latest * 2 < previous:
            return AssetCheckResult(
                passed=False,
                severity=AssetCheckSeverity.WARN,
                metadata=metadata,
                description=f"{latest} rows, fewer than half of the previous {previous}",
            )
        return AssetCheckResult(passed=True, metadata=metadata)

    return row_count


def build_freshness_checks(report_assets: tuple[AssetsDefinition, ...], timezone: str) -> list[AssetChecksDefinition]:
    """Last-update freshness for ``report_assets``: 8 days for the built-in weekly reports, 26 hours for the rest."""
    weekly = {report.asset_name for report in BUILT_IN_REPORTS if report.weekly}
    weekly_assets = [a for a in report_assets if a.key.to_user_string() in weekly]
    daily_assets = [a for a in report_assets if a.key.to_user_string() not in weekly]
    with _freshness_checks_on_purpose():
        return [
            *build_last_update_freshness_checks(
                assets=daily_assets, lower_bound_delta=DAILY_FRESHNESS, timezone=timezone
            ),
            *build_last_update_freshness_checks(
                assets=weekly_assets, lower_bound_delta=WEEKLY_FRESHNESS, timezone=timezone
            ),
        ]


def build_row_count_checks(report_assets: tuple[AssetsDefinition, ...]) -> list[AssetChecksDefinition]:
    return [_row_count_check(report) for report in report_assets]


def build_report_freshness_sensor(freshness_checks: list[AssetChecksDefinition]) -> SensorDefinition:
    """Evaluates the freshness checks on a timer (they need no run; the sensor records their results)."""
    with _freshness_checks_on_purpose():
        return build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks,
            name="report_freshness_sensor",
            default_status=DefaultSensorStatus.RUNNING,
        )


@contextmanager
def _freshness_checks_on_purpose() -> Iterator[None]:
    """Dagster 1.13 marks the freshness-check factories superseded by ``FreshnessPolicy``; a policy shows as a
    freshness status, not as a check next to ``row_count`` with its own history and severity, which is what on call
    reads. Their warning would print in every Dagster process that loads this code location, so it is silenced here
    (only here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupersessionWarning)
        yield


CONFIG_CHECKS = (report_processes_are_valid, report_queries_are_valid)
