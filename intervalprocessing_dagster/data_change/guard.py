"""The blast-radius guard: an automation that matches more documents than it may writes nothing and fails.

A typo such as ``{}`` for a query would rewrite a whole collection. The limit is the automation's ``maxDocuments``,
else ``AUTOMATION_MAX_DOCUMENTS`` (``settings.parse_limit``: a number, a percentage of the collection, or both); the
guard counts what the write would select just before writing (an aggregate pipeline so runs twice), in the step and
in the hourly config checks. It bounds a rule, not concurrent writers. Details: docs/decisions/blast-radius-guard.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import ConfigurableResource
from pydantic import Field
from pymongo.collection import Collection

from intervalprocessing_dagster.data_change.execute import filter_of
from intervalprocessing_dagster.data_change.plan import UpdatePlan
from intervalprocessing_dagster.data_change.rules import CONFIG_COLLECTION, Automation
from intervalprocessing_dagster.settings import Limit


class BlastRadiusExceeded(RuntimeError):
    """The automation matches more documents than its limit allows; nothing was written."""


@dataclass(frozen=True)
class Verdict:
    """An automation's count against its limit (``allowed`` documents, from ``limit`` set in ``source``)."""

    count: int
    allowed: int
    limit: Limit
    source: str
    collection: str

    @property
    def exceeded(self) -> bool:
        return self.count > self.allowed

    def message(self, consequence: str = "nothing was written") -> str:
        """One line: the count, the limit and where it is set, the ``consequence``, and how to raise the limit."""
        of_collection = f" ({self.limit} of the collection)" if self.limit.percent is not None else ""
        return (
            f"it matches {self.count:,} documents of {self.collection}, more than its limit of {self.allowed:,}"
            f"{of_collection} set by {self.source}; {consequence}. If that many is intended, set "
            f"maxDocuments: {self.count} (or more) on its {CONFIG_COLLECTION} document and run it again"
        )


class AutomationGuard(ConfigurableResource):
    """The platform's default limit for automations without ``maxDocuments`` (``AUTOMATION_MAX_DOCUMENTS``)."""

    max_documents: int | None = Field(default=None, ge=1, description="At most this many documents per automation.")
    max_percent: float | None = Field(
        default=None, gt=0, le=100, description="At most this percentage of the automation's collection."
    )

    @classmethod
    def of(cls, limit: Limit | None) -> AutomationGuard:
        """The guard whose default is ``limit`` (``Settings.automation_max_documents``; None: no default)."""
        return cls(max_documents=limit.count, max_percent=limit.percent) if limit else cls()

    def limit_for(self, automation: Automation) -> tuple[Limit, str] | None:
        """The limit that applies to ``automation`` and where it is set; None when it has none."""
        if automation.max_documents is not None:
            return automation.max_documents, f"maxDocuments on its {CONFIG_COLLECTION} document"
        if self.max_documents is None and self.max_percent is None:
            return None
        default = Limit(self.max_documents, self.max_percent)
        return default, f"the platform default AUTOMATION_MAX_DOCUMENTS={default}"

    def verdict(self, collection: Collection, automation: Automation, plan: UpdatePlan) -> Verdict | None:
        """``automation``'s count against its limit, or None when it has no limit (then nothing is counted)."""
        found = self.limit_for(automation)
        if found is None:
            return None
        limit, source = found
        size = collection.estimated_document_count() if limit.percent is not None else 0
        return Verdict(
            count_matching(collection, automation, plan), limit.documents(size), limit, source, collection.name
        )

    def enforce(self, collection: Collection, automation: Automation, plan: UpdatePlan) -> Verdict | None:
        """:meth:`verdict`, raising :class:`BlastRadiusExceeded` when the count exceeds the limit."""
        found = self.verdict(collection, automation, plan)
        if found is not None and found.exceeded:
            raise BlastRadiusExceeded(found.message())
        return found


def count_matching(collection: Collection, automation: Automation, plan: UpdatePlan) -> int:
    """How many documents the automation's write would select, counted by the server."""
    query = automation.query
    query_filter = (query.filter or {}) if query.pipeline is None else filter_of(query.pipeline)
    if query_filter is not None:
        return collection.count_documents(plan.filter(query_filter))
    counted = list(collection.aggregate([*query.pipeline, {"$count": "documents"}], allowDiskUse=True))
    return counted[0]["documents"] if counted else 0
