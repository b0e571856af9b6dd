"""Shared test fixtures: a real MongoDB-compatible server, a real (moto) AWS and PostgreSQL, started once per session.

``mongo_db`` runs every test that uses it against SecantusDB; when ``MONGODB_URI`` is set, each such test runs a
second time against that server (marked ``real_mongo``, so ``pytest -m real_mongo`` selects exactly those). The
variable is taken out of the environment at import so no test can reach the real database by accident.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pymongo
import pytest
import requests
from moto.server import ThreadedMotoServer
from pymongo.database import Database
from secantus import SecantusDBServer

from intervalprocessing_dagster.mongo.resources import MongoResource
from tests.postgres_cluster import PostgresServer, PostgresUnavailable, running_postgres

REAL_MONGO_URI = os.environ.pop("MONGODB_URI", None)

# Tests must never depend on the developer's shell: clear every variable settings.py reads.
for _name in (
    "MONGODB_DATABASE",
    "INTERVALPROCESSING_TIMEZONE",
    "REPORTS_S3_BUCKET",
    "REPORTS_S3_PREFIX",
    "REPORTS_LOCAL_DIR",
    "INTERVALPROCESSING_LOCAL_DIR",
    "FILE_GENERATION_CRON",
    "AUTOMATION_HISTORY_DAYS",
    "WEBSERVER_SIGN_ON_LOAD_BALANCER_ARN",
    "WEBSERVER_SIGN_ON_KEY_ENDPOINT",
    "WEBSERVER_SIGN_ON_CLIENT_ID",
    "WEBSERVER_AUDIT_LOG",
    "DAGSTER_VIEWER_PG_USERNAME",
    "DAGSTER_VIEWER_PG_PASSWORD",
    "ALERT_ON_HAND_LAUNCHED_RUNS",
):
    os.environ.pop(_name, None)

_BACKENDS = ["secantus"] + ([pytest.param("real_mongo", marks=pytest.mark.real_mongo)] if REAL_MONGO_URI else [])


@pytest.fixture(scope="session")
def secantus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus")))
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="session", params=_BACKENDS)
def mongo_uri(request: pytest.FixtureRequest) -> str:
    """The server under test: SecantusDB, or the real MongoDB at MONGODB_URI."""
    if request.param == "real_mongo":
        return REAL_MONGO_URI
    return request.getfixturevalue("secantus_uri")


@pytest.fixture()
def mongo_db(mongo_uri: str) -> Iterator[Database]:
    """A fresh, empty database for one test, dropped afterwards."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture()
def mongo(mongo_uri: str, mongo_db: Database) -> MongoResource:
    """The platform's Mongo resource pointed at the test's database."""
    return MongoResource(uri=mongo_uri, database_name=mongo_db.name)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An in-process moto server; boto3 clients reach it through AWS_ENDPOINT_URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean moto account for one test, with the environment set as a task role would leave it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield moto_endpoint
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)


@pytest.fixture()
def s3_bucket(aws: str) -> str:
    """The report bucket, created empty in moto."""
    boto3.client("s3").create_bucket(Bucket="intervalprocessing")
    return "intervalprocessing"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL, started once per session (``tests/postgres_cluster.py``, shared with the benchmark):
    Dagster's production storage for the system tests and the history retention tests."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture()
def local_dir(tmp_path: Path) -> Path:
    """A private INTERVALPROCESSING_LOCAL_DIR for one test."""
    return tmp_path / "intervalprocessing"


@pytest.fixture()
def topic(aws: str) -> Iterator[tuple[str, str]]:
    """An SNS topic with an SQS queue subscribed to it: (topic ARN, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name="intervalprocessing-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    yield topic_arn, queue_url
