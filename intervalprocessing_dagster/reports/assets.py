"""The reports as Dagster assets, with the MongoDB collections they read as external assets for lineage.

One asset per old processor (the two weekly ones only when the run's stamp, in ``INTERVALPROCESSING_TIMEZONE``, is a
Friday or the run config says ``include_weekly: true``), plus ``configured_reports`` for every report added by config
alone. Each report is its own step, so one failing report does not stop the others. The collections (``audits``,
``medicalrecordrequests``, ``providers``) are external assets partitioned by the automations that change them. Each
asset and rule: docs/decisions/report-assets.md.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from dagster import (
    AssetExecutionContext,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    Config,
    DagsterError,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from intervalprocessing_dagster.data_change.assets import (
    ASSET_GROUP,
    AUDITS,
    COLLECTIONS,
    MEDICAL_RECORD_REQUESTS,
    PROVIDERS,
)
from intervalprocessing_dagster.mongo.resources import MongoResource
from intervalprocessing_dagster.reports.config import (
    PROCESSES_COLLECTION,
    QUERIES_COLLECTION,
    ReportCadence,
    ReportProcess,
    load_process,
    process_names,
)
from intervalprocessing_dagster.reports.delivery import ReportStore
from intervalprocessing_dagster.reports.generate import GeneratedReport, generate_report
from intervalprocessing_dagster.runs.clock import RunClock

# Not "intervalprocessing/cadence": that key is the data-change cadence the run queue limits runs by (deploy/).
REPORT_CADENCE_TAG = "intervalprocessing/report_cadence"
FRIDAY = 4
# Run tags of a scheduled run that stands in for ticks missed while the daemon was down (reports/definitions.py):
# which ticks, and the missed Friday whose weekly reports this run makes.
MISSED_TICKS_TAG = "intervalprocessing/missed_ticks"
WEEKLY_CATCH_UP_TAG = "intervalprocessing/weekly_catch_up"

# The report configuration every report reads (reports/checks.py validates it).
FILE_PROCESSING_CONFIGS = AssetSpec(
    PROCESSES_COLLECTION,
    group_name=ASSET_GROUP,
    kinds={"mongodb"},
    description="MongoDB collection `fileprocessingconfigs`: the reports' processes[].",
)
STORED_QUERIES = AssetSpec(
    QUERIES_COLLECTION,
    group_name=ASSET_GROUP,
    kinds={"mongodb"},
    description="MongoDB collection `storedqueries`: the reports' queries, by name.",
)
CONFIG_ASSETS = (FILE_PROCESSING_CONFIGS, STORED_QUERIES)


class FileGenerationConfig(Config):
    """Run config of every report asset; the job exposes it as one top-level ``include_weekly``.

    The daily reports ignore it; they take it too so that the job's one switch maps onto every report asset alike.
    """

    include_weekly: bool = Field(
        default=False, description="Produce the weekly reports even when the run's stamp is not a Friday."
    )


@dataclass(frozen=True)
class BuiltInReport:
    """One of the old processors: its ``processes[]`` name, its asset, whether it is weekly, what it reads."""

    processor: str
    asset_name: str
    weekly: bool
    sources: tuple[AssetSpec, ...]


BUILT_IN_REPORTS = (
    BuiltInReport("DailyAuditInventoryProcessor", "daily_audit_inventory", False, (AUDITS,)),
    BuiltInReport(
        "DailyActiveMRRInventoryProcessor", "daily_active_mrr_inventory", False, (MEDICAL_RECORD_REQUESTS, PROVIDERS)
    ),
    BuiltInReport("WeeklyAuditInventoryProcessor", "weekly_audit_inventory", True, (AUDITS,)),
    BuiltInReport("WeeklyMRRInventoryProcessor", "weekly_mrr_inventory", True, (MEDICAL_RECORD_REQUESTS, PROVIDERS)),
)
BUILT_IN_PROCESSORS = frozenset(report.processor for report in BUILT_IN_REPORTS)


def weekly_due(stamp: datetime, config: FileGenerationConfig) -> bool:
    """The Friday rule, on the stamp's own (configured) time zone."""
    return config.include_weekly or stamp.weekday() == FRIDAY


def report_metadata(report: GeneratedReport, stamp: datetime) -> dict[str, object]:
    location = (
        MetadataValue.path(report.stored.location)
        if report.stored.bucket is None
        else MetadataValue.url(report.stored.url)
    )
    metadata: dict[str, object] = {
        "rows": report.rows,
        "bytes": report.size,
        "sanitized_values": report.sanitized_values,
        "rows_without_join": report.rows_without_join,
        "duration_seconds": report.duration_seconds,
        "location": location,
        "sha256": report.sha256,
        "file_name": report.file_name,
        "process": report.process,
        "stamp": stamp.isoformat(),
    }
    if report.stored.bucket is not None:
        metadata["s3_uri"] = f"s3://{report.stored.bucket}/{report.stored.location}"
    return metadata


