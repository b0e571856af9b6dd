"""Everything that differs between environments, read from CDK context in one place.

Each field is one context parameter (`cdk deploy -c name=value` or the `context` block of `cdk.json`). Values given on
the command line arrive as strings, so every value is parsed and checked here, and a bad value stops the synth with a
message that names the parameter, instead of producing a template that fails half-way through a deployment.

The README's "Context parameters" table documents every field; a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import re
import urllib.parse
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import aws_logs as logs
from constructs import Node

#: The retention periods CloudWatch Logs accepts, in days (jsii enums carry names, not the numbers).
_LOG_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = dict(
    zip(
        (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
        (member for member in logs.RetentionDays if member is not logs.RetentionDays.INFINITE),
        strict=True,
    )
)
#: Fargate CPU units and the memory sizes (MiB) each one allows.
_FARGATE_MEMORY_BY_CPU: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
}


def _param(name: str, default: Any, doc: str) -> Any:
    """A dataclass field bound to the context parameter `name`; `doc` is its meaning, kept beside the default
    (README.md's table repeats both for operators)."""
    return field(default=default, metadata={"context": name, "doc": doc})


@dataclass(frozen=True)
class DeploymentConfig:
    """The per-environment settings of the IntervalProcessing stack (defaults match the old manual guide)."""

    reports_bucket_name: str = _param(
        "reportsBucketName", "intervalprocessing", "name of the S3 bucket for reports and compute logs"
    )
    reports_prefix: str = _param("reportsPrefix", "GeneratedFiles/", "key prefix of the report files")
    compute_logs_prefix: str = _param(
        "computeLogsPrefix", "dagster/compute-logs", "key prefix of Dagster's captured stdout/stderr"
    )
    compute_logs_expiration_days: int = _param(
        "computeLogsExpirationDays", 30, "days after which compute-log objects are deleted"
    )
    step_outputs_prefix: str = _param(
        "stepOutputsPrefix", "dagster/step-outputs/", "key prefix of the S3 pickle IO manager's step outputs"
    )
    step_outputs_expiration_days: int = _param(
        "stepOutputsExpirationDays", 14, "days after which step outputs are deleted (no re-execution from older runs)"
    )
    ecr_repository_name: str = _param("ecrRepositoryName", "intervalprocessing", "ECR repository of the image")
    image_tag: str = _param("imageTag", "latest", "image tag the three task definitions run")
    start_services: bool = _param(
        "startServices", True, "run the daemon and webserver (false on the first deploy, before the image exists)"
    )
    cluster_name: str = _param("clusterName", "intervalprocessing", "ECS cluster name")
    vpc_cidr: str = _param("vpcCidr", "10.40.0.0/16", "CIDR block of the new VPC")
    log_retention_days: int = _param("logRetentionDays", 90, "retention of every CloudWatch log group")
    audit_log_retention_days: int = _param(
        "auditLogRetentionDays",
        2192,
        "retention of the audit log group (who did what in the operator UI); six years, HIPAA's documentation period",
    )
    mongo_secret_name: str = _param(
        "mongoSecretName", "intervalprocessing/mongodb-uri", "Secrets Manager name of the MongoDB connection string"
    )
    mongo_database: str = _param("mongoDatabase", "intervalprocessing", "MONGODB_DATABASE of the tasks")
    timezone: str = _param("timezone", "UTC", "INTERVALPROCESSING_TIMEZONE of the tasks")
    db_instance_type: str = _param("dbInstanceType", "t4g.micro", "RDS instance class (without the db. prefix)")
    db_allocated_storage_gib: int = _param("dbAllocatedStorageGib", 20, "initial RDS storage")
    db_multi_az: bool = _param("dbMultiAz", False, "run Postgres with a standby in the second AZ")
    db_deletion_protection: bool = _param("dbDeletionProtection", True, "refuse to delete the Dagster database")
    daemon_cpu: int = _param("daemonCpu", 512, "Fargate CPU units of the Dagster daemon")
    daemon_memory_mib: int = _param("daemonMemoryMiB", 2048, "memory of the Dagster daemon")
    webserver_cpu: int = _param("webserverCpu", 512, "Fargate CPU units of the Dagster webserver")
    webserver_memory_mib: int = _param("webserverMemoryMiB", 2048, "memory of the Dagster webserver")
    webserver_exec_command: bool = _param(
        "webserverExecCommand", True, "allow ECS Exec / SSM port forwarding into the webserver"
    )
    webserver_load_balancer: str = _param(
        "webserverLoadBalancer",
        "none",
        "none, internal or internet-facing: the HTTPS load balancer with sign-on in front of the two UIs",
    )
    webserver_allowed_cidr: str = _param(
        "webserverAllowedCidr",
        "",
        "CIDR allowed to reach the load balancer (default: the VPC CIDR when internal, anywhere when internet-facing)",
    )
    viewer_host_name: str = _param(
        "viewerHostName", "", "host name of the read-only UI every signed-in person may open (dagster.example.com)"
    )
    operator_host_name: str = _param(
        "operatorHostName", "", "host name of the full UI, for the operators group only (dagster-ops.example.com)"
    )
    certificate_arn: str = _param(
        "certificateArn", "", "ACM certificate covering both host names (else one is made, DNS-validated in the zone)"
    )
    hosted_zone_id: str = _param(
        "hostedZoneId",
        "",
        "Route 53 zone of the host names: the stack adds their records (and, without an ARN, the "
        "certificate's validation records)",
    )
    hosted_zone_name: str = _param("hostedZoneName", "", "the domain name of hostedZoneId (example.com)")
    sign_on: str = _param(
        "signOn", "cognito", "cognito (a user pool made by the stack) or oidc (your identity provider)"
    )
    cognito_domain_prefix: str = _param(
        "cognitoDomainPrefix", "", "prefix of the user pool's sign-in domain (default: <clusterName>-<account id>)"
    )
    oidc_issuer: str = _param("oidcIssuer", "", "OIDC: the identity provider's issuer URL")
    oidc_authorization_endpoint: str = _param("oidcAuthorizationEndpoint", "", "OIDC: its authorization endpoint")
    oidc_token_endpoint: str = _param("oidcTokenEndpoint", "", "OIDC: its token endpoint")
    oidc_user_info_endpoint: str = _param("oidcUserInfoEndpoint", "", "OIDC: its user info endpoint")
    oidc_viewer_client_id: str = _param("oidcViewerClientId", "", "OIDC: the client (app) everyone signed in may use")
    oidc_operator_client_id: str = _param(
        "oidcOperatorClientId", "", "OIDC: the client (app) the identity provider assigns to the operators group only"
    )
    oidc_client_secret_name: str = _param(
        "oidcClientSecretName",
        "intervalprocessing/oidc-client-secrets",
        "OIDC: Secrets Manager secret holding both client secrets (JSON keys viewer and operator)",
    )
    sign_on_session_hours: int = _param(
        "signOnSessionHours",
        8,
        "hours a sign-in lasts at the load balancer before the identity provider is asked again",
    )
    waf: bool = _param("waf", True, "AWS WAF web ACL (managed rule groups and a rate limit) on the load balancer")
    waf_rate_limit: int = _param("wafRateLimit", 2000, "requests one client IP may send in 5 minutes before WAF blocks")
    webserver_url: str = _param(
        "webserverUrl", "", "base URL of the Dagster UI for links in alerts (default: https://<operatorHostName>)"
    )
    alert_email: str = _param("alertEmail", "", "email address subscribed to the alerts topic (none if empty)")
    # How long history is kept. Empty: the application's own default (README "Configuration"), which is then the
    # one place it is written down.
    run_history_success_days: str = _param(
        "runHistorySuccessDays", "", "RUN_HISTORY_SUCCESS_DAYS: days a successful run is kept (empty: the app's 30)"
    )
    run_history_failure_days: str = _param(
        "runHistoryFailureDays", "", "RUN_HISTORY_FAILURE_DAYS: days a failed or canceled run is kept (empty: 90)"
    )
    run_history_keep_all_days: str = _param(
        "runHistoryKeepAllDays", "", "RUN_HISTORY_KEEP_ALL_DAYS: every run of this many last days is kept (empty: 7)"
    )
    automation_history_days: str = _param(
        "automationHistoryDays", "", "AUTOMATION_HISTORY_DAYS: days the change journal and ledger are kept (empty: 90)"
    )
    ci_group_name: str = _param(
        "ciGroupName",
        "intervalprocessingusers",
        "IAM group allowed to push the image (empty: no group, for accounts whose CI pushes with its own role)",
    )

    @classmethod
    def from_context(cls, node: Node) -> DeploymentConfig:
        """Read every parameter from `node`'s context, falling back to the defaults above, then validate."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = node.try_get_context(f.metadata["context"])
            if raw is not None:
                values[f.name] = _PARSERS[f.type](f.metadata["context"], raw)
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def context_names(cls) -> list[str]:
        """The context parameter names, in declaration order (the README documents each)."""
        return [f.metadata["context"] for f in dataclasses.fields(cls)]

    @property
    def reports_folder(self) -> str:
        """The report prefix ending in exactly one '/', so a policy on 'GeneratedFiles/*' never matches
        'GeneratedFilesOld/...' and 'a' and 'a/' compare equal."""
        return self.reports_prefix.strip("/") + "/"

    @property
    def compute_logs_folder(self) -> str:
        """The compute-log prefix ending in exactly one '/' (see `reports_folder`)."""
        return self.compute_logs_prefix.strip("/") + "/"

    @property
    def step_outputs_folder(self) -> str:
        """The step-output prefix ending in exactly one '/' (see `reports_folder`)."""
        return self.step_outputs_prefix.strip("/") + "/"

    @property
    def load_balancer(self) -> bool:
        """Whether the stack puts the two UIs behind the HTTPS load balancer with sign-on."""
        return self.webserver_load_balancer != "none"

    @property
    def internet_facing(self) -> bool:
        return self.webserver_load_balancer == "internet-facing"

    @property
    def load_balancer_allowed_cidr(self) -> str:
        """Who may reach the load balancer: the configured network, else the VPC (internal) or anyone (internet-facing;
        sign-on, TLS and WAF protect it)."""
        return self.webserver_allowed_cidr or ("0.0.0.0/0" if self.internet_facing else self.vpc_cidr)

    @property
    def alert_link_url(self) -> str | None:
        """``INTERVALPROCESSING_WEBSERVER_URL``: the operator's UI, where a failed run can be re-executed."""
        if self.webserver_url:
            return self.webserver_url.rstrip("/")
        return f"https://{self.operator_host_name}" if self.load_balancer else None

    @property
    def history_environment(self) -> dict[str, str]:
        """The history windows given as context, as the application's variables (those not given are left out, so
        the application's defaults apply)."""
        return {name: value.strip() for name, value in self._history_windows().values() if value.strip()}

    def _history_windows(self) -> dict[str, tuple[str, str]]:
        """Context name -> (the application's variable, the value given)."""
        return {
            "runHistorySuccessDays": ("RUN_HISTORY_SUCCESS_DAYS", self.run_history_success_days),
            "runHistoryFailureDays": ("RUN_HISTORY_FAILURE_DAYS", self.run_history_failure_days),
            "runHistoryKeepAllDays": ("RUN_HISTORY_KEEP_ALL_DAYS", self.run_history_keep_all_days),
            "automationHistoryDays": ("AUTOMATION_HISTORY_DAYS", self.automation_history_days),
        }

    @property
    def log_retention(self) -> logs.RetentionDays:
        """`log_retention_days` as the CDK enum."""
        return _LOG_RETENTION_BY_DAYS[self.log_retention_days]

    @property
    def audit_log_retention(self) -> logs.RetentionDays:
        """`audit_log_retention_days` as the CDK enum."""
        return _LOG_RETENTION_BY_DAYS[self.audit_log_retention_days]

    def validate(self) -> None:
        """Reject values that AWS would only refuse mid-deployment (or that would silently misbehave)."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.reports_bucket_name):
            raise ValueError(f"reportsBucketName {self.reports_bucket_name!r} is not a valid S3 bucket name")
        folders = {
            "reportsPrefix": (self.reports_prefix, self.reports_folder),
            "computeLogsPrefix": (self.compute_logs_prefix, self.compute_logs_folder),
            "stepOutputsPrefix": (self.step_outputs_prefix, self.step_outputs_folder),
        }
        for name, (prefix, _) in folders.items():
            if not prefix.strip("/") or prefix.startswith("/") or "*" in prefix:
                raise ValueError(f"{name} {prefix!r} must be a non-empty key prefix without a leading '/' or '*'")
        # Each prefix has its own expiry and its own IAM grant: one inside another would expire reports or widen
        # a role's access to the other's objects.
        for (name, (_, folder)), (other, (_, other_folder)) in itertools.combinations(folders.items(), 2):
            if folder.startswith(other_folder) or other_folder.startswith(folder):
                raise ValueError(f"{name} and {other} must not overlap (each has its own expiry and IAM grant)")
        for name, days in (
            ("logRetentionDays", self.log_retention_days),
            ("auditLogRetentionDays", self.audit_log_retention_days),
        ):
            if days not in _LOG_RETENTION_BY_DAYS:
                raise ValueError(f"{name} {days} is not one CloudWatch accepts: {sorted(_LOG_RETENTION_BY_DAYS)}")
        for name, cpu, memory in (
            ("daemon", self.daemon_cpu, self.daemon_memory_mib),
            ("webserver", self.webserver_cpu, self.webserver_memory_mib),
        ):
            if memory not in _FARGATE_MEMORY_BY_CPU.get(cpu, range(0)):
                raise ValueError(f"{name}: {cpu} CPU units with {memory} MiB is not a Fargate size")
        if self.compute_logs_expiration_days < 1 or self.step_outputs_expiration_days < 1:
            raise ValueError("computeLogsExpirationDays and stepOutputsExpirationDays must be >= 1")
        if self.db_allocated_storage_gib < 20:
            raise ValueError("dbAllocatedStorageGib must be >= 20")
        for name, cidr in (("vpcCidr", self.vpc_cidr), ("webserverAllowedCidr", self.webserver_allowed_cidr)):
            if cidr or name == "vpcCidr":
                try:
                    ipaddress.IPv4Network(cidr)
                except ValueError as error:
                    raise ValueError(f"{name} {cidr!r} is not an IPv4 CIDR block: {error}") from None
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone name") from None
        if self.webserver_url:
            url = urllib.parse.urlsplit(self.webserver_url)
            if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
                raise ValueError(
                    f"webserverUrl {self.webserver_url!r} must be an http(s) URL like https://dagster.example.com"
                )
        self._validate_load_balancer()
        if self.alert_email and not re.fullmatch(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+", self.alert_email):
            raise ValueError(f"alertEmail {self.alert_email!r} is not one email address")
        # The application refuses these too, but only when its code location loads: in every task, after the deploy.
        for name, (_, value) in self._history_windows().items():
            if value.strip() and not re.fullmatch(r"0*[1-9][0-9]*", value.strip()):
                raise ValueError(f"{name} {value!r} must be a whole number of days of at least 1 (or empty)")
        if not self.image_tag or not re.fullmatch(r"[\w][\w.-]{0,127}", self.image_tag):
            raise ValueError(f"imageTag {self.image_tag!r} is not a valid image tag")

    def _validate_load_balancer(self) -> None:
        """The load balancer's settings: complete, consistent, and none of them given without it."""
        if self.webserver_load_balancer not in _LOAD_BALANCER_SCHEMES:
            removed = (
                " (the plain-HTTP true/false switch was removed: README, step 7)"
                if (self.webserver_load_balancer.lower() in ("true", "false"))
                else ""
            )
            raise ValueError(
                f"webserverLoadBalancer {self.webserver_load_balancer!r} must be one of "
                f"{', '.join(_LOAD_BALANCER_SCHEMES)}{removed}"
            )
        only_with_it = {
            "webserverAllowedCidr": self.webserver_allowed_cidr,
            "viewerHostName": self.viewer_host_name,
            "operatorHostName": self.operator_host_name,
            "certificateArn": self.certificate_arn,
            "hostedZoneId": self.hosted_zone_id,
            "hostedZoneName": self.hosted_zone_name,
        }
        if not self.load_balancer:
            given = [name for name, value in only_with_it.items() if value]
            if given:
                raise ValueError(
                    f"{', '.join(given)} only apply with webserverLoadBalancer internal or internet-facing"
                )
            return
        for name in ("viewerHostName", "operatorHostName"):
            if not re.fullmatch(_HOST_NAME, only_with_it[name]):
                raise ValueError(f"{name} {only_with_it[name]!r} must be a DNS host name like dagster.example.com")
        if self.viewer_host_name == self.operator_host_name:
            raise ValueError("viewerHostName and operatorHostName must differ: each role has its own address")
        if bool(self.hosted_zone_id) != bool(self.hosted_zone_name):
            raise ValueError("hostedZoneId and hostedZoneName go together")
        if self.hosted_zone_name:
            if not re.fullmatch(r"Z[A-Z0-9]{1,31}", self.hosted_zone_id):
                raise ValueError(f"hostedZoneId {self.hosted_zone_id!r} is not a Route 53 zone id (Z...)")
            outside = [
                host
                for host in (self.viewer_host_name, self.operator_host_name)
                if not host.endswith("." + self.hosted_zone_name.strip("."))
            ]
            if outside:
                raise ValueError(f"{', '.join(outside)} not in hostedZoneName {self.hosted_zone_name!r}")
        elif not self.certificate_arn:
            raise ValueError(
                "the load balancer needs certificateArn, or hostedZoneId and hostedZoneName for a "
                "DNS-validated certificate"
            )
        if self.certificate_arn and not re.fullmatch(
            r"arn:aws[\w-]*:acm:[\w-]+:\d{12}:certificate/[\w-]+", self.certificate_arn
        ):
            raise ValueError(f"certificateArn {self.certificate_arn!r} is not an ACM certificate ARN")
        if self.sign_on == "oidc":
            self._validate_oidc()
        elif self.sign_on != "cognito":
            raise ValueError(f"signOn {self.sign_on!r} must be cognito or oidc")
        if self.cognito_domain_prefix and (
            not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", self.cognito_domain_prefix)
            or any(word in self.cognito_domain_prefix for word in ("aws", "amazon", "cognito"))
        ):
            raise ValueError(
                f"cognitoDomainPrefix {self.cognito_domain_prefix!r}: lower-case letters, digits and "
                "hyphens, without aws, amazon or cognito"
            )
        if not 1 <= self.sign_on_session_hours <= 168:
            raise ValueError("signOnSessionHours must be between 1 and 168 (the load balancer's limit, 7 days)")
        if self.waf_rate_limit < 10:
            raise ValueError("wafRateLimit must be at least 10 (AWS WAF's minimum)")

    def _validate_oidc(self) -> None:
        endpoints = {
            "oidcIssuer": self.oidc_issuer,
            "oidcAuthorizationEndpoint": self.oidc_authorization_endpoint,
            "oidcTokenEndpoint": self.oidc_token_endpoint,
            "oidcUserInfoEndpoint": self.oidc_user_info_endpoint,
        }
        for name, value in endpoints.items():
            url = urllib.parse.urlsplit(value)
            if url.scheme != "https" or not url.netloc:
                raise ValueError(f"{name} {value!r} must be the identity provider's https:// URL (signOn=oidc)")
        if not self.oidc_viewer_client_id or not self.oidc_operator_client_id:
            raise ValueError("signOn=oidc needs oidcViewerClientId and oidcOperatorClientId")
        if self.oidc_viewer_client_id == self.oidc_operator_client_id:
            raise ValueError(
                "oidcViewerClientId and oidcOperatorClientId must be two clients: the identity provider "
                "decides who is an operator by which people it assigns to the operator client"
            )
        if not self.oidc_client_secret_name:
            raise ValueError("signOn=oidc needs oidcClientSecretName")


_LOAD_BALANCER_SCHEMES = ("none", "internal", "internet-facing")
_HOST_NAME = r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"


def _parse_str(name: str, raw: Any) -> str:
    return str(raw)


def _parse_int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"context parameter {name} must be an integer, got {raw!r}")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"context parameter {name} must be an integer, got {raw!r}") from None


def _parse_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"context parameter {name} must be true or false, got {raw!r}")


#: Field annotation (a string, because of `from __future__ import annotations`) -> parser of the raw context value.
_PARSERS: dict[str, Callable[[str, Any], Any]] = {"str": _parse_str, "int": _parse_int, "bool": _parse_bool}
