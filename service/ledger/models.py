"""Ledger entries. Token counts and money are signed so an adjustment can reverse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from service.pricing.cost import actual_cost
from service.tokens import TokenCounts


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryFields(TokenCounts):
    """What an entry says, appended or read back: a count per token class, and these."""

    event_id: str
    kind: str
    """``charge`` (an event's first entry) or ``adjustment`` (re-rating)."""
    job_id: str
    agent: str
    model: str
    provider: str
    tier: str | None
    catalog_version: int | None
    """The version whose prices made ``cost_usd``; ``None`` while the event is unpriced."""
    long_context_from: int | None
    """The rate of that version that priced it (``pricing.models.Rate``): the threshold of
    the model's long-context entry the event reached, ``None`` for the base prices."""
    occurred_at: datetime
    event_count: int
    unpriced_count: int
    cost_usd: Decimal | None
    provider_cost_usd: Decimal | None
    price_usd: Decimal | None
    """What the customer pays (SPEC §11): the plan's price of the event, its catalog cost
    when no plan prices it, ``None`` when the plan's basis cost is unknown (unpriced for
    the customer too). On an adjustment, the change it makes."""
    reason: str | None
    customer_id: str | None = None
    """The customer the entry was priced for: its job's (none for a job without one)."""
    plan_id: str | None = None
    plan_version: int | None = None
    """The plan version that set ``price_usd``; ``None`` when no plan did (price = cost)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewLedgerEntry(EntryFields):
    """An entry to append, with the unit prices that made its cost."""

    billing_day: date
    price_input: Decimal | None
    price_output: Decimal | None
    price_cache_read: Decimal | None
    price_cache_write: Decimal | None
    price_reasoning: Decimal | None
    price_per_request: Decimal | None

    @property
    def actual_cost_usd(self) -> Decimal | None:
        """What the database will store for it (a generated column, migration 0012)."""
        return actual_cost(self.cost_usd, self.provider_cost_usd)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry(EntryFields):
    """An entry as stored."""

    actual_cost_usd: Decimal | None
    """The provider's reported cost where present, else ``cost_usd`` (SPEC §3)."""
    id: int
    recorded_at: datetime
    unit_prices: dict[str, Decimal] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpricedEvent(TokenCounts):
    """An event no catalog version priced yet, with the reason its pricing gave."""

    event_id: str
    model: str
    job_id: str
    agent: str
    provider: str
    occurred_at: datetime
    reason: str | None
    customer_id: str | None = None
    """The customer it is priced for (its job's)."""
    price_usd: Decimal | None = None
    """Its price for that customer: None, unpriced for the customer too, unless the plan
    prices the model itself or marks up the provider's reported cost."""
    plan_id: str | None = None
    plan_version: int | None = None
