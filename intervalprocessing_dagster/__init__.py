"""IntervalProcessing on Dagster: scheduled MongoDB data changes and inventory reports.

``defs`` is re-exported so ``dagster job execute -m intervalprocessing_dagster -j <job>`` finds the code location.
"""

from intervalprocessing_dagster.definitions import defs

__all__ = ["defs"]
