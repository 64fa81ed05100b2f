"""What the rollups answer: totals per key, with every token class."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

TOKEN_CLASSES = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class Totals:
    cost_usd: Decimal | None
    """``None`` only on an unpriced job line: its price is unknown, not zero."""
    provider_cost_usd: Decimal
    events: int
    unpriced_events: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    first_event_at: datetime | None
    last_event_at: datetime | None

    @classmethod
    def from_row(cls, r: Any) -> Totals:
        return cls(
            cost_usd=r["cost_usd"],
            provider_cost_usd=r["provider_cost_usd"] or Decimal(0),
            events=int(r["events"] or 0),
            unpriced_events=int(r["unpriced_events"] or 0),
            input_tokens=int(r["input_tokens"] or 0),
            cached_input_tokens=int(r["cached_input_tokens"] or 0),
            cache_write_tokens=int(r["cache_write_tokens"] or 0),
            output_tokens=int(r["output_tokens"] or 0),
            reasoning_tokens=int(r["reasoning_tokens"] or 0),
            first_event_at=r["first_event_at"],
            last_event_at=r["last_event_at"],
        )


@dataclass(frozen=True, slots=True)
class JobLine:
    agent: str
    model: str
    provider: str
    catalog_version: int | None
    tier: str | None
    unit_prices: dict[str, Decimal] | None
    totals: Totals


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class JobDetail:
    job_id: str
    totals: Totals
    lines: list[JobLine]


@dataclass(frozen=True, slots=True)
class AgentSummary:
    agent: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    totals: Totals


@dataclass(frozen=True, slots=True)
class AgentDetail:
    agent: str
    totals: Totals
    days: list[DayTotals]


@dataclass(frozen=True, slots=True)
class UsageRow:
    keys: dict[str, str | int | None]
    totals: Totals
