"""A faithful Python port of the old data-change algorithm (spec §3.2-§3.3), the baseline the platform must beat.

``QueryBasedDataUpdateProcessor.Execute`` ran one automation like this: open a cursor over the target collection
(all fields; ``aggregate`` with ``AllowDiskUse`` when the query contains ``aggregate(``), build one
``UpdateOneModel`` per result document whose filter is only ``{_id}`` and whose update is the ``Combine`` of every
configured element, keep every model in one list until the cursor is drained, then send that list as ONE ordered
``BulkWriteAsync``. Its bugs are kept on purpose (the ``$[elem]`` Change without ``arrayFilters``, the positional
``$`` Remove, the string-only values, the notes/internalNotes-only push, the per-document ``DateTime.Now``): the
point is to measure what ran, not what should have run. The benchmark automation uses a single-field ``Change``,
which the old code handled correctly, so both sides do the same work.

One deliberate difference: the query text is parsed with the platform's shell-syntax parser, because Python has no
equivalent of the C# driver's tolerant JSON reader; parsing one short string is not what is being measured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from intervalprocessing_dagster.mongo.shell_syntax import parse_query

_UPDATE_TYPES = ("Add", "Change", "Remove", "Delete")
_PUSHABLE_ARRAYS = ("notes", "internalNotes")


def execute(db: Database, config: dict[str, Any]) -> int:
    """Run one ``dataupdateconfigs`` document the old way; return the number of ``UpdateOne`` models written."""
    collection = db[config["collectionName"]]
    query_text: str = config["query"]
    if "aggregate(" in query_text:
        pipeline = parse_query(query_text, source=config["name"]).pipeline
        cursor = collection.aggregate(pipeline, allowDiskUse=True)
    else:
        # projection "{}" meant "all fields" in C#; pymongo turns an empty dict into {_id: 1}, so pass None.
        cursor = collection.find(parse_query(query_text, source=config["name"]).filter, None)
    models: list[UpdateOne] = []
    for document in cursor:
        models.append(UpdateOne({"_id": document["_id"]}, _combined_update(config)))
    if models:
        collection.bulk_write(models)  # ordered, unbatched by the application: the driver default
    return len(models)


def _combined_update(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``Builders<BsonDocument>.Update.Combine`` of every element, built per document as the old loop did."""
    update: dict[str, dict[str, Any]] = {}
    for element in config["singleFieldUpdateElements"]:
        kind = _update_type(element["updateType"])
        name = element["elementName"]
        if kind in ("Add", "Change"):
            update.setdefault("$set", {})[name] = str(element["elementValue"])
        elif kind == "Remove":
            update.setdefault("$set", {})[name] = ""
        else:
            update.setdefault("$unset", {})[name] = ""
    for element in config["arrayObjectFieldUpdateElements"]:
        kind = _update_type(element["updateType"])
        array, prop, value = element["arrayProperty"], element["matchingPropertyName"], str(element["newValue"])
        if kind == "Add":
            if array not in _PUSHABLE_ARRAYS:
                raise NotImplementedError(f"array Add on {array!r}")
            note = {prop: value, "source": f"{config['name']} Query Automation", "date": datetime.now(UTC)}
            update.setdefault("$push", {})[array] = note
        elif kind == "Change":
            update.setdefault("$set", {})[f"{array}.$[elem].{prop}"] = value
        elif kind == "Remove":
            update.setdefault("$set", {})[f"{array}.$.{prop}"] = ""
        else:
            update.setdefault("$pull", {})[array] = {prop: value}
    return update


def _update_type(value: str | int) -> str:
    """The enum name, whether stored as its name or its number (both deserialized in C#)."""
    if isinstance(value, int) and 0 <= value < len(_UPDATE_TYPES):
        return _UPDATE_TYPES[value]
    if value in _UPDATE_TYPES:
        return value
    raise NotImplementedError(f"updateType {value!r}")
