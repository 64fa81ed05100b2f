"""Invoice shapes, their numbers, and the one rounding rule an invoice applies to money.

A draft is lines and amounts; who issues it (``settings.IssuerSettings``) and who is billed
(``BillTo``) are copied into the document when it is issued, and the forms (``render``)
present it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from service.jobs.models import JobInfo
from service.money import CENT, exact_difference, exact_sum, quantize_half_up
from service.tokens import TokenCounts

CURRENCY = "USD"
NUMBER_PREFIX = "LUC"

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
KINDS = (INVOICE, CREDIT_NOTE)
"""What an issued document is: an invoice, or a credit note (a follow-up whose total is
negative). Each kind is numbered from its own gap-free sequence per year."""
SERIES_PREFIX = {INVOICE: NUMBER_PREFIX, CREDIT_NOTE: f"{NUMBER_PREFIX}-CN"}
_NUMBER = re.compile(r"(LUC|LUC-CN)-(\d{4})-(\d{6,})")

# Lines, the subtotal and the prepaid credits applied keep full precision (summed exactly,
# service.money); only the total and the amount due are rounded, each once, to cents, half
# up: half away from zero in Python's decimal, so a credit rounds like a charge. Amounts are
# written in their wire forms (service.wire: money_text, cents_text for the total and the
# amount due).
ROUNDING_RULE = (
    "total = subtotal rounded once to 0.01 USD, half up (ROUND_HALF_UP: 0.125 → 0.13); "
    "lines, subtotal and prepaid credits applied at full precision; amount due = subtotal "
    "− credits applied, rounded once to 0.01 USD the same way, signed (negative: owed to "
    "the customer); amount due rounding = amount due − (total − credits applied)"
)
ROUNDING_RULE_CREDITS_TO_CENTS = (
    "total = subtotal rounded once to 0.01 USD, half up (ROUND_HALF_UP: 0.125 → 0.13); "
    "lines and subtotal at full precision; amount due = total − prepaid credits applied "
    "rounded to 0.01 USD the same way"
)
"""The rule of invoices issued before 2026-11-30: the credits were rounded to the cent on
the forms (a 5.005 grant applied showed 5.01) and the amount due clamped at zero. Kept so
those invoices still verify under the rule they state."""


def invoice_number(year: int, seq: int, kind: str = INVOICE) -> str:
    """``LUC-2026-000042`` (``LUC-CN-2026-000042`` for a credit note): the year of issue and
    the gap-free sequence of that kind within it."""
    return f"{SERIES_PREFIX[kind]}-{year}-{seq:06d}"


def parse_number(number: str) -> tuple[str, int, int] | None:
    """``LUC-CN-2026-000042`` → (``credit_note``, 2026, 42); None when it is no number."""
    match = _NUMBER.fullmatch(number)
    if match is None:
        return None
    prefix, year, seq = match.groups()
    kind = next(k for k, p in SERIES_PREFIX.items() if p == prefix)
    return kind, int(year), int(seq)


def kind_of(total: Decimal) -> str:
    """A negative total is a credit note: it owes the customer."""
    return CREDIT_NOTE if total < 0 else INVOICE


def due_date(issued_at: datetime, payment_terms_days: int) -> date:
    """The UTC date of issue plus the payment terms."""
    return issued_at.astimezone(UTC).date() + timedelta(days=payment_terms_days)


def round_total(subtotal: Decimal) -> Decimal:
    """The invoice total: ``subtotal`` rounded once to cents, half up (``ROUNDING_RULE``)."""
    total = quantize_half_up(subtotal, CENT)
    return total if total != 0 else Decimal("0.00")  # never "-0.00"


def amount_due(subtotal: Decimal, credits_applied: Decimal) -> Decimal:
    """What is settled in money: the exact subtotal less the exact credits applied, rounded
    once to the cent (``ROUNDING_RULE``). Signed, never clamped: an invoice whose entries
    drew more credits than its total (a price fall paid in money beside new usage paid in
    credits) owes the customer the difference, and a credit note whose entries gave back
    more credits than its total owes LUC the difference; a clamp would drop that money
    from every document and every balance."""
    return round_total(exact_difference(subtotal, credits_applied))


def amount_due_rounding(total: Decimal, credits_applied: Decimal, due: Decimal) -> Decimal:
    """The step from total − credits applied (exact) to the amount due (cents): what makes
    the printed column add up with the credits shown at every digit."""
    return exact_difference(due, exact_difference(total, credits_applied))


def legacy_amount_due(total: Decimal, credits_applied: Decimal) -> Decimal:
    """The amount due under ``ROUNDING_RULE_CREDITS_TO_CENTS`` (invoices issued before
    ``ROUNDING_RULE``): the total less the credits rounded to the cent, clamped at zero."""
    due = exact_difference(total, round_total(credits_applied))
    zero = Decimal("0.00")
    return max(due, zero) if kind_of(total) == INVOICE else min(due, zero)


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftLine(TokenCounts):
    """Covered entries of one agent × model × provider × catalog version × rate (one unit
    price), with their sum of each token class."""

    agent: str
    model: str
    model_name: str | None
    provider: str
    catalog_version: int | None
    """None on a ``minimum`` line, which is no usage, and on a line of events no catalog
    version prices that their customer's plan does (its own price for the model, or an
    ``actual`` basis and the providers' reported cost)."""
    long_context_from: int | None
    """The rate of the unit prices (``pricing.models.Rate``); None: the base prices."""
    tier: str | None
    events: int
    unit_prices: dict[str, Decimal | None]
    """The catalog's (or, ``invoices.pricing``, the plan's own); None each on a line of
    events no catalog version prices and no plan's own price explains."""
    amount_usd: Decimal
    """What the line bills: the customer's price of its entries (``price_usd``), which is
    their catalog cost when no plan priced them."""
    cost_usd: Decimal | None
    """Internal, never on the customer's forms: the catalog cost of its entries; None on a
    line of events no catalog version prices."""
    provider_cost_usd: Decimal | None
    """Internal, never on the customer's forms: what the providers reported its entries
    cost, summed over those that reported one; None when none did."""
    actual_cost_usd: Decimal | None
    """Internal, never on the customer's forms: what the calls actually cost (each entry's
    provider cost where reported, else its catalog cost). Known on every line of priced
    entries; None on a line of events no catalog version prices whose providers reported
    no cost (a plan's own price billed them)."""
    job_id: str | None = None
    """The line's job: on a monthly invoice, whose lines are of several jobs."""
    plan_id: str | None = None
    plan_version: int | None = None
    """The plan version that priced the line's entries; None: no plan, price = cost."""
    plan_long_context_from: int | None = None
    """The rate of the plan version's own price for the model that priced the line's
    entries (the threshold of its long-context entry they reach), which need not be the
    catalog's: part of the line's key. None: its base prices, or no own price."""
    pricing: dict[str, str] | None = None
    """How the plan made the amount from the usage, for the reader to recompute it
    (``invoices.pricing``); None without a plan."""
    line_type: str = "usage"
    """``usage``, or ``minimum``: the plan's monthly minimum topping a month up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BillTo:
    """The customer an invoice is addressed to, as it was when the invoice was issued."""

    id: str | None
    """The registered customer's id; None for a name given only as the job's free-text
    ``customer``."""
    name: str
    address: str | None = None
    tax_id: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """What an invoice of a job, or of a customer's UTC month, would hold now: the entries
    no earlier invoice covers."""

    job: JobInfo | None
    """None on a monthly invoice (its lines name their jobs)."""
    entry_ids: list[int]
    lines: list[DraftLine]
    unpriced_events: int
    """Events still unpriced for their customer (no catalog version prices them, and no
    plan does): not billed; a follow-up bills them once a catalog version prices them.
    Events only the catalog cannot price are billed at their plan's price, not counted."""
    period_start: datetime | None
    period_end: datetime | None
    earlier: list[str]
    """Numbers of the job's (or the month's) issued invoices and credit notes, in issue
    order."""
    bill_to: BillTo | None = None
    """Who the invoice is addressed to (the job's customer), as of now."""
    not_billed: list[DraftLine] = field(default_factory=list)
    """Covered usage that is no LLM call (stub answers, at zero): listed apart, never a
    billed line, so the invoice says what it left out and why."""
    credits_drawn: Decimal = Decimal(0)
    """The prepaid credits the covered entries drew, net of what they gave back
    (``customers.credits.credits_applied``), exactly."""
    month: date | None = None
    """The first day of the UTC month a monthly invoice covers; None for a job's."""
    minimum_note: str | None = None
    """How the ``minimum`` line was found (plan, version, minimum, month's total)."""
    billed_elsewhere: list[str] = field(default_factory=list)
    """When a job's draft covers nothing: the customer's monthly invoices that billed the
    job's usage, so that a refusal can say where it went."""
    follows: str | None = None
    """With no ``earlier`` invoice: the document of the other route (a month's for a job,
    a job's for a month) that billed calls this draft re-books (re-rating, re-pricing), so
    that the draft is its follow-up (``queries.SELECT_FOLLOWED_INVOICE``)."""

    @property
    def subject(self) -> str:
        """What the invoice is of, in a sentence: ``job 'j1'`` or ``customer 'acme' for
        2026-11``."""
        if self.job is not None:
            return f"job {self.job.job_id!r}"
        assert self.month is not None and self.bill_to is not None
        return f"customer {self.bill_to.id!r} for {self.month:%Y-%m}"

    @property
    def subtotal(self) -> Decimal:
        return exact_sum(line.amount_usd for line in self.lines)

    @property
    def total(self) -> Decimal:
        return round_total(self.subtotal)

    @property
    def kind(self) -> str:
        return kind_of(self.total)

    @property
    def credits_applied(self) -> Decimal:
        """Prepaid credits drawn by exactly the entries this invoice bills (negative on a
        credit note whose entries gave credit back), at full precision."""
        return self.credits_drawn

    @property
    def amount_due(self) -> Decimal:
        """What is settled in money (``amount_due``): positive, the customer pays;
        negative, LUC owes the customer."""
        return amount_due(self.subtotal, self.credits_applied)

    @property
    def amount_due_rounding(self) -> Decimal:
        return amount_due_rounding(self.total, self.credits_applied, self.amount_due)

    @property
    def follow_up_of(self) -> str | None:
        return self.earlier[-1] if self.earlier else self.follows

    @property
    def rounds_to_zero(self) -> bool:
        """A follow-up that settles nothing: its total and its amount due are 0.00 at the
        cent, though it bills something (entries, or a change of the month's minimum). It
        is not issued (a number would be spent on nothing to pay or to pay back); what it
        bills carries forward to the next follow-up. One whose amount due is not zero is
        issued whatever its total: credits drawn by usage that a minimum already paid for
        are money owed back."""
        return (
            self.follow_up_of is not None
            and bool(self.entry_ids or self.lines)
            and self.total == 0
            and self.amount_due == 0
        )


