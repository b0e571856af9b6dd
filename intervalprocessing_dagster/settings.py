"""Every environment variable the platform reads, in one place.

Nothing else in the package calls ``os.environ`` (except ``process_to_run.py``, which reads the old ``processToRun``
switch that chooses a job rather than configuring one): the choice between local and production parts is made from a
``Settings`` value in ``definitions.py``, so one file tells an operator everything they can set. The names are part
of the public contract (operators script against them) and are documented in docs/configuration.md.

Secrets (``MONGODB_URI``) are only *tested for presence* here; their values reach resources through Dagster's
``EnvVar`` so they are never rendered in the UI or logs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DATABASE = "intervalprocessing"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_REPORTS_S3_PREFIX = "GeneratedFiles/"
DEFAULT_FILE_GENERATION_CRON = "0 3 * * *"
DEFAULT_LOCAL_DIR = ".intervalprocessing"
DEFAULT_STEP_OUTPUTS_S3_PREFIX = "dagster/step-outputs/"
DEFAULT_AUTOMATION_HISTORY_DAYS = 90
DEFAULT_RUN_HISTORY_SUCCESS_DAYS = 30
DEFAULT_RUN_HISTORY_FAILURE_DAYS = 90
DEFAULT_RUN_HISTORY_KEEP_ALL_DAYS = 7
#: Where the operators' webserver appends its audit lines without ``WEBSERVER_AUDIT_LOG`` (under the local dir).
DEFAULT_AUDIT_LOG_NAME = "audit/webserver-audit.jsonl"
#: ``WEBSERVER_AUDIT_LOG=-``: audit lines to standard output.
AUDIT_LOG_STDOUT = "-"
#: The viewers' webserver's Postgres role (instance/viewer_role.py) and the variable holding its password (a secret:
#: read only by that command, through Dagster's EnvVar).
DEFAULT_VIEWER_PG_USERNAME = "dagster_viewer"
VIEWER_PG_PASSWORD_VARIABLE = "DAGSTER_VIEWER_PG_PASSWORD"
_LOAD_BALANCER_ARN = re.compile(
    r"arn:aws[a-z-]*:elasticloadbalancing:(?P<region>[a-z0-9-]+):\d{12}:loadbalancer/app/[A-Za-z0-9-]+/[0-9a-f]+"
)


class SettingsError(ValueError):
    """An environment variable holds a value the platform cannot use."""


@dataclass(frozen=True)
class Limit:
    """How many documents one run of an automation may match: at most ``count``, and at most ``percent`` of its
    collection; either may be None (not limited that way), not both."""

    count: int | None
    percent: float | None

    def documents(self, collection_size: int) -> int:
        """The limit as a number of documents, for a collection of ``collection_size`` documents (a percentage is
        rounded up, so "5%" of 10 documents allows 1)."""
        allowed = [self.count] if self.count is not None else []
        if self.percent is not None:
            allowed.append(math.ceil(collection_size * self.percent / 100))
        return min(allowed)

    def __str__(self) -> str:
        """The limit as it is written, e.g. ``5000, 5%``."""
        parts = [str(self.count)] if self.count is not None else []
        if self.percent is not None:
            parts.append(f"{self.percent:g}%")
        return ", ".join(parts)


_LIMIT_SYNTAX = "a whole number of at least 1, a percentage of the collection such as '5%', or both ('5000, 5%')"


def parse_limit(value: Any) -> Limit:
    """A limit as an automation's ``maxDocuments`` or ``AUTOMATION_MAX_DOCUMENTS`` writes it; ``ValueError`` saying
    what is wrong otherwise. A whole number stored as a double (the legacy mongo shell's only number) counts."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        parts: list[Any] = [value]
    elif isinstance(value, str) and value.strip():
        parts = [part.strip() for part in value.split(",")]
    else:
        raise ValueError(f"must be {_LIMIT_SYNTAX}, got {value!r}")
    count: int | None = None
    percent: float | None = None
    for part in parts:
        if isinstance(part, str) and part.endswith("%"):
            try:
                number = float(part[:-1])
            except ValueError:
                number = math.nan
            if percent is not None or not 0 < number <= 100:
                raise ValueError(f"must be {_LIMIT_SYNTAX}; {part!r} is not one percentage above 0 and at most 100")
            percent = number
        else:
            try:
                number = int(part)
            except ValueError:
                number = 0
            if count is not None or number < 1:
                raise ValueError(f"must be {_LIMIT_SYNTAX}; {part!r} is not one whole number of at least 1")
            count = number
    return Limit(count, percent)


@dataclass(frozen=True)
class Settings:
    """The platform's configuration, as read from the environment."""

    mongodb_uri_is_set: bool
    mongodb_database: str
    timezone: str
    reports_s3_bucket: str | None
    reports_s3_prefix: str
    local_dir: Path
    reports_local_dir: Path
    file_generation_cron: str
    step_outputs_s3_bucket: str | None
    step_outputs_s3_prefix: str
    alerts_sns_topic_arn: str | None
    webserver_url: str | None
    alert_on_hand_launched_runs: bool
    automation_history_days: int
    automation_max_documents: Limit | None
    run_history_retention: bool
    run_history_success_days: int
    run_history_failure_days: int
    run_history_keep_all_days: int
    webserver_sign_on_load_balancer_arn: str | None
    webserver_sign_on_key_endpoint: str | None
    webserver_sign_on_client_id: str | None
    webserver_audit_log: Path | None  # None: standard output
    viewer_pg_username: str

    @property
    def embedded_mongo_dir(self) -> Path:
        """Where the embedded server keeps its data when ``MONGODB_URI`` is unset."""
        return self.local_dir / "embedded-mongo"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        timezone = _env(env, "INTERVALPROCESSING_TIMEZONE") or DEFAULT_TIMEZONE
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(
                f"INTERVALPROCESSING_TIMEZONE={timezone!r} is not an IANA time zone name (e.g. 'America/New_York')"
            ) from exc
        local_dir = Path(_env(env, "INTERVALPROCESSING_LOCAL_DIR") or DEFAULT_LOCAL_DIR).resolve()
        return cls(
            mongodb_uri_is_set=bool(_env(env, "MONGODB_URI")),
            mongodb_database=_env(env, "MONGODB_DATABASE") or DEFAULT_DATABASE,
            timezone=timezone,
            reports_s3_bucket=_env(env, "REPORTS_S3_BUCKET"),
            reports_s3_prefix=_folder(_env(env, "REPORTS_S3_PREFIX") or DEFAULT_REPORTS_S3_PREFIX),
            local_dir=local_dir,
            reports_local_dir=Path(_env(env, "REPORTS_LOCAL_DIR") or local_dir / "reports").resolve(),
            file_generation_cron=_env(env, "FILE_GENERATION_CRON") or DEFAULT_FILE_GENERATION_CRON,
            step_outputs_s3_bucket=_env(env, "STEP_OUTPUTS_S3_BUCKET"),
            step_outputs_s3_prefix=_folder(_env(env, "STEP_OUTPUTS_S3_PREFIX") or DEFAULT_STEP_OUTPUTS_S3_PREFIX),
            alerts_sns_topic_arn=_env(env, "ALERTS_SNS_TOPIC_ARN"),
            webserver_url=_env(env, "INTERVALPROCESSING_WEBSERVER_URL"),
            alert_on_hand_launched_runs=_switch(env, "ALERT_ON_HAND_LAUNCHED_RUNS", default=False),
            automation_history_days=_days(env, "AUTOMATION_HISTORY_DAYS", DEFAULT_AUTOMATION_HISTORY_DAYS),
            automation_max_documents=_limit(env, "AUTOMATION_MAX_DOCUMENTS"),
            run_history_retention=_switch(env, "RUN_HISTORY_RETENTION", default=True),
            run_history_success_days=_days(env, "RUN_HISTORY_SUCCESS_DAYS", DEFAULT_RUN_HISTORY_SUCCESS_DAYS),
            run_history_failure_days=_days(env, "RUN_HISTORY_FAILURE_DAYS", DEFAULT_RUN_HISTORY_FAILURE_DAYS),
            run_history_keep_all_days=_days(env, "RUN_HISTORY_KEEP_ALL_DAYS", DEFAULT_RUN_HISTORY_KEEP_ALL_DAYS),
            **_webserver_sign_on(env),
            webserver_audit_log=_audit_log(env, local_dir),
            viewer_pg_username=_role_name(env, "DAGSTER_VIEWER_PG_USERNAME", DEFAULT_VIEWER_PG_USERNAME),
        )


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """A variable's value, with empty strings treated as unset (as ECS task definitions often leave them)."""
    value = environ.get(name, "").strip()
    return value or None


def _switch(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    """``on`` / ``off`` (also ``true`` / ``false``, ``1`` / ``0``); anything else is refused, not guessed."""
    value = _env(environ, name)
    if value is None:
        return default
    if value.lower() in ("on", "true", "1"):
        return True
    if value.lower() in ("off", "false", "0"):
        return False
    raise SettingsError(f"{name}={value!r} must be on or off")


def _days(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole number of days, at least 1 (0 would expire a record, or delete a run, the moment it is written)."""
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if days < 1:
        raise SettingsError(f"{name}={raw!r} is not a whole number of days of at least 1 (default {default})")
    return days


def _limit(environ: Mapping[str, str], name: str) -> Limit | None:
    """The platform's default blast-radius limit, in the syntax of an automation's ``maxDocuments``; unset: none."""
    raw = _env(environ, name)
    if raw is None:
        return None
    try:
        return parse_limit(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} {exc}") from exc


def _webserver_sign_on(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The load balancer whose signed sign-on token the operators' webserver requires, and where its keys are.

    Unset: no sign-on (the person is the OS user). ``WEBSERVER_SIGN_ON_CLIENT_ID``, when set, is the only sign-in
    client whose tokens are accepted (the operators'). The key endpoint defaults to the load balancer's regional one,
    ``https://public-keys.auth.elb.<region>.amazonaws.com``; given, it must be HTTPS (plain HTTP only to this host,
    for a stand-in in tests)."""
    arn = _env(environ, "WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN")
    endpoint = _env(environ, "WEBSERVER_SIGN_ON_KEY_ENDPOINT")
    client_id = _env(environ, "WEBSERVER_SIGN_ON_CLIENT_ID")
    if arn is None:
        for name, value in (("WEBSERVER_SIGN_ON_KEY_ENDPOINT", endpoint), ("WEBSERVER_SIGN_ON_CLIENT_ID", client_id)):
            if value is not None:
                raise SettingsError(
                    f"{name} is set but WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN is not: set the load "
                    "balancer whose tokens the webserver accepts"
                )
        return {
            "webserver_sign_on_load_balancer_arn": None,
            "webserver_sign_on_key_endpoint": None,
            "webserver_sign_on_client_id": None,
        }
    found = _LOAD_BALANCER_ARN.fullmatch(arn)
    if found is None:
        raise SettingsError(
            f"WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN={arn!r} is not an Application Load Balancer ARN "
            "(arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>)"
        )
    if endpoint is None:
        endpoint = f"https://public-keys.auth.elb.{found['region']}.amazonaws.com"
    url = urlsplit(endpoint)
    if not url.hostname or not (
        url.scheme == "https" or (url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost", "::1"))
    ):
        raise SettingsError(f"WEBSERVER_SIGN_ON_KEY_ENDPOINT={endpoint!r} must be an https:// URL")
    return {
        "webserver_sign_on_load_balancer_arn": arn,
        "webserver_sign_on_key_endpoint": endpoint.rstrip("/"),
        "webserver_sign_on_client_id": client_id,
    }


def _audit_log(environ: Mapping[str, str], local_dir: Path) -> Path | None:
    """The audit log file of the operators' webserver; ``-`` for standard output (None)."""
    value = _env(environ, "WEBSERVER_AUDIT_LOG")
    if value == AUDIT_LOG_STDOUT:
        return None
    return Path(value).resolve() if value else local_dir / DEFAULT_AUDIT_LOG_NAME


def _role_name(environ: Mapping[str, str], name: str, default: str) -> str:
    """A Postgres role name: lower case letters, digits and underscores, as an unquoted identifier would be."""
    value = _env(environ, name) or default
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise SettingsError(f"{name}={value!r} is not a Postgres role name (a-z, 0-9, _; at most 63)")
    return value


def _folder(prefix: str) -> str:
    """An S3 key prefix that names a folder: ``out`` and ``out/`` both mean ``out/``."""
    return prefix if prefix.endswith("/") else prefix + "/"
