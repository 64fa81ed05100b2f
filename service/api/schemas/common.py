"""Wire pieces every resource shares: money and instants as text, totals, unit prices, the
error body. Money is always a decimal string (``service.wire``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from service.rollups.models import MEASURES, Totals
from service.wire import instant_text, money_text


def money(value: Decimal | None) -> str | None:
    """An amount in its wire form (``service.wire.money_text``), or None."""
    return None if value is None else money_text(value)


def timestamp(value: datetime | None) -> str | None:
    """An instant in its wire form (``service.wire.instant_text``), or None."""
    return None if value is None else instant_text(value)


class TotalsOut(msgspec.Struct, kw_only=True):
    """The measures of a rollup (``rollups.models.MEASURES``), spelled out for OpenAPI; a
    unit test checks them against the declaration."""

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
    """USD per 1M tokens per class, and USD per request (``pricing.models.PRICE_CLASSES``)."""

    input: str
    output: str
    cache_read: str
    cache_write: str
    reasoning: str
    per_request: str


def unit_prices(prices: dict[str, Decimal] | None) -> UnitPrices | None:
    if prices is None:
        return None
    return UnitPrices(**{k: money(v) or "0" for k, v in prices.items()})


class ErrorBody(msgspec.Struct):
    """LUC's one error body (``api.errors``)."""

    status_code: int
    detail: str
