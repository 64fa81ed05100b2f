"""Wire schemas of the read and write API. Money is always a decimal string."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from service.rollups.models import MEASURES, Totals, UsageRow
from service.wire import day_text, instant_text, money_text


def money(value: Decimal | None) -> str | None:
    """An amount in its wire form (``service.wire.money_text``), or None."""
    return None if value is None else money_text(value)


def timestamp(value: datetime | None) -> str | None:
    """An instant in its wire form (``service.wire.instant_text``), or None."""
    return None if value is None else instant_text(value)


class EventResult(msgspec.Struct, omit_defaults=True):
    id: str | None
    status: str
    reason: str | None = None


class BatchResult(msgspec.Struct):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    results: list[EventResult]


class TotalsOut(msgspec.Struct, kw_only=True):
    cost_usd: str | None
    provider_cost_usd: str
    events: int
    unpriced_events: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    first_event_at: str | None
    last_event_at: str | None


# A measure's wire form, by its form (``rollups.models.Measure.form``).
_WIRE_FORMS: dict[str, Callable[[Any], Any]] = {
    "money": money,
    "count": int,
    "instant": timestamp,
}


def totals_fields(t: Totals) -> dict[str, Any]:
    """The fields of ``TotalsOut`` for ``t``: every measure in its wire form."""
    return {m.name: _WIRE_FORMS[m.form](getattr(t, m.name)) for m in MEASURES}


class UnitPrices(msgspec.Struct):
    """USD per 1M tokens per class, and USD per request."""

    input: str
    output: str
    cache_read: str
    cache_write: str
    reasoning: str
    per_request: str


class JobLineOut(TotalsOut, kw_only=True):
    agent: str
    model: str
    provider: str
    catalog_version: int | None
    tier: str | None
    unit_prices: UnitPrices | None


class JobOut(TotalsOut, kw_only=True):
    job_id: str


class JobDetailOut(JobOut, kw_only=True):
    lines: list[JobLineOut]


class JobPage(msgspec.Struct):
    items: list[JobOut]
    next_cursor: str | None


class LedgerEntryOut(msgspec.Struct):
    id: int
    event_id: str
    kind: str
    job_id: str
    agent: str
    model: str
    provider: str
    tier: str | None
    catalog_version: int | None
    occurred_at: str
    recorded_at: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    events: int
    unpriced_events: int
    cost_usd: str | None
    provider_cost_usd: str | None
    unit_prices: UnitPrices | None
    reason: str | None


class LedgerPage(msgspec.Struct):
    job_id: str
    items: list[LedgerEntryOut]
    next_cursor: str | None


class AgentOut(TotalsOut, kw_only=True):
    agent: str


class AgentList(msgspec.Struct):
    items: list[AgentOut]


class DayOut(TotalsOut, kw_only=True):
    day: str


class AgentDetailOut(AgentOut, kw_only=True):
    days: list[DayOut]


class UsageOut(msgspec.Struct):
    group_by: list[str]
    rows: list[dict[str, Any]]
    """Each row: the group's keys, ``cost_usd`` (decimal string), ``events`` and token counts."""


def usage_row(row: UsageRow) -> dict[str, Any]:
    """A row of ``UsageOut``: the group's keys (a day as ``YYYY-MM-DD``), then its totals."""
    keys = {k: day_text(v) if isinstance(v, date) else v for k, v in row.keys.items()}
    return {**keys, **totals_fields(row.totals)}


class UnpricedEventOut(msgspec.Struct):
    id: str
    model: str
    job_id: str
    agent: str
    provider: str
    occurred_at: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    reason: str | None


class UnpricedPage(msgspec.Struct):
    items: list[UnpricedEventOut]
    next_cursor: str | None


class ErrorBody(msgspec.Struct):
    status_code: int
    detail: str


class Health(msgspec.Struct):
    status: str


def unit_prices(prices: dict[str, Decimal] | None) -> UnitPrices | None:
    if prices is None:
        return None
    return UnitPrices(**{k: money(v) or "0" for k, v in prices.items()})
