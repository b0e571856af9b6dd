"""IntervalProcessing on Dagster: scheduled MongoDB data changes and inventory reports.

``defs`` is loaded on first use, so ``dagster job execute -m intervalprocessing_dagster -j <job>`` finds the code
location while importing a module of the package (the instance plugins ``dagster.yaml`` names, the settings) does
not build every job.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from intervalprocessing_dagster.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return ["defs"]
