"""What an export reads: one FOCUS row's worth of ledger, and the range asked for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from service.tokens import TokenCounts, counts_from_row


@dataclass(frozen=True, slots=True)
class ExportRange:
    """[start, end): UTC instants on whole seconds, at most ``MAX_RANGE`` apart."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FocusRow(TokenCounts):
    """The ledger entries of one UTC day × job × agent × model × provider, net of
    adjustments. Costs are sums over the entries that know them: ``None`` when none does."""

    day: date
    job_id: str
    agent: str
    model: str
    provider: str
    catalog_versions: tuple[int, ...]
    """The catalog versions that price the row's events (after re-rating, the new one)."""
    events: int
    unpriced_events: int
    """Events no catalog version prices yet: their catalog cost is unknown."""
    cost_usd: Decimal | None
    """The catalog (list) cost."""
    provider_cost_usd: Decimal | None
    """What the providers reported, over the events they reported it for."""
    actual_cost_usd: Decimal | None
    """The provider's figure where reported, else the catalog's."""

    @classmethod
    def from_record(cls, row: Any) -> FocusRow:
        return cls(
            day=row["day"],
            job_id=row["job_id"],
            agent=row["agent"],
            model=row["model"],
            provider=row["provider"],
            catalog_versions=tuple(row["catalog_versions"] or ()),
            events=row["events"],
            unpriced_events=row["unpriced_events"],
            cost_usd=row["cost_usd"],
            provider_cost_usd=row["provider_cost_usd"],
            actual_cost_usd=row["actual_cost_usd"],
            **counts_from_row(row),
        )
