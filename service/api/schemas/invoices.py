"""Invoices: an issued invoice (the document its digest covers), a preview, the list."""

from __future__ import annotations

from typing import Any

import msgspec

from service.api.schemas.common import wire_struct
from service.invoices.models import CURRENCY, InvoiceSummary
from service.wire import cents_text


# omit_defaults: a line of an invoice issued before actual costs were recorded has no
# ``actual_cost_usd`` and is served without one, so its digest still matches.
class LinePricingOut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """How the customer's rate plan made a line's amount from its usage."""

    plan_id: str
    plan_version: str
    method: str
    """``plan_prices``: the unit prices shown are the plan's own for the model, and the
    amount is usage × them; ``markup``: amount = ``basis_usd`` × (1 + ``markup``) +
    ``per_request_usd`` × events, at the catalog's unit prices shown; ``repricing``: the
    amount is the change of price this plan version made to usage billed before."""
    basis: str | msgspec.UnsetType = msgspec.UNSET
    """``catalog`` (the catalog price of the usage) or ``actual`` (the providers' cost)."""
    basis_usd: str | msgspec.UnsetType = msgspec.UNSET
    markup: str | msgspec.UnsetType = msgspec.UNSET
    """A fraction: 0.25 is 25 %."""
    per_request_usd: str | msgspec.UnsetType = msgspec.UNSET


class LineUnitPricesOut(msgspec.Struct):
    """USD per 1M tokens per class, and USD per request (``pricing.models.PRICE_CLASSES``);
    each null on a line of calls no catalog version priced that the plan billed at a
    markup on the providers' cost (no unit price explains it: see ``pricing``)."""

    input: str | None
    output: str | None
    cache_read: str | None
    cache_write: str | None
    reasoning: str | None
    per_request: str | None


class InvoiceLineOut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    # UNSET: present only on lines that have them (a monthly invoice's line names its job; a
    # line priced by a plan states its terms; a ``minimum`` line says what it is).
    line_type: str | msgspec.UnsetType = msgspec.UNSET
    """Absent on usage lines; ``minimum``: a plan's monthly minimum topping the month up."""
    description: str | msgspec.UnsetType = msgspec.UNSET
    job_id: str | msgspec.UnsetType = msgspec.UNSET
    pricing: LinePricingOut | msgspec.UnsetType = msgspec.UNSET
    agent: str
    model: str
    model_name: str | None
    provider: str
    catalog_version: int | None
    """Null on a ``minimum`` line, and on a line of calls no catalog version priced, billed
    at the customer's plan's price (its own for the model, or a markup on the providers'
    reported cost)."""
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
    unit_prices: LineUnitPricesOut
    """USD per 1M tokens per class, and USD per request, at ``rate``."""
    amount_usd: str
    """Full precision, never rounded."""
    # UNSET: only invoices issued between actual costs and the internal view carry it in
    # their document (their digest covers it); it is the internal view's field now.
    actual_cost_usd: str | msgspec.UnsetType | None = msgspec.UNSET
    """Internal: in ``view=internal`` (and on invoices issued before that view existed)."""


class NotBilledLineOut(InvoiceLineOut, kw_only=True):
    """Usage the invoice covers without billing it: stub answers (no LLM was called)."""

    reason: str


class LogoOut(msgspec.Struct, forbid_unknown_fields=True):
    sha256: str
    """SHA-256 of the image the invoice was issued with (kept beside the invoices)."""
    media_type: str


class IssuerOut(msgspec.Struct, forbid_unknown_fields=True):
    """Who issued the invoice, as ``LUC_ISSUER_*`` said when it was issued."""

    name: str | None
    """Null when ``LUC_ISSUER_NAME`` was not set."""
    address: str | None
    tax_id: str | None
    payment_terms_days: int
    footer: str | None
    logo: LogoOut | None


class BillToOut(msgspec.Struct, forbid_unknown_fields=True):
    """The customer billed, as it was when the invoice was issued."""

    id: str | None
    """The registered customer; null for a name given only as the job's free-text
    ``customer``."""
    name: str
    address: str | None
    tax_id: str | None


