"""Invoice shapes, and the one rounding rule an invoice applies to money."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from service.jobs.models import JobInfo
from service.money import CENT, exact_sum, quantize_half_up
from service.tokens import TokenCounts

CURRENCY = "USD"
NUMBER_PREFIX = "LUC"

# Lines and the subtotal keep full precision (summed exactly, service.money); only the total
# is rounded, once, to cents, half up: half away from zero in Python's decimal, so a credit
# rounds like a charge. Amounts are written in their wire forms (service.wire: money_text,
# cents_text for the total).
ROUNDING_RULE = (
    "total = subtotal rounded once to 0.01 USD, half up (ROUND_HALF_UP: 0.125 → 0.13); "
    "lines and subtotal at full precision"
)


def invoice_number(year: int, seq: int) -> str:
    """``LUC-2026-000042``: the year of issue and the gap-free sequence within it."""
    return f"{NUMBER_PREFIX}-{year}-{seq:06d}"


def round_total(subtotal: Decimal) -> Decimal:
    """The invoice total: ``subtotal`` rounded once to cents, half up (``ROUNDING_RULE``)."""
    total = quantize_half_up(subtotal, CENT)
    return total if total != 0 else Decimal("0.00")  # never "-0.00"


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftLine(TokenCounts):
    """Covered entries of one agent × model × provider × catalog version × rate (one unit
    price), with their sum of each token class."""

    agent: str
    model: str
    model_name: str | None
    provider: str
    catalog_version: int
    long_context_from: int | None
    """The rate of the unit prices (``pricing.models.Rate``); None: the base prices."""
    tier: str | None
    events: int
    unit_prices: dict[str, Decimal]
    amount_usd: Decimal
    """What the line bills: the catalog cost of its entries."""
    actual_cost_usd: Decimal
    """For information, not billed: what the calls actually cost (each entry's provider
    cost where reported, else its catalog cost). Every entry of a line is priced, so it
    is always known."""


@dataclass(frozen=True, slots=True)
class Draft:
    """What an invoice of a job would hold now: the entries no earlier invoice covers."""

    job: JobInfo
    entry_ids: list[int]
    lines: list[DraftLine]
    unpriced_events: int
    """Events of the job still unpriced: not billed; a later follow-up bills them."""
    period_start: datetime | None
    period_end: datetime | None
    earlier: list[str]
    """Numbers of the job's issued invoices, oldest first."""
    not_billed: list[DraftLine] = field(default_factory=list)
    """Covered usage that is no LLM call (stub answers, at zero): listed apart, never a
    billed line, so the invoice says what it left out and why."""

    @property
    def subtotal(self) -> Decimal:
        return exact_sum(line.amount_usd for line in self.lines)

    @property
    def total(self) -> Decimal:
        return round_total(self.subtotal)

    @property
    def follow_up_of(self) -> str | None:
        return self.earlier[-1] if self.earlier else None


@dataclass(frozen=True, slots=True)
class Invoice:
    """An issued invoice: its canonical document (the digest covers it) and the digest."""

    number: str
    job_id: str
    issued_at: datetime
    total_usd: Decimal
    document: dict[str, Any]
    """The invoice without ``digest``, as parsed from the stored canonical JSON."""
    canonical: str
    digest: str

    def with_digest(self) -> dict[str, Any]:
        return {**self.document, "digest": self.digest}


@dataclass(frozen=True, slots=True)
class InvoiceSummary:
    number: str
    job_id: str
    issued_at: datetime
    subtotal_usd: Decimal
    rounding_usd: Decimal
    total_usd: Decimal
    covered_entries: int
    unpriced_events: int
    follow_up_of: str | None
    digest: str


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking an invoice against its digest."""

    number: str | None
    ok: bool
    problems: list[str]
