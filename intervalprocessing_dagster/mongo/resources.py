"""The MongoDB resource: one ``pymongo`` client per process, explicit collection handles.

The old app shared one connection object whose *current collection* every component switched (spec §5.8-5.9);
here a component asks for ``database()[name]`` and holds its own handle, so nothing depends on call order.
TLS certificate verification is never switched off (the old "serverless" setting disabled it, spec §5.17).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pymongo
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr
from pymongo.database import Database

from intervalprocessing_dagster.mongo.embedded import ensure_embedded_server
from intervalprocessing_dagster.settings import DEFAULT_AUTOMATION_HISTORY_DAYS

APP_NAME = "intervalprocessing-dagster"

# Query-string options that would switch certificate verification off; refused rather than honoured.
_INSECURE_TLS_OPTIONS = ("tlsinsecure", "tlsallowinvalidcertificates", "tlsallowinvalidhostnames", "ssl_cert_reqs")


class InsecureMongoUriError(ValueError):
    """The connection string asks to skip TLS certificate verification."""


class MongoResource(ConfigurableResource):
    """A MongoDB database, reached through ``uri`` (in production: ``EnvVar("MONGODB_URI")``)."""

    uri: str = Field(description="MongoDB connection string. Set from the MONGODB_URI secret; never logged.")
    database_name: str = Field(default="intervalprocessing", description="Database holding every collection.")
    server_selection_timeout_ms: int = Field(default=20_000, description="How long to wait for a reachable server.")
    socket_timeout_ms: int = Field(default=600_000, description="Longest single server round trip (bulk updates).")
    history_days: int = Field(
        default=DEFAULT_AUTOMATION_HISTORY_DAYS,
        ge=1,
        description="Days the platform keeps its own records in this database (the automationruns ledger and the "
        "automationchanges journal: TTL indexes), counted from when each was last written. Set from "
        "AUTOMATION_HISTORY_DAYS.",
    )

    _client: pymongo.MongoClient | None = PrivateAttr(default=None)

    def database(self) -> Database:
        """The configured database, on a client created once per process."""
        if self._client is None:
            uri = self.connection_uri()
            _refuse_insecure_tls(uri)
            self._client = pymongo.MongoClient(
                uri,
                appname=APP_NAME,
                serverSelectionTimeoutMS=self.server_selection_timeout_ms,
                socketTimeoutMS=self.socket_timeout_ms,
                tz_aware=True,
            )
        return self._client[self.database_name]

    def connection_uri(self) -> str:
        """Where to connect; called once per process, when the client is created."""
        return self.uri

    def teardown_after_execution(self, context) -> None:  # noqa: ANN001 - Dagster's InitResourceContext
        if self._client is not None:
            self._client.close()
            self._client = None


class EmbeddedMongoResource(MongoResource):
    """The zero-setup default: a local SecantusDB server under ``data_dir``, started on first use and then reused."""

    uri: str = Field(default="", description="Unused: the embedded server's address is discovered at run time.")
    data_dir: str = Field(description="Folder holding the embedded server's data, log and pid file.")

    def connection_uri(self) -> str:
        return ensure_embedded_server(Path(self.data_dir), self.database_name)


def _refuse_insecure_tls(uri: str) -> None:
    options = {key.lower(): values for key, values in parse_qs(urlsplit(uri).query).items()}
    for option in _INSECURE_TLS_OPTIONS:
        if any(value.lower() in ("true", "1", "none", "cert_none") for value in options.get(option, [])):
            raise InsecureMongoUriError(
                f"MONGODB_URI sets {option}: certificate verification must stay on. Remove the option; for a "
                "private CA, set tlsCAFile instead."
            )