# omit_defaults: ``not_billed`` is left out when empty, as in the stored document, so the
# digest of every invoice (those issued before the field existed too) still matches. The
# UNSET fields are absent from invoices issued before they existed, and left absent.
class InvoiceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    job_id: str | None
    """Null on a customer's monthly invoice (its lines name their jobs)."""
    month: str | msgspec.UnsetType = msgspec.UNSET
    """A monthly invoice's UTC month (YYYY-MM)."""
    currency: str
    kind: str | msgspec.UnsetType = msgspec.UNSET
    """``invoice``, or ``credit_note`` (a follow-up whose total is negative)."""
    due_date: str | msgspec.UnsetType | None = msgspec.UNSET
    """The UTC issue date plus the issuer's payment terms (YYYY-MM-DD); null on a preview."""
    issuer: IssuerOut | msgspec.UnsetType = msgspec.UNSET
    customer: BillToOut | str | None
    """Who is billed: the job's customer as it was at issue, or null. (A text on invoices
    issued before customers were registered: the job's free-text ``customer``.)"""
    corrects: str | msgspec.UnsetType | None = msgspec.UNSET
    """A credit note's: the invoice it corrects."""
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
    credits_applied_usd: str | msgspec.UnsetType = msgspec.UNSET
    """Prepaid credits drawn by the entries this invoice bills, at every digit drawn (none
    yet: 0.00)."""
    amount_due_usd: str | msgspec.UnsetType = msgspec.UNSET
    """What is settled in money: subtotal_usd − credits_applied_usd rounded once to cents.
    Signed on either kind: negative, owed to the customer; positive, owed by it (a credit
    note whose entries gave back more credits than its total)."""
    amount_due_rounding_usd: str | msgspec.UnsetType = msgspec.UNSET
    """amount_due_usd − (total_usd − credits_applied_usd): present only when the credits
    applied carry digits below the cent (they are shown as drawn, never rounded)."""
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
    status: str | None
    """The job's status (open, closed); null on a monthly invoice."""
    earlier_invoices: list[str]
    issuable: bool
    """Whether issuing now would issue it (201) rather than be refused (409)."""
    not_issued_because: str | None
    """Why not: nothing new, only stub answers, or a follow-up that is 0.00 at the cent (its
    entries carry forward to the next follow-up). The 409's ``detail`` says the same."""


class InternalLineOut(InvoiceLineOut, kw_only=True):
    cost_usd: str | None
    """The catalog cost of the line's entries; null on a line of calls no catalog version
    priced."""
    provider_cost_usd: str | None
    """What the providers reported the line's calls cost, over those that reported it;
    null when none did (and on lines issued before LUC kept it)."""
    margin_usd: str | None
    """amount − actual cost, once invoices bill the customer's price; null until then."""


class InvoiceInternalOut(InvoiceBody, kw_only=True):
    """An issued invoice for finance: its lines with what they cost. Never the customer's
    form, and without the digest (it is not the issued document)."""

    number: str
    issued_at: str
    view: str
    lines: list[InternalLineOut]  # type: ignore[assignment]  # the lines with their costs
    cost_usd: str | None
    """Null when a line has none (calls no catalog version priced)."""
    provider_cost_usd: str | None
    """The lines' reported costs summed; null when no line has one."""
    actual_cost_usd: str | None
    """Null when a line has none (issued before actual costs were recorded, or calls no
    catalog version priced whose providers reported no cost)."""
    margin_usd: str | None


class InvoiceSummaryOut(msgspec.Struct):
    number: str
    kind: str
    job_id: str | None
    customer_id: str | None
    month: str | None
    """The UTC month a monthly invoice covers, YYYY-MM; null for a job's invoice."""
    issued_at: str
    due_date: str | None
    currency: str
    subtotal_usd: str
    rounding_usd: str
    total_usd: str
    covered_entries: int
    unpriced_events: int
    follow_up_of: str | None
    corrects: str | None
    digest: str
    credits_applied_usd: str
    """Prepaid credits applied, as on the invoice."""
    amount_due_usd: str
    """What is settled in money, as on the invoice (negative: owed to the customer)."""


class InvoicePage(msgspec.Struct):
    items: list[InvoiceSummaryOut]
    next_cursor: str | None


def invoice_out(document: dict[str, Any]) -> InvoiceOut:
    """An issued invoice's document (with its digest) as the wire struct."""
    return msgspec.convert(document, InvoiceOut)


def invoice_preview_out(
    document: dict[str, Any], status: str | None, earlier: list[str], refusal: str | None
) -> InvoicePreviewOut:
    return msgspec.convert(
        {
            **document,
            "status": status,
            "earlier_invoices": earlier,
            "issuable": refusal is None,
            "not_issued_because": refusal,
        },
        InvoicePreviewOut,
    )


def invoice_internal_out(document: dict[str, Any]) -> InvoiceInternalOut:
    return msgspec.convert(document, InvoiceInternalOut)


def invoice_summary_out(r: InvoiceSummary) -> InvoiceSummaryOut:
    # The total is written in cents, as on the invoice itself.
    return wire_struct(
        InvoiceSummaryOut,
        r,
        currency=CURRENCY,
        total_usd=cents_text(r.total_usd),
        month=None if r.month is None else f"{r.month:%Y-%m}",
        # An invoice issued before credits applied none, and its total was due.
        credits_applied_usd=r.credits_applied_usd or "0.00",
        amount_due_usd=r.amount_due_usd or cents_text(r.total_usd),
        due_date=None if r.due_date is None else r.due_date.isoformat(),
    )
