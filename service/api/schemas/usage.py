"""The generic usage query and the list of unpriced events."""

from __future__ import annotations

import msgspec

from service.api.schemas.common import TotalsOut, wire_struct
from service.ledger.models import UnpricedEvent

_Key = str | None | msgspec.UnsetType


class UsageRowOut(TotalsOut, kw_only=True):
    """One group: its totals, and its key under each name of ``group_by`` (the others are
    absent). A key is null where its entries have none: no tier nor catalog version for
    unpriced events, no customer for jobs without one. ``rollups.service.USAGE_GROUPS``
    declares the keys; a test holds them equal."""

    agent: _Key = msgspec.UNSET
    model: _Key = msgspec.UNSET
    provider: _Key = msgspec.UNSET
    tier: _Key = msgspec.UNSET
    day: _Key = msgspec.UNSET
    """The UTC day, ``YYYY-MM-DD``."""
    job_id: _Key = msgspec.UNSET
    catalog_version: int | msgspec.UnsetType | None = msgspec.UNSET
    customer: _Key = msgspec.UNSET


class UsageOut(msgspec.Struct):
    group_by: list[str]
    rows: list[UsageRowOut]
    """Written by PostgreSQL in wire form (``rollups.service.usage``) and sent as they are:
    structs of ``UsageRowOut``'s fields (``rollups.service.wire_rows``), which documents
    them."""


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
