"""Invoices: an issued invoice (the document its digest covers), a preview, the list."""

from __future__ import annotations

from typing import Any

import msgspec

from service.api.schemas.common import UnitPrices, wire_struct
from service.invoices.models import CURRENCY, InvoiceSummary
from service.wire import cents_text


# omit_defaults: a line of an invoice issued before actual costs were recorded has no
# ``actual_cost_usd`` and is served without one, so its digest still matches.
class InvoiceLineOut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    agent: str
    model: str
    model_name: str | None
    provider: str
    catalog_version: int
    tier: str | None
    events: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    # UNSET, not None: absent from invoices issued before long context (their lines were
    # at base prices), and left absent when served, so every stored digest still matches.
    long_context_from: int | msgspec.UnsetType | None = msgspec.UNSET
    """The rate of the unit prices: the long-context threshold the line's calls reached,
    null for the model's base prices."""
    rate: str | msgspec.UnsetType = msgspec.UNSET
    """That rate by name: ``base``, or ``long context ≥ 200,001 input tokens``."""
    unit_prices: UnitPrices
    """USD per 1M tokens per class, and USD per request, at ``rate``."""
    amount_usd: str
    """Full precision, never rounded."""
    actual_cost_usd: str | None = None
    """For information, not billed: the provider-reported cost of the line's calls where
    reported, else their catalog cost. Absent on invoices issued before it was recorded."""


class NotBilledLineOut(InvoiceLineOut, kw_only=True):
    """Usage the invoice covers without billing it: stub answers (no LLM was called)."""

    reason: str


# omit_defaults: ``not_billed`` is left out when empty, as in the stored document, so the
# digest of every invoice (those issued before the field existed too) still matches.
class InvoiceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    job_id: str
    currency: str
    customer: str | None
    title: str | None
    reference: str | None
    follow_up_of: str | None
    """The job's invoice before this one; this one covers only entries recorded after it."""
    period_start: str | None
    period_end: str | None
    """Event times of the first and last covered entries."""
    lines: list[InvoiceLineOut]
    events: int
    subtotal_usd: str
    """Sum of the lines, full precision."""
    rounding_rule: str
    rounding_usd: str
    """total_usd − subtotal_usd."""
    total_usd: str
    """The subtotal rounded once to cents by the rounding rule."""
    covered_entries: int
    """Ledger entries this invoice covers; no other invoice covers any of them."""
    entries_sha256: str
    """SHA-256 of the covered ledger entry ids, ascending, comma-separated."""
    unpriced_events: int
    """Events of the job without a price: not billed here."""
    notes: list[str]
    not_billed: list[NotBilledLineOut] = msgspec.field(default_factory=list)
    """Stub answers (LUC's heuristic mode, no LLM called): covered, listed, never billed;
    present only when there are some."""


class InvoiceOut(InvoiceBody, kw_only=True):
    number: str
    issued_at: str
    digest: str
    """SHA-256 (hex) of the canonical JSON of this object without ``digest``: sorted keys,
    no whitespace, UTF-8."""


class InvoicePreviewOut(InvoiceBody, kw_only=True):
    number: None
    issued_at: None
    status: str
    """The job's status (open, closed)."""
    earlier_invoices: list[str]


class InvoiceSummaryOut(msgspec.Struct):
    number: str
    job_id: str
    issued_at: str
    currency: str
    subtotal_usd: str
    rounding_usd: str
    total_usd: str
    covered_entries: int
    unpriced_events: int
    follow_up_of: str | None
    digest: str


class InvoicePage(msgspec.Struct):
    items: list[InvoiceSummaryOut]
    next_cursor: str | None


def invoice_out(document: dict[str, Any]) -> InvoiceOut:
    """An issued invoice's document (with its digest) as the wire struct."""
    return msgspec.convert(document, InvoiceOut)


def invoice_preview_out(
    document: dict[str, Any], status: str, earlier: list[str]
) -> InvoicePreviewOut:
    return msgspec.convert(
        {**document, "status": status, "earlier_invoices": earlier}, InvoicePreviewOut
    )


def invoice_summary_out(r: InvoiceSummary) -> InvoiceSummaryOut:
    # The total is written in cents, as on the invoice itself.
    return wire_struct(InvoiceSummaryOut, r, currency=CURRENCY, total_usd=cents_text(r.total_usd))
