"""What the rollups answer: totals per key, and the measures every rollup carries.

The measures are declared once, as the fields of ``Totals``: each says which ledger column
it is taken from and how entries combine (a sum, or the earliest or latest instant). The
token classes are measures too, summed, inherited from ``service.tokens.TokenCounts``.
Every rollup table's columns, the SQL that fills and reads them (``rollups.queries``), the
sum of totals and the wire fields (``api.schemas.common.totals_fields``) follow from
``MEASURES``; the wire struct and the migrations are checked against it by tests. Adding a
measure is one field here and a migration adding its column to each ``rollup_*`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import msgspec

from service.tokens import TokenCounts

Combine = Literal["sum", "min", "max"]
Form = Literal["money", "count", "instant"]


def _measure(
    source: str, combine: Combine, form: Form, *, unknown_when_null: bool = False
) -> dict[str, Any]:
    return {
        "measure": {
            "source": source,
            "combine": combine,
            "form": form,
            "unknown_when_null": unknown_when_null,
        }
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals(TokenCounts):
    """The measures of a rollup key (or of any set of ledger entries): a token count per
    class, and these."""

    cost_usd: Decimal | None = field(
        metadata=_measure("cost_usd", "sum", "money", unknown_when_null=True)
    )
    """The catalog's (list) price. ``None`` only on an unpriced job line: unknown, not zero."""
    actual_cost_usd: Decimal | None = field(
        metadata=_measure("actual_cost_usd", "sum", "money", unknown_when_null=True)
    )
    """Per entry the provider's reported cost where present, else the catalog's
    (``pricing.cost.actual_cost``). ``None`` only on an unpriced job line whose events
    reported no cost; on an unpriced line with reported costs, their sum."""
    provider_cost_usd: Decimal = field(metadata=_measure("provider_cost_usd", "sum", "money"))
    price_usd: Decimal | None = field(
        metadata=_measure("price_usd", "sum", "money", unknown_when_null=True)
    )
    """What the customers pay (SPEC §11): per entry its plan's price, else its catalog cost.
    ``None`` only on a job line none of whose entries has a known price (unpriced events
    under a catalog-basis plan, or no plan)."""
    margin_usd: Decimal | None = field(
        metadata=_measure("price_usd - actual_cost_usd", "sum", "money", unknown_when_null=True)
    )
    """``price_usd − actual_cost_usd`` wherever both are known (SPEC §11): per entry, then
    summed. Not the difference of the two sums: an event of unknown price and reported cost
    (an unpriced model under a catalog-basis plan) adds its actual cost to
    ``actual_cost_usd`` and nothing to ``price_usd``, and took its cost off the margin. An
    entry that makes an event's price known or unknown comes as a reversal and a new
    booking (re-rating, re-pricing), so the sum follows each event's net entries."""
    events: int = field(metadata=_measure("event_count", "sum", "count"))
    unpriced_events: int = field(metadata=_measure("unpriced_count", "sum", "count"))
    unknown_price_events: int = field(
        metadata=_measure("CASE WHEN price_usd IS NULL THEN event_count ELSE 0 END", "sum", "count")
    )
    """Events whose price is unknown (unpriced for their customer too, SPEC §11): when it
    is every event, ``price_usd`` is unknown, not the zero the sum of none would say."""
    unknown_actual_events: int = field(
        metadata=_measure(
            "CASE WHEN actual_cost_usd IS NULL THEN event_count ELSE 0 END", "sum", "count"
        )
    )
    """Events whose actual cost is unknown (unpriced, and no cost reported): as
    ``unknown_price_events`` for ``actual_cost_usd``."""
    unknown_margin_events: int = field(
        metadata=_measure(
            "CASE WHEN price_usd IS NULL OR actual_cost_usd IS NULL THEN event_count ELSE 0 END",
            "sum",
            "count",
        )
    )
    """Events whose price or actual cost is unknown: as ``unknown_price_events`` for
    ``margin_usd``."""
    first_event_at: datetime | None = field(metadata=_measure("occurred_at", "min", "instant"))
    last_event_at: datetime | None = field(metadata=_measure("occurred_at", "max", "instant"))

    @classmethod
    def from_row(cls, r: Any) -> Totals:
        """The totals of a row with a column per measure (NULL sums read as zero)."""
        return cls(**{m.name: m.read(r[m.name]) for m in MEASURES})

    @property
    def unknown_measures(self) -> tuple[str, ...]:
        """The money measures no event of these totals knows: null on the wire
        (``UNKNOWN_WHEN_NO_EVENT_KNOWS``)."""
        return tuple(
            name
            for name, count in UNKNOWN_WHEN_NO_EVENT_KNOWS.items()
            if self.events > 0 and getattr(self, count) == self.events
        )