@dataclass(frozen=True, slots=True)
class Invoice:
    """An issued invoice: its canonical document (the digest covers it) and the digest."""

    number: str
    kind: str
    job_id: str | None
    """None on a customer's monthly invoice."""
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
    kind: str
    job_id: str | None
    customer_id: str | None
    month: date | None
    """The first day of the UTC month a monthly invoice covers; None for a job's."""
    issued_at: datetime
    due_date: date | None
    subtotal_usd: Decimal
    rounding_usd: Decimal
    total_usd: Decimal
    covered_entries: int
    unpriced_events: int
    follow_up_of: str | None
    corrects: str | None
    digest: str
    credits_applied_usd: str | None
    """The prepaid credits applied, in the issued document's own words; None on an invoice
    issued before invoices applied credits (none were)."""
    amount_due_usd: str | None
    """What is settled in money, as the issued document writes it; None on an invoice
    issued before invoices applied credits (its total was due)."""


@dataclass(frozen=True, slots=True)
class InternalLine:
    """What an issued line cost LUC, beside what it bills: never on the customer's forms."""

    cost_usd: Decimal | None
    """None on a line of events no catalog version prices."""
    provider_cost_usd: Decimal | None
    """None where no entry of the line reported one (and on lines issued before LUC kept
    it)."""
    actual_cost_usd: Decimal | None
    """None on lines issued before actual costs were recorded, and where unknown (a line
    of events no catalog version prices whose providers reported no cost)."""
    margin_usd: Decimal | None
    """The line's amount less its actual cost, once invoices bill the customer's price;
    None while they bill the catalog cost (there is no margin to show)."""


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking an invoice against its digest."""

    number: str | None
    ok: bool
    problems: list[str]
