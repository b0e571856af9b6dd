"""The Mongo resource: explicit handles on the configured database, TLS verification never switched off."""

from __future__ import annotations

import pytest
from pymongo.database import Database

from intervalprocessing_dagster.mongo.resources import InsecureMongoUriError, MongoResource


def test_database_is_the_configured_one(mongo: MongoResource, mongo_db: Database) -> None:
    mongo_db.audits.insert_one({"auditId": 7})
    assert mongo.database().name == mongo_db.name
    assert mongo.database().audits.find_one({}, {"_id": 0}) == {"auditId": 7}


@pytest.mark.parametrize(
    "option", ["tlsInsecure=true", "tlsAllowInvalidCertificates=true", "tlsAllowInvalidHostnames=true"]
)
def test_uri_that_disables_certificate_checks_is_refused(option: str) -> None:
    resource = MongoResource(uri=f"mongodb://user:secret@db.example.com/?tls=true&{option}")
    with pytest.raises(InsecureMongoUriError, match="certificate verification must stay on") as raised:
        resource.database()
    assert "secret" not in str(raised.value)