@dataclass(frozen=True, slots=True)
class Measure:
    """One measure, as declared on ``Totals``."""

    name: str
    """The rollup column, the ``Totals`` field and the wire field."""
    source: str
    """The ledger column it is taken from."""
    combine: Combine
    form: Form
    unknown_when_null: bool = False
    """A NULL sum means unknown, not zero (the cost of unpriced entries): the job line
    rollup keeps it NULL while no entry of the line knows it (SQL's ``sum``, which skips
    NULLs); the others count it as zero."""

    def read(self, value: Any) -> Any:
        """A value of this measure as a database row holds it, as ``Totals`` holds it."""
        if self.form == "count":
            return int(value or 0)  # token sums are NUMERIC (migration 0007)
        if self.form == "money" and not self.unknown_when_null:
            return value or Decimal(0)
        return value


def _measures() -> tuple[Measure, ...]:
    found = []
    for f in fields(Totals):
        if "measure" in f.metadata:
            found.append(Measure(f.name, **f.metadata["measure"]))
        else:  # a token class: summed, from the ledger column of the same name
            found.append(Measure(f.name, f.name, "sum", "count"))
    return tuple(found)


MEASURES: tuple[Measure, ...] = _measures()
"""Every measure, in column order: the token classes first, then the rest of ``Totals``."""
MEASURE_NAMES: tuple[str, ...] = tuple(m.name for m in MEASURES)
UNKNOWN_WHEN_NO_EVENT_KNOWS: dict[str, str] = {
    "cost_usd": "unpriced_events",
    "price_usd": "unknown_price_events",
    "actual_cost_usd": "unknown_actual_events",
    "margin_usd": "unknown_margin_events",
}
"""What the wire says is null (unknown) on totals none of whose events knows it, by the
measure that counts the events that do not (SPEC §3: unpriced is never silently zero;
§11: an event unpriced for its customer has price_usd null). Only a job line's rollup
keeps such a sum NULL; the others add it as zero, so the counts decide it when the totals
are written out (counts net out under re-rating's reversals, where sums of zeros would
not). Some events knowing it: the sum of theirs, as on a job line."""


WireRow: TypeAlias = msgspec.Struct
"""A row as the API answers it, written by PostgreSQL (``rollups.queries.wire_totals``):
a struct of its columns (``rollups.service.wire_rows``), money and instants as text
(``service.wire``), a day as ``YYYY-MM-DD``, counts as int; its totals are
``api.schemas.common.TotalsOut``'s fields."""


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class JobDetail:
    """A job's totals, its customer and its lines, in wire form."""

    job_id: str
    customer_id: str | None
    """The customer the job belongs to (``jobs.models.JobInfo.customer_id``)."""
    totals: WireRow
    lines: list[dict[str, Any]]
    """One per agent × model × provider × catalog version × rate, in that order: those
    keys, ``long_context_from`` (the rate of its unit prices; None: base prices), ``tier``,
    ``unit_prices`` (a money text per ``pricing.models.PRICE_CLASSES``; None while
    unpriced), then its totals."""


@dataclass(frozen=True, slots=True)
class AgentSummary:
    agent: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class AgentDetail:
    """An agent's totals over a range and its UTC days with events, in wire form."""

    agent: str
    totals: WireRow
    days: list[WireRow]
    """``day``, then its totals."""


@dataclass(frozen=True, slots=True)
class CustomerMonth:
    """A customer's totals in one UTC month (the customer × month rollup)."""

    customer_id: str | None
    month: date
    """The first day of the month."""
    totals: Totals
