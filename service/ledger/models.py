"""Ledger entries. Token columns and counts are signed so an adjustment can reverse."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class NewLedgerEntry:
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
    occurred_at: datetime
    billing_day: date
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    event_count: int
    unpriced_count: int
    cost_usd: Decimal | None
    provider_cost_usd: Decimal | None
    price_input: Decimal | None
    price_output: Decimal | None
    price_cache_read: Decimal | None
    price_cache_write: Decimal | None
    price_reasoning: Decimal | None
    price_per_request: Decimal | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    event_id: str
    kind: str
    job_id: str
    agent: str
    model: str
    provider: str
    tier: str | None
    catalog_version: int | None
    occurred_at: datetime
    recorded_at: datetime
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    event_count: int
    unpriced_count: int
    cost_usd: Decimal | None
    provider_cost_usd: Decimal | None
    unit_prices: dict[str, Decimal] | None
    reason: str | None
