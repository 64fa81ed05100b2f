"""The generic usage query and the list of unpriced events."""

from __future__ import annotations

from typing import Any

import msgspec

from service.api.schemas.common import wire_struct
from service.ledger.models import UnpricedEvent


class UsageOut(msgspec.Struct):
    group_by: list[str]
    rows: list[dict[str, Any]]
    """Each row: the group's keys, ``cost_usd``, ``actual_cost_usd``, ``price_usd`` and
    ``margin_usd`` (decimal strings), ``events`` and token counts."""


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
    customer_id: str | None
    """The customer it is priced for (its job's); null for a job without one."""
    price_usd: str | None
    """Its price for that customer: null, unpriced for the customer too (a catalog-basis
    plan, or none), unless the plan prices the model itself or marks up the provider's
    reported cost."""
    plan_id: str | None
    plan_version: int | None


class UnpricedPage(msgspec.Struct):
    items: list[UnpricedEventOut]
    next_cursor: str | None


def unpriced_event_out(e: UnpricedEvent) -> UnpricedEventOut:
    return wire_struct(UnpricedEventOut, e, id=e.event_id)
