"""The ``history`` family's targets (issue 21) and its ``latest.md``."""

from __future__ import annotations

from typing import Any

SIZE_RATIO_TARGET = 1.2
UI_P95_TARGET_SECONDS = 1.0
ONE_DAY_DELETION_TARGET_SECONDS = 60.0
#: Deployments the sizing table extrapolates to: the measured mix of cadences, times these factors.
SIZING_FACTORS = (1, 2, 5, 10)
#: RDS classes by memory (GiB), smallest first. A class fits when the history tables' indexes take at most half of
#: its memory: RDS gives a quarter to shared_buffers by default and the operating system caches the rest, and the
#: UI's queries walk those indexes (the heap pages they read are the recent ones).
INSTANCE_CLASSES = (
    ("db.t4g.micro", 1),
    ("db.t4g.small", 2),
    ("db.t4g.medium", 4),
    ("db.m7g.large", 8),
    ("db.m7g.xlarge", 16),
)


def evaluate_targets(document: dict[str, Any]) -> list[dict[str, str]]:
    """Pass, fail or not measured for each target, judged on the retained (steady-state) database."""
    retained = document.get("scenarios", {}).get("retained")
    if retained is None:
        return [
            {"target": name, "status": "not measured", "detail": "no retained scenario in this run"}
            for name in ("size within 1.2x of the window", "UI p95 under 1 s", "one day deleted under 60 s")
        ]
    ratio = retained["size"]["database_bytes"] / retained["size"]["compacted_bytes"]
    p95 = max(_timed(retained["ui"]), key=lambda row: row["p95_seconds"])
    passes = retained["retention_passes"]
    deletion = passes["seconds_max"]
    return [
        {
            "target": f"with retention the database stays within {SIZE_RATIO_TARGET}x of the window's size",
            "status": "pass" if ratio <= SIZE_RATIO_TARGET else "fail",
            "detail": f"{_mb(retained['size']['database_bytes'])} against {_mb(retained['size']['compacted_bytes'])} "
            f"compacted: {ratio:.2f}x",
        },
        {
            "target": f"each UI query p95 under {UI_P95_TARGET_SECONDS:g} s at steady state",
            "status": "pass" if p95["p95_seconds"] < UI_P95_TARGET_SECONDS else "fail",
            "detail": f"slowest: {p95['page']}, {p95['operation']}: {p95['p95_seconds']} s",
        },
        {
            "target": f"deleting one day's history under {ONE_DAY_DELETION_TARGET_SECONDS:g} s",
            "status": "pass" if deletion < ONE_DAY_DELETION_TARGET_SECONDS else "fail",
            "detail": f"{passes['steady_state_passes']} steady-state passes: median {passes['seconds_p50']} s, "
            f"slowest {deletion} s ({_vacuum(document)}), {passes['deleted_runs_per_pass']} runs each",
        },
    ]


def sizing(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Storage per deployment size, from this run's figures: events per automation step and per run (the hourly
    and the big template), bytes per event (the no-retention database), what the retained database holds per day of
    history and its indexes' share (the retained scenario)."""
    scenarios = document.get("scenarios", {})
    if not {"year", "retained"} <= set(scenarios):
        return []
    templates, deployment = document["templates"], document["deployment"]
    # Two runs of the same job with different numbers of automations: the hourly one and the big one.
    hourly, big = templates["hourly_data_change_job"]["events"], templates["hourly_big"]["events"]
    if document["big_run_automations"] == deployment["hourly"]:
        return []
    per_step = (big - hourly) / (document["big_run_automations"] - deployment["hourly"])
    per_run = hourly - deployment["hourly"] * per_step
    fixed = (
        24 * templates["config_checks_job"]["events"]
        + templates["file_generation_job"]["events"]
        + templates["history_retention_job"]["events"]
    )
    year = scenarios["year"]["size"]
    bytes_per_event = year["database_bytes"] / year["events"]
    retained = scenarios["retained"]
    retained_days = document["retention"]["success_days"]
    tables = retained["size"]["tables"]
    index_share = sum(t["total_bytes"] - t["heap_bytes"] for t in tables.values()) / retained["size"]["database_bytes"]
    runs_per_day = {"quarter_hourly": 96, "half_hourly": 48, "hourly": 24, "nightly": 1}
    rows = []
    for factor in SIZING_FACTORS:
        counts = {cadence: deployment[cadence] * factor for cadence in runs_per_day}
        events = fixed + sum(runs * (per_run + counts[c] * per_step) for c, runs in runs_per_day.items())
        day_bytes = events * bytes_per_event
        kept = retained["size"]["database_bytes"] * day_bytes / (year["database_bytes"] / scenarios["year"]["days"])
        indexes_gib = kept * index_share / 1024**3
        instance = next((name for name, gib in INSTANCE_CLASSES if indexes_gib <= gib / 2), INSTANCE_CLASSES[-1][0])
        rows.append(
            {
                "automations": counts,
                "events_per_day": round(events),
                "mb_per_day": day_bytes / 1024**2,
                "gb_per_month_without_retention": day_bytes * 30 / 1024**3,
                "gb_per_year_without_retention": day_bytes * 365 / 1024**3,
                "gb_with_retention": kept / 1024**3,
                "instance_class": instance,
                "retained_days": retained_days,
            }
        )
    return rows


