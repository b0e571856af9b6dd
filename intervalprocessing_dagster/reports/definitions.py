"""Placeholder until the reports domain lands."""

from dagster import Definitions

from intervalprocessing_dagster.settings import Settings


def report_definitions(settings: Settings) -> Definitions:
    return Definitions()
