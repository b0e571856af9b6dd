"""Placeholder until the data_change domain lands."""

from dagster import Definitions

from intervalprocessing_dagster.settings import Settings


def data_change_definitions(settings: Settings) -> Definitions:
    return Definitions()
