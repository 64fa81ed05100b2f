"""The generic usage query and the list of unpriced events."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec

from service.api.schemas.common import timestamp, totals_fields
from service.ledger.models import UnpricedEvent
from service.rollups.models import UsageRow
from service.tokens import counts_of
from service.wire import day_text


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


def unpriced_event_out(e: UnpricedEvent) -> UnpricedEventOut:
    return UnpricedEventOut(
        id=e.event_id,
        model=e.model,
        job_id=e.job_id,
        agent=e.agent,
        provider=e.provider,
        occurred_at=timestamp(e.occurred_at) or "",
        **counts_of(e),
        reason=e.reason,
    )