def markdown(document: dict[str, Any]) -> str:
    scenarios = document.get("scenarios", {})
    names = list(scenarios)
    deployment = document["deployment"]
    lines = [
        "# History soak benchmark (`python -m bench.history`)",
        "",
        f"`{document['command']}`, {document['generated_at']}, {document['runtime_seconds']:.0f} s in all "
        f"(real template runs {document['template_seconds']:.0f} s).",
        "",
        f"Deployment: {deployment['quarter_hourly']} quarter-hourly, {deployment['half_hourly']} half-hourly, "
        f"{deployment['hourly']} hourly and {deployment['nightly']} nightly automations; every "
        f"{deployment['failure_every']}th quarter-hourly run fails; plus the hourly config checks, daily file "
        f"generation and daily history retention. Retention windows: {document['retention']}.",
        "",
        "## Targets",
        "",
        "| target | status | detail |",
        "|---|---|---|",
        *(f"| {t['target']} | **{t['status']}** | {t['detail']} |" for t in document["targets"]),
        "",
        "## Template runs (real runs, copied for every tick)",
        "",
        "| template | status | events | asset tags | check executions |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {key} | {t['status']} | {t['events']} | {t['asset_tags']} | {t['check_executions']} |"
            for key, t in document["templates"].items()
        ),
        "",
        "## Database",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| days | " + " | ".join(str(scenarios[n]["days"]) for n in names) + " |",
        "| runs | " + " | ".join(f"{scenarios[n]['size']['runs']:,}" for n in names) + " |",
        "| events | " + " | ".join(f"{scenarios[n]['size']['events']:,}" for n in names) + " |",
        "| database size | " + " | ".join(_mb(scenarios[n]["size"]["database_bytes"]) for n in names) + " |",
        "| compacted (what is kept) | "
        + " | ".join(
            _mb(scenarios[n]["size"]["compacted_bytes"]) if "compacted_bytes" in scenarios[n]["size"] else "—"
            for n in names
        )
        + " |",
        "| build time | " + " | ".join(f"{scenarios[n]['build']['seconds']:.0f} s" for n in names) + " |",
        "",
    ]
    for name in names:
        tables = scenarios[name]["size"]["tables"]
        listed = ", ".join(
            f"`{table}` {_mb(sizes['total_bytes'])} (heap {_mb(sizes['heap_bytes'])})"
            for table, sizes in tables.items()
        )
        lines += [f"Largest tables ({name}): {listed}.", ""]
    lines += [
        "## UI queries (p50 / p95 / max seconds, over real HTTP to dagster-webserver)",
        "",
        "| page | operation | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    keyed = {n: {(row["page"], row["operation"]): row for row in _timed(scenarios[n]["ui"])} for n in names}
    for key in dict.fromkeys(k for n in names for k in keyed[n]):
        cells = [
            f"{r['p50_seconds']} / {r['p95_seconds']} / {r['max_seconds']}" if (r := keyed[n].get(key)) else "—"
            for n in names
        ]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Daemon iterations (p50 / max seconds)",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for part in ("scheduler_seconds", "run_queue_seconds"):
        lines.append(
            f"| {part.removesuffix('_seconds').replace('_', ' ')} | "
            + " | ".join(
                f"{scenarios[n]['daemon'][part]['p50']} / {scenarios[n]['daemon'][part]['max']}" for n in names
            )
            + " |"
        )
    lines += ["", "## Deleting one day of history", ""]
    for name in names:
        scenario = scenarios[name]
        if "retention_passes" in scenario:
            passes = scenario["retention_passes"]
            lines.append(
                f"- {name}: {passes['steady_state_passes']} steady-state daily passes, median "
                f"{passes['seconds_p50']} s, slowest {passes['seconds_max']} s, "
                f"{passes['deleted_runs_per_pass']} runs deleted per pass ({_vacuum(document)})."
            )
        if "one_day_deletion" in scenario:
            one = scenario["one_day_deletion"]
            lines.append(
                f"- {name}: the oldest day out of {scenario['days']}: {one['seconds']} s for "
                f"{sum(one['deleted_runs'].values())} runs (VACUUM {one['vacuum_seconds']} s)."
            )
    rows = sizing(document)
    if rows:
        lines += [
            "",
            "## Sizing (extrapolated from this run's figures; `history_report.sizing` says how)",
            "",
            "| automations (15 min / 30 min / hourly / nightly) | events a day | storage a day | a month without "
            "retention | a year without retention | with retention (steady) | instance class |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            counts = row["automations"]
            lines.append(
                f"| {sum(counts.values())} ({counts['quarter_hourly']} / {counts['half_hourly']} / {counts['hourly']}"
                f" / {counts['nightly']}) | {row['events_per_day']:,} | {row['mb_per_day']:.0f} MB | "
                f"{row['gb_per_month_without_retention']:.1f} GB | {row['gb_per_year_without_retention']:.0f} GB | "
                f"{row['gb_with_retention']:.1f} GB | {row['instance_class']} |"
            )
    machine = document["machine"]
    load = machine["load_average"]
    lines += [
        "",
        "## Machine",
        "",
        f"{machine['cpu_count']} × {machine['cpu_model']}, {machine['ram_gb']} GB RAM, {machine['os']}, "
        f"Python {machine['python']}, dagster {machine['packages'].get('dagster')}; {machine['server_version']}. "
        f"Load average (1 min) at start {load['start'][0]}, during min {load['during']['min']} / mean "
        f"{load['during']['mean']} / max {load['during']['max']}, at end {load['end'][0]}.",
        "",
    ]
    return "\n".join(lines)


def _vacuum(document: dict[str, Any]) -> str:
    return "VACUUM included" if document.get("vacuum_after_each_pass", True) else "no VACUUM: autovacuum only"


def _timed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if "p95_seconds" in row]


def _mb(size: int) -> str:
    return f"{size / 1024**2:,.0f} MB" if size >= 10 * 1024**2 else f"{size / 1024**2:,.1f} MB"
