"""Reconciliation: catalog-priced against provider-reported cost, per group."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from service.api.schemas.common import money, timestamp, wire_value
from service.reconciliation.models import ReconciliationRow
from service.wire import money_text


class ReasonOut(msgspec.Struct):
    code: str
    """``cache_read_at_input_price``, ``cache_write_at_input_price``, ``long_context``,
    ``upstream_model_differs``, ``reasoning_tokens`` or ``unexplained``."""
    events: int
    """How many of the group's compared events it concerns."""
    text: str


class ReconciliationRowOut(msgspec.Struct, kw_only=True):
    """One group. Its keys are those ``group_by`` names (the others are absent); money is
    a decimal string at full precision."""

    model: str | msgspec.UnsetType = msgspec.UNSET
    provider: str | msgspec.UnsetType = msgspec.UNSET
    day: str | msgspec.UnsetType = msgspec.UNSET
    """``YYYY-MM-DD``, a UTC day."""
    events: int
    """Every event of the group."""
    reported_events: int
    """Events whose provider reported a cost (``provider_cost_usd``)."""
    unpriced_reported_events: int
    """Reported events no catalog version prices: kept out of the comparison."""
    cost_usd: str
    """Catalog cost of the reported, priced events (the ledger's net cost per event)."""
    provider_cost_usd: str
    """Provider-reported cost of the same events."""
    unpriced_provider_cost_usd: str
    """Provider-reported cost of the reported, unpriced events."""
    difference_usd: str
    """``provider_cost_usd − cost_usd``."""
    difference_ratio: str | None
    """``difference_usd / cost_usd`` to 20 significant digits; null when ``cost_usd`` is 0."""
    drift: bool
    """|difference_ratio| above the tolerance over at least ``min_events`` reported events
    (``reported_events``)."""
    reasons: list[ReasonOut]
    """What LUC can tell about a drift; empty when the group does not drift."""


class ReconciliationOut(msgspec.Struct, kw_only=True):
    group_by: list[str]
    start: str | None = msgspec.field(name="from")
    end: str | None = msgspec.field(name="to")
    tolerance: str
    """``LUC_RECONCILIATION_TOLERANCE``, as a share (0.01 = 1 %)."""
    min_events: int
    """Reported, priced events a group needs before it can drift."""
    rows: list[ReconciliationRowOut]


def reconciliation_row_out(row: ReconciliationRow) -> ReconciliationRowOut:
    t = row.totals
    return ReconciliationRowOut(
        **{k: wire_value(v) for k, v in row.keys.items()},
        events=t.events,
        reported_events=t.reported_events,
        unpriced_reported_events=t.unpriced_reported_events,
        cost_usd=money_text(t.cost_usd),
        provider_cost_usd=money_text(t.provider_cost_usd),
        unpriced_provider_cost_usd=money_text(t.unpriced_provider_cost_usd),
        difference_usd=money_text(t.difference_usd),
        difference_ratio=money(row.difference_ratio),
        drift=row.drift,
        reasons=[ReasonOut(r.code, r.events, r.text) for r in row.reasons],
    )


def reconciliation_out(
    keys: list[str],
    start: datetime | None,
    end: datetime | None,
    tolerance: Decimal,
    min_events: int,
    rows: list[ReconciliationRow],
) -> ReconciliationOut:
    return ReconciliationOut(
        group_by=keys,
        start=timestamp(start),
        end=timestamp(end),
        tolerance=money_text(tolerance),
        min_events=min_events,
        rows=[reconciliation_row_out(r) for r in rows],
    )
