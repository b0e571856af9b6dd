"""Reading fileprocessingconfigs and storedqueries as the old system did, with errors that say where to look."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from intervalprocessing_dagster.mongo.shell_syntax import QuerySyntaxError
from intervalprocessing_dagster.reports.config import (
    ReportCadence,
    ReportConfigError,
    load_process,
    load_projection,
    load_query,
    process_names,
)


def _configurations(**overrides: Any) -> dict[str, Any]:
    return {
        "queryName": "q",
        "collectionName": "audits",
        "projection": "{}",
        "fileNameBase": "Base",
        "writerTypeKey": "DailyAuditInventoryFileWriter",
        **overrides,
    }


def test_first_document_first_entry_wins_and_null_entries_are_dropped(mongo_db: Database) -> None:
    mongo_db.fileprocessingconfigs.insert_many(
        [
            {
                "_id": 1,
                "processes": [
                    {"name": None, "configurations": _configurations()},
                    {"name": "NoConfig", "configurations": None},
                    {"name": "A", "configurations": _configurations(fileNameBase="First")},
                    {"name": "A", "configurations": _configurations(fileNameBase="Second")},
                    {"name": "B", "configurations": _configurations(cadence="weekly", projection={"auditId": 1})},
                ],
            },
            {"_id": 2, "processes": [{"name": "C", "configurations": _configurations()}]},
        ]
    )
    assert process_names(mongo_db) == ["A", "B"]
    assert load_process(mongo_db, "A").file_name_base == "First"
    weekly = load_process(mongo_db, "B")
    assert (weekly.cadence, load_projection(weekly)) == (ReportCadence.WEEKLY, {"auditId": 1})
    assert load_projection(load_process(mongo_db, "A")) is None  # "{}": every field


def test_an_empty_config_collection_is_named(mongo_db: Database) -> None:
    with pytest.raises(ReportConfigError, match="fileprocessingconfigs is empty"):
        process_names(mongo_db)


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"queryName": None}, "process 'P': configurations.queryName must be a non-empty string, got None"),
        ({"writerTypeKey": "  "}, "configurations.writerTypeKey must be a non-empty string"),
        ({"fileNameBase": "../../etc/cron"}, "fileNameBase '../../etc/cron' must be a plain name"),
        ({"cadence": "Monthly"}, "cadence must be 'Daily' or 'Weekly', got 'Monthly'"),
        ({"projection": 5}, "projection must be a document string"),
    ],
)
def test_an_unusable_entry_names_process_and_field(mongo_db: Database, overrides: dict[str, Any], problem: str) -> None:
    mongo_db.fileprocessingconfigs.insert_one(
        {
            "processes": [
                {"name": "P", "configurations": _configurations(**overrides)},
                {"name": "Fine", "configurations": _configurations(fileNameBase="FineBase")},
            ]
        }
    )
    with pytest.raises(ReportConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_process(mongo_db, "P")
    assert load_process(mongo_db, "Fine").query_name == "q"  # a broken entry does not break its neighbours


def test_a_shared_file_name_base_fails_every_process_that_shares_it(mongo_db: Database) -> None:
    mongo_db.fileprocessingconfigs.insert_one(
        {
            "processes": [
                {"name": "A", "configurations": _configurations(fileNameBase="Same")},
                {"name": "A", "configurations": _configurations(fileNameBase="Other")},  # dropped: the first A wins
                {"name": "B", "configurations": _configurations(fileNameBase="Same")},
                {
                    "name": "C",
                    "configurations": _configurations(fileNameBase="Same", queryName=None),
                },  # broken otherwise too
                {"name": "D", "configurations": _configurations(fileNameBase="Other")},
            ]
        }
    )
    with pytest.raises(
        ReportConfigError,
        match=r"process 'A': configurations.fileNameBase 'Same' is also the "
        r"fileNameBase of process 'B', 'C'; each run would write the same",
    ):
        load_process(mongo_db, "A")
    with pytest.raises(ReportConfigError, match=r"process 'B': configurations.fileNameBase 'Same' .* 'A', 'C';"):
        load_process(mongo_db, "B")
    assert load_process(mongo_db, "D").file_name_base == "Other"  # the dropped duplicate A does not count


def test_stored_queries_parse_in_shell_syntax_and_errors_name_query_and_process(mongo_db: Database) -> None:
    mongo_db.fileprocessingconfigs.insert_one(
        {
            "processes": [
                {"name": "P", "configurations": _configurations(queryName="q", fileNameBase="P")},
                {
                    "name": "Broken",
                    "configurations": _configurations(
                        queryName="broken", projection="{ auditId: }", fileNameBase="Broken"
                    ),
                },
                {"name": "Empty", "configurations": _configurations(queryName="empty", fileNameBase="Empty")},
            ]
        }
    )
    mongo_db.storedqueries.insert_many(
        [
            {"name": "q", "query": "{ 'status' : { $in : [ 'Pending Review', 'Approved' ] } }"},
            {"name": "empty", "query": ""},
        ]
    )
    assert load_query(mongo_db, load_process(mongo_db, "P")).filter == {
        "status": {"$in": ["Pending Review", "Approved"]}
    }
    with pytest.raises(ReportConfigError, match="storedqueries 'broken' \\(process 'Broken'\\): no storedqueries"):
        load_query(mongo_db, load_process(mongo_db, "Broken"))
    with pytest.raises(QuerySyntaxError, match="storedqueries 'empty' \\(process 'Empty'\\): query is empty"):
        load_query(mongo_db, load_process(mongo_db, "Empty"))
    with pytest.raises(QuerySyntaxError, match="fileprocessingconfigs process 'Broken' projection"):
        load_projection(load_process(mongo_db, "Broken"))
