"""The collections data change reads and writes, as assets: ``dataupdateconfigs`` (the automations) and the data
collections they change, each partitioned by the automations that change it (``history.py``)."""

from dagster import AssetSpec

from intervalprocessing_dagster.data_change.history import automations_of
from intervalprocessing_dagster.data_change.rules import CONFIG_COLLECTION

#: The one asset group of the code location: the collections, the configuration and the reports. The UI's global
#: lineage opens with every group collapsed when there are several (dagster-webserver 1.13), which hid the
#: ``dataupdateconfigs -> collections -> reports`` chain behind clicks; with one group it is the first thing shown.
ASSET_GROUP = "intervalprocessing"

DATA_UPDATE_CONFIGS = AssetSpec(
    CONFIG_COLLECTION,
    group_name=ASSET_GROUP,
    kinds={"mongodb"},
    description=f"MongoDB collection `{CONFIG_COLLECTION}`: the data-change automations (one document each).",
)


def _collection(name: str, what: str) -> AssetSpec:
    """A collection any automation may change; an applied automation materializes its partition."""
    return AssetSpec(
        name,
        group_name=ASSET_GROUP,
        kinds={"mongodb"},
        deps=[DATA_UPDATE_CONFIGS],
        partitions_def=automations_of(name),
        description=f"MongoDB collection `{name}`: {what}. Its partitions are the data-change automations (documents "
        f"of `{CONFIG_COLLECTION}`) that change it, by name (**Partitions**). One automation's history (matched and "
        "modified per run, the version of its document as `config_hash`, its failures) is **Events** filtered to "
        f"its partition, linked from `{CONFIG_COLLECTION}`'s page. Dagster's own *Automation* panel is about "
        "schedules or conditions that would materialize this asset; there are none, as nothing in Dagster makes "
        "a collection.",
    )


AUDITS = _collection("audits", "claim audits")
MEDICAL_RECORD_REQUESTS = _collection("medicalrecordrequests", "medical record requests")
PROVIDERS = _collection("providers", "providers, joined into medical record requests")
COLLECTIONS = (AUDITS, MEDICAL_RECORD_REQUESTS, PROVIDERS)