def _built_in_asset(report: BuiltInReport) -> AssetsDefinition:
    cadence = "on Fridays (or with include_weekly)" if report.weekly else "every run"
    base = report.processor.removesuffix("Processor")

    @asset(
        name=report.asset_name,
        group_name=ASSET_GROUP,
        deps=[*report.sources, *CONFIG_ASSETS],
        output_required=not report.weekly,
        description=f"The {base} file (processes[] entry {report.processor!r}), {cadence}.",
        tags={REPORT_CADENCE_TAG: "weekly" if report.weekly else "daily"},
    )
    def _report(
        context: AssetExecutionContext,
        config: FileGenerationConfig,
        mongo: MongoResource,
        clock: RunClock,
        report_store: ReportStore,
    ) -> Iterator[MaterializeResult]:
        stamp = clock.stamp(context)
        if report.weekly and not weekly_due(stamp, config):
            # No file and no materialization, but an observation, so the asset's page says why it did not run.
            reason = f"not a Friday (stamp {stamp.isoformat()}, a {stamp:%A})"
            context.log.info(f"{report.processor}: skipped, {reason}")
            context.log_event(AssetObservation(asset_key=context.asset_key, metadata={"skipped": reason}))
            return
        context.log.info(f"Executing {report.processor} process...")  # the old app's log lines, still searched for
        db = mongo.database()
        process = load_process(db, report.processor)
        _observe_configuration(context, process)
        generated = generate_report(db, report_store, process, stamp)
        context.log.info(f"{report.processor} process complete: {generated.rows} rows -> {generated.stored.url}")
        metadata = {**report_metadata(generated, stamp), **_weekly_catch_up(context, report.processor, report.weekly)}
        yield MaterializeResult(metadata=metadata)

    return _report


BUILT_IN_REPORT_ASSETS = tuple(_built_in_asset(report) for report in BUILT_IN_REPORTS)


@asset(
    group_name=ASSET_GROUP,
    deps=[*COLLECTIONS, *CONFIG_ASSETS],
    description="Every report configured in fileprocessingconfigs beyond the four built-ins (config-only reports).",
)
def configured_reports(
    context: AssetExecutionContext,
    config: FileGenerationConfig,
    mongo: MongoResource,
    clock: RunClock,
    report_store: ReportStore,
) -> MaterializeResult:
    stamp = clock.stamp(context)
    db = mongo.database()
    generated: list[GeneratedReport] = []
    skipped: list[str] = []
    failures: list[str] = []
    for name in process_names(db):
        if name in BUILT_IN_PROCESSORS:
            continue
        try:
            process = load_process(db, name)
            _observe_configuration(context, process)
            if process.cadence is ReportCadence.WEEKLY and not weekly_due(stamp, config):
                skipped.append(name)
                continue
            context.log.info(f"Executing {name} process...")
            report = generate_report(db, report_store, process, stamp)
        except Exception as exc:  # isolate each configured report; all failures are raised together below
            context.log.error(f"{name}: {exc}")
            failures.append(f"{name}: {exc}")
            continue
        generated.append(report)
        context.log.info(f"{name} process complete: {report.rows} rows -> {report.stored.url}")
        weekly = process.cadence is ReportCadence.WEEKLY
        metadata = {**report_metadata(report, stamp), **_weekly_catch_up(context, name, weekly)}
        context.log_event(AssetObservation(asset_key=context.asset_key, metadata=metadata))
    if failures:
        raise Failure(
            description=f"{len(failures)} configured report(s) failed:\n" + "\n".join(failures),
            metadata={"failed": len(failures), "generated": len(generated)},
        )
    return MaterializeResult(
        metadata={
            "reports": len(generated),
            "rows": sum(report.rows for report in generated),
            "bytes": sum(report.size for report in generated),
            "skipped_weekly": ", ".join(skipped),
            "files": MetadataValue.md(_files_table(generated)),
        }
    )


def _observe_configuration(context: AssetExecutionContext, process: ReportProcess) -> None:
    """What a report read of the configuration collections, as their observations: their cards in the UI then show
    when a report last read them, and which entry."""
    context.log_event(AssetObservation(asset_key=FILE_PROCESSING_CONFIGS.key, metadata={"process": process.name}))
    context.log_event(
        AssetObservation(asset_key=STORED_QUERIES.key, metadata={"query": process.query_name, "process": process.name})
    )


def _weekly_catch_up(context: AssetExecutionContext, process: str, weekly: bool) -> dict[str, str]:
    """For a weekly report made by a run that stands in for a missed Friday (``WEEKLY_CATCH_UP_TAG``): says so in
    the log and in the report's metadata, as its file is named for this run's stamp, not for that Friday."""
    try:
        missed_friday = context.run.tags.get(WEEKLY_CATCH_UP_TAG) if weekly else None
    except DagsterError:  # direct invocation (build_asset_context) has no run, so no schedule's tags
        missed_friday = None
    if not missed_friday:
        return {}
    context.log.warning(
        f"{process}: the weekly report of the missed Friday tick {missed_friday}, made with this "
        "run's data and named for this run's stamp"
    )
    return {"catches_up_on": missed_friday}


def _files_table(reports: list[GeneratedReport]) -> str:
    lines = ["| process | file | rows | bytes |", "|---|---|---|---|"]
    lines += [f"| {r.process} | [{r.file_name}]({r.stored.url}) | {r.rows} | {r.size} |" for r in reports]
    return "\n".join(lines)
