"""Reconciliation (SPEC §5): what LUC priced from its catalog beside what the providers
reported, per group of model, provider and UTC day, with a drift flag and its reasons.

The measures are declared once, in ``MEASURES``: each is a sum over ledger entries. An
event's entries (its charge, then any re-rating's reversal and re-booking) net to the
event as it stands, so the sums use the ledger's net cost per event. Only events whose
provider reported a cost can be compared, and of those only the priced ones: an unpriced
event has no catalog cost, so it is counted (``unpriced_reported_events``, with its
``unpriced_provider_cost_usd``) and kept out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from service.money import exact_difference

Form = Literal["count", "money"]

# Which entries a measure sums, as conditions on a ledger entry ({p} prefixes the columns):
# it carries a provider cost (its event's provider reported one); it carries a catalog cost
# (its event is priced: the ledger's CHECK ties cost_usd to catalog_version).
_REPORTED = "{p}provider_cost_usd IS NOT NULL"
_PRICED = "{p}cost_usd IS NOT NULL"
_UNPRICED = "{p}cost_usd IS NULL"


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    """The rollup column, the ``Totals`` field and the wire field."""
    column: str
    """The ledger column summed."""
    where: str | None
    """The entries it sums, a SQL condition on the ledger's columns (None: every one)."""
    form: Form

    def over_ledger(self, alias: str = "") -> str:
        """The measure over a set of ledger entries (columns prefixed with ``alias.``)."""
        prefix = f"{alias}." if alias else ""
        filtered = f" FILTER (WHERE {self.where.format(p=prefix)})" if self.where else ""
        return f"COALESCE(sum({prefix}{self.column}){filtered}, 0)"

    def of_entry(self) -> str:
        """The measure over one ledger entry: what ``over_ledger`` sums to over it alone."""
        if self.where is None:
            return f"COALESCE({self.column}, 0)"
        return f"CASE WHEN {self.where.format(p='')} THEN COALESCE({self.column}, 0) ELSE 0 END"


MEASURES = (
    Measure("events", "event_count", None, "count"),
    Measure("reported_events", "event_count", _REPORTED, "count"),
    Measure("unpriced_reported_events", "unpriced_count", _REPORTED, "count"),
    # Catalog cost of the reported events: NULL (unpriced) costs add nothing to the sum.
    Measure("cost_usd", "cost_usd", _REPORTED, "money"),
    Measure("provider_cost_usd", "provider_cost_usd", _PRICED, "money"),
    Measure("unpriced_provider_cost_usd", "provider_cost_usd", _UNPRICED, "money"),
)
MEASURE_NAMES = tuple(m.name for m in MEASURES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """The measures of one group: every field is a measure of ``MEASURES``."""

    events: int
    """Every event of the group, reported or not."""
    reported_events: int
    """Events whose provider reported a cost (priced or not)."""
    unpriced_reported_events: int
    """Reported events no catalog version prices: counted, kept out of the comparison."""
    cost_usd: Decimal
    """Catalog cost of the reported, priced events."""
    provider_cost_usd: Decimal
    """Provider-reported cost of the same events."""
    unpriced_provider_cost_usd: Decimal
    """Provider-reported cost of the reported, unpriced events."""

    @classmethod
    def from_row(cls, r: Any) -> Totals:
        values: dict[str, Any] = {
            m.name: int(r[m.name]) if m.form == "count" else r[m.name] for m in MEASURES
        }
        return cls(**values)

    @property
    def difference_usd(self) -> Decimal:
        """Provider-reported minus catalog cost, exactly."""
        return exact_difference(self.provider_cost_usd, self.cost_usd)


assert tuple(f.name for f in fields(Totals)) == MEASURE_NAMES


@dataclass(frozen=True, slots=True)
class Reason:
    """Something LUC sees in a drifting group that can explain part of the difference."""

    code: str
    """Machine-readable, stable (``service.reconciliation.reasons`` lists them)."""
    events: int
    """How many of the compared events it concerns."""
    text: str


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    keys: dict[str, str | date]
    """The group's keys (``day`` is a date)."""
    totals: Totals
    difference_ratio: Decimal | None
    """``difference_usd`` over ``cost_usd``; None when the catalog cost is zero."""
    drift: bool
    reasons: list[Reason]
    """Empty unless ``drift``."""
