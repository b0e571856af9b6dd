"""The journal's model of an update (``changes.UpdateShape``) against MongoDB's own rules, and against the server.

``mongodb_update_cases.json`` holds 80 cases of the update shapes an automation's plan produces (``$set`` / ``$unset``
of dotted paths, ``$set`` through ``$[]`` and ``$[<id>]``, ``$push`` of one sub-document, ``$pull`` of ``{<property>:
value}``), each with the result MongoDB gives: the document it stores, a no-op, or its error. They are taken from the
``mongodb/mongo`` repository's update tests (``src/mongo/db/update/*_test.cpp`` and jstests) and MongoDB's
documentation, as ``source`` names; a source starting ``inferred:`` is reasoned from MongoDB's source where no test
asserts that exact input. Values are canonical Extended JSON, so BSON types are exact.

The model must agree with MongoDB on every case (field order included: embedded documents compare in order), and,
with the embedded server's own field order, with what SecantusDB stores, except where SecantusDB departs from MongoDB
by not refusing (``SECANTUS_DEPARTURES``; docs/decisions/secantusdb-update-departures.md). A seeded random
differential then runs many more documents and updates of the same kinds on the server, and undoes each change.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import bson
import pymongo
import pytest
from bson import json_util
from pymongo import monitoring
from pymongo.database import Database
from pymongo.errors import WriteError

from intervalprocessing_dagster.data_change.changes import (
    RESTORE,
    Effect,
    FieldOrder,
    Refusal,
    UpdateShape,
    restore_document,
)
from intervalprocessing_dagster.data_change.journal import field_order
from intervalprocessing_dagster.data_change.plan import UpdatePlan
from intervalprocessing_dagster.data_change.rules import paths_conflict
from tests.data_change.document_model import document_after

CASES: list[dict[str, Any]] = json_util.loads((Path(__file__).parent / "mongodb_update_cases.json").read_text())

# Cases where MongoDB refuses the update and SecantusDB 0.7 does not: what SecantusDB does instead. The model refuses
# them on both servers (a refused document is reported, never written), so the journal is not concerned.
SECANTUS_DEPARTURES = {
    "E03": "no-op",
    "E05": "no-op",
    "E06": "no-op",
    "E07": "no-op",
    "E08": "no-op",
    "F10": "no-op",
    "F11": "no-op",
    "L06": "no-op",
    "L12": "no-op",
    "L13": "no-op",  # $[] / $pull through or onto a value MongoDB cannot traverse
    "E04": "modified",
    "F05": "modified",  # $[] over a scalar element: the document elements are set, others skipped
    "C01": "modified",  # conflicting paths (MongoDB's error 40): rules.py refuses such an automation
}


def shape_of(case: dict[str, Any], order: FieldOrder) -> UpdateShape:
    return UpdateShape(UpdatePlan(case["update"], case["array_filters"] or [], []), order)


def same_document(left: Any, right: Any) -> bool:
    """Equal as MongoDB stores them: BSON types, values and field order."""
    return bson.encode({"d": left}) == bson.encode({"d": right})


def show(value: Any) -> str:
    return json_util.dumps(value)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_the_model_agrees_with_mongodb(case: dict[str, Any]) -> None:
    effect = shape_of(case, FieldOrder.SORTED).predict(case["doc"])
    outcome, *detail = case["expect"]
    where = f"{case['id']} ({case['source']}): predicted {effect!r}, MongoDB gives {show(case['expect'])}"
    if outcome == "doc":
        assert isinstance(effect, Effect), where
        (expected,) = detail
        assert same_document(document_after(case["doc"], effect.changes, FieldOrder.SORTED), expected), where
        assert all(change.holds_after(expected) for change in effect.changes), where
    elif outcome == "error":
        assert isinstance(effect, Refusal), where
    elif outcome == "noop":
        assert effect is None, where
    else:
        # MongoDB counts the document modified though it stores it unchanged (``$unset`` of a null array element):
        # nothing changed, so nothing is journaled (docs/decisions/update-model-and-field-order.md).
        assert outcome == "modified_same" and case["source"].startswith("inferred:"), where
        assert effect is None, where


def test_the_server_field_order_rule_is_detected_once_per_client(mongo_db: Database, mongo_uri: str) -> None:
    asked: list[str] = []

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            asked.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    with pymongo.MongoClient(mongo_uri, event_listeners=[Listener()]) as client:
        is_secantus = "secantusVersion" in client.admin.command("buildInfo")
        asked.clear()
        orders = {field_order(client[mongo_db.name]), field_order(client["another"])}
        commands = list(asked)
    assert orders == {FieldOrder.UPDATE if is_secantus else FieldOrder.SORTED}
    assert commands == ["buildInfo"]


def test_the_model_for_the_server_agrees_with_what_the_server_stores(mongo_db: Database) -> None:
    """Every case's update run on the server under test (SecantusDB; a real MongoDB in the ``real_mongo`` tier), and
    predicted with the field order the journal detects for it: the same no-ops, the same refusals (but for the listed
    departures, each checked to be still what the server does), and exactly the stored document."""
    order = field_order(mongo_db)
    departures = SECANTUS_DEPARTURES if order is FieldOrder.UPDATE else {}
    disagreements: list[str] = []
    for number, case in enumerate(CASES):
        mongo_db.cases.insert_one({"_id": number, **case["doc"]})
        effect = shape_of(case, order).predict(case["doc"])
        try:
            result = mongo_db.cases.update_one({"_id": number}, case["update"], array_filters=case["array_filters"])
            server = "modified" if result.modified_count else "no-op"
        except WriteError:
            server = "refused"
        stored = mongo_db.cases.find_one({"_id": number})
        stored.pop("_id")
        if isinstance(effect, Refusal):
            agrees = server == departures.get(case["id"], "refused")
        elif effect is None:
            agrees = server == "no-op" and same_document(stored, case["doc"])
        else:
            predicted = document_after(case["doc"], effect.changes, order)
            agrees = server == "modified" and same_document(stored, predicted)
        if not agrees:
            disagreements.append(f"{case['id']}: predicted {effect!r}, server {server}, stores {show(stored)}")
    assert disagreements == []


NAMES = ["a", "b", "m", "z", "0", "1", "2", "10"]  # names that sort differently as text and as numbers


def random_value(rng: random.Random, depth: int = 0) -> Any:
    draw = rng.random()
    if depth < 2 and draw < 0.2:
        return {rng.choice(NAMES): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 2 and draw < 0.35:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([None, 1, 1.0, "x", "", True, 0])


def random_update(rng: random.Random) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """One to three operations of the kinds a plan writes, on random paths (conflicting ones left out)."""
    update: dict[str, dict[str, Any]] = {}
    array_filters: list[dict[str, Any]] = []
    paths: list[str] = []
    for number in range(rng.randint(1, 3)):
        path = ".".join(rng.choice(NAMES[:4] if depth == 0 else NAMES) for depth in range(rng.randint(1, 3)))
        kind = rng.choice(["$set", "$set", "$unset", "$push", "$pull", "$[]"])
        array_filter = None
        if kind == "$[]":
            prop = rng.choice(["a", "b", "z"])
            if rng.random() < 0.5:
                kind, path = "$set", f"{path}.$[].{prop}"
            else:
                kind, path = "$set", f"{path}.$[e{number}].{prop}"
                array_filter = {f"e{number}.{prop}": rng.choice([None, 1, "x"])}
        if any(paths_conflict(path, other) for other in paths):
            continue
        value = {
            "$unset": "",
            "$push": {"t": rng.choice(["x", "y"]), "source": "s"},
            "$pull": {rng.choice(["a", "b"]): rng.choice([None, 1, "x"])},
        }.get(kind, random_value(rng, 1))
        paths.append(path)
        update.setdefault(kind, {})[path] = value
        array_filters += [array_filter] if array_filter else []
    return update, array_filters


def test_a_random_differential_with_the_server_and_every_undo_exact(mongo_db: Database) -> None:
    """500 random documents and updates (seeded): where the model predicts a change, the server stores exactly the
    predicted document, and the undo of the recorded changes gives the document back exactly; where it predicts a
    no-op, the server changes nothing; where it refuses, MongoDB refuses too (SecantusDB may not: see the module
    docstring)."""
    rng = random.Random(24)
    order = field_order(mongo_db)
    outcomes: dict[str, int] = {}
    disagreements: list[str] = []
    for number in range(500):
        document = {"_id": number, **{rng.choice(NAMES[:4]): random_value(rng) for _ in range(rng.randint(0, 4))}}
        update, array_filters = random_update(rng)
        mongo_db.random.insert_one(document)
        shape = UpdateShape(UpdatePlan(update, array_filters, []), order)
        effect = shape.predict(mongo_db.random.find_one({"_id": number}, shape.projection))
        try:
            result = mongo_db.random.update_one({"_id": number}, update, array_filters=array_filters or None)
            server = "modified" if result.modified_count else "no-op"
        except WriteError:
            server = "refused"
        stored = mongo_db.random.find_one({"_id": number})
        where = f"{document} {update} {array_filters}: predicted {effect!r}, server {server}, stores {stored}"
        if isinstance(effect, Refusal):
            agrees = server == "refused" or order is FieldOrder.UPDATE
        elif effect is None:
            agrees = server == "no-op"
        else:
            agrees = server == "modified" and same_document(stored, document_after(document, effect.changes, order))
            restoration = restore_document(list(effect.changes), stored)
            if restoration.state == RESTORE:
                mongo_db.random.update_one({"_id": number, **restoration.pins}, restoration.update)
            agrees = agrees and same_document(mongo_db.random.find_one({"_id": number}), document)
        outcome = "refused" if isinstance(effect, Refusal) else "no-op" if effect is None else "modified"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if not agrees:
            disagreements.append(where)
    assert disagreements == []
    assert min(outcomes.values()) >= 50, outcomes  # every outcome well represented
