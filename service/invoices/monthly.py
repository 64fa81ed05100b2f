"""A customer's monthly invoice (SPEC §11): one per customer and UTC month, covering the
month's entries (by ``occurred_at``) of its jobs that no invoice billed yet, in lines per
job × agent × model, and the plan's ``minimum_monthly_usd`` as a ``minimum`` line.

Choices made here, where the contract is silent:

- Only a month that has ended is issued (409 before): a monthly invoice says what the
  month came to, and its minimum is only known once the month is whole. The preview
  shows a month in progress.
- A customer invoiced ``per_job`` is refused (409): its jobs are invoiced one by one, and
  a month's minimum is no term of its contract. PATCH its ``invoicing`` to ``monthly``.
  A month invoiced while it was ``monthly`` keeps its follow-ups, for the minimum alone:
  late usage, billed on its jobs' invoices, gives back part of a top-up as it is billed
  (usage not billed yet counts once it is; the stub's answers, never billed, never do).
- A second issue for the same month is a follow-up of the month's invoice, as a job's
  is (late usage, re-pricing): a credit note when negative, not issued when 0.00.
- A month that was over before the customer was registered owes no minimum unless the
  customer has usage in it: a registration after its usage was recorded (a backfill)
  still owes the month's minimum; one with nothing then owes nothing for months it was
  no customer. The month of registration owes the whole minimum (no proration).
- The minimum is the plan version in force at the month's first instant (the customer's
  plan, else ``LUC_DEFAULT_PLAN``'s): terms agreed during a month apply from the next.
  Its line tops what the month's invoices billed, this one included, up to the minimum,
  less the top-ups the month's earlier invoices already billed: a follow-up with late
  usage gives back part of the top-up, so the month always comes to at least the minimum
  and never more than its usage or the minimum (exactly: each document rounds its own
  total, so a month billed partly on a job's invoice may come to a cent more at the cent).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

from service.customers.credits import credits_applied
from service.customers.models import Customer
from service.customers.plans import load_plans
from service.customers.service import get_customer
from service.db import Connection
from service.errors import ConflictError, InvalidRequestError
from service.invoices import queries
from service.invoices.forms import price_text
from service.invoices.models import BillTo, Draft, DraftLine, Invoice
from service.invoices.service import (
    carried_forward,
    draft_lines,
    followed,
    not_billed,
    refusal,
    store_invoice,
)
from service.locks import lock_month_invoice, lock_repricing
from service.money import exact_difference, exact_sum
from service.pricing.models import PRICE_CLASSES
from service.pricing.plans import plan_in_force
from service.settings import IssuerSettings
from service.wire import money_text

# [0-9], not \d: \d matches every script's digits, and int() reads them. A year of more
# than four digits is well formed, and out of range.
_MONTH = re.compile(r"([0-9]{4,})-([0-9]{2})")
FIRST_MONTH = (1970, 1)
LAST_MONTH = (9999, 11)
"""The months LUC invoices: from January 1970 to November 9999 (December 9999 ends at an
instant of year 10000, past what a date holds)."""
_MONTH_MAX_CHARS = 32  # longer is refused unread (and quoted cut): int() of it costs
MONTH_RANGE = f"{FIRST_MONTH[0]}-{FIRST_MONTH[1]:02d} to {LAST_MONTH[0]}-{LAST_MONTH[1]:02d}"


def parse_month(text: str) -> date:
    """``2026-11`` → 2026-11-01, or a 400 naming ``month``, the same on every route and
    command that takes one: "is not a month (YYYY-MM …)" for what is not written as one,
    "is out of range" naming the months taken (``MONTH_RANGE``) for one that is."""
    match = _MONTH.fullmatch(text) if len(text) <= _MONTH_MAX_CHARS else None
    shown = repr(text) if len(text) <= _MONTH_MAX_CHARS else f"{text[:_MONTH_MAX_CHARS]!r}…"
    if match is None:
        raise InvalidRequestError(
            f"month: {shown} is not a month (YYYY-MM, e.g. '2026-11')", status_code=400
        )
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        raise InvalidRequestError(
            f"month: {shown} is out of range: its month {match.group(2)} is not 01 to 12",
            status_code=400,
        )
    if not FIRST_MONTH <= (year, month) <= LAST_MONTH:
        raise InvalidRequestError(
            f"month: {shown} is out of range: LUC takes the months {MONTH_RANGE}",
            status_code=400,
        )
    return date(year, month, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's, UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    following = (
        datetime(month.year + 1, 1, 1, tzinfo=UTC)
        if month.month == 12
        else datetime(month.year, month.month + 1, 1, tzinfo=UTC)
    )
    return start, following


def _minimum_line(amount: Decimal, note: str) -> DraftLine:
    return DraftLine(
        agent="",
        model="minimum",
        model_name=note,
        provider="",
        catalog_version=None,
        long_context_from=None,
        tier=None,
        events=0,
        input_tokens=0,
        output_tokens=0,
        unit_prices=dict.fromkeys(PRICE_CLASSES, Decimal(0)),
        amount_usd=amount,
        cost_usd=Decimal(0),
        provider_cost_usd=None,
        actual_cost_usd=Decimal(0),
        line_type="minimum",
    )


async def _minimum(
    conn: Connection,
    customer: Customer,
    month: date,
    usage_usd: Decimal,
    default_plan: str | None,
    *,
    has_usage: bool,
) -> tuple[DraftLine | None, str | None]:
    """The month's ``minimum`` line for this invoice (None when it has none), and how it
    was found. ``has_usage``: the customer has entries in the month not billed yet, or
    invoices of it."""
    start, end = month_bounds(month)
    # The plan that prices the month's entries now, not the one the customer is on now: a
    # change of plan reaches past months through a re-pricing only (SPEC §11), as it
    # reaches their entries. The customer's plan for a month without entries of its own.
    latest = await conn.fetchrow(queries.SELECT_MONTH_PLAN, customer.id, start, end)
    plan_id = customer.plan_id if latest is None else latest["plan_id"]
    plan = plan_in_force(await load_plans(conn), plan_id, default_plan, start)
    billed = await conn.fetchrow(queries.SELECT_MONTH_BILLED, customer.id, start, end, month)
    assert billed is not None  # an aggregate without GROUP BY: always one row
    minimum = None if plan is None else plan.minimum_monthly_usd
    if (
        customer.created_at >= end
        and not has_usage
        # Its usage may all be billed already, on its jobs' own invoices.
        and not await conn.fetchval(queries.MONTH_HAS_ENTRIES, customer.id, start, end)
    ):
        # A month over before the customer was registered, without its usage: nothing
        # says it was a customer then, so no minimum is owed (a registration that comes
        # after usage already recorded for it still owes that month's minimum).
        minimum = None
    if minimum is None and not billed["minimum_usd"]:
        return None, None
    # A plan version without a minimum (one effective in the past, or a change of plan)
    # gives back what the month's earlier invoices topped up.
    month_usage = exact_sum([billed["usage_usd"], usage_usd])
    owed = max(Decimal(0), exact_difference(minimum or Decimal(0), month_usage))
    top_up = exact_difference(owed, billed["minimum_usd"])
    terms = (
        "no monthly minimum"
        if plan is None or minimum is None
        # Every digit the plan gives (0.999 is not 1.00: the line tops up to 0.999).
        else f"Monthly minimum {price_text(minimum)} USD (plan {plan.plan_id} "
        f"version {plan.id}, in force on {month:%Y-%m}-01)"
    )
    note = (
        f"{terms[0].upper()}{terms[1:]}; the month's usage billed comes to "
        f"{money_text(month_usage)} USD"
        + (
            f", and its earlier invoices billed {money_text(billed['minimum_usd'])} USD of minimum"
            if billed["minimum_usd"]
            else ""
        )
        + "."
    )
    if top_up == 0:
        return None, None
    return _minimum_line(top_up, note), note


async def draft_month(
    conn: Connection, customer_id: str, month: date, default_plan: str | None
) -> Draft:
    """What the customer's invoice for ``month`` would hold now."""
    customer = await get_customer(conn, customer_id)
    start, end = month_bounds(month)
    # A customer invoiced per job has its usage billed on its jobs' invoices: a month
    # invoiced while it was monthly keeps follow-ups for its minimum alone.
    ids = (
        []
        if customer.invoicing != "monthly"
        else [
            r["id"]
            for r in await conn.fetch(
                queries.SELECT_UNINVOICED_MONTH_ENTRY_IDS, customer_id, start, end
            )
        ]
    )
    lines = await draft_lines(conn, ids, name_jobs=True)
    period = await conn.fetchrow(queries.SELECT_PERIOD, ids) if ids else None
    not_billed = [line for line in lines if _stub(line)]
    billed = [line for line in lines if not _stub(line)]
    earlier = [
        r["number"]
        for r in await conn.fetch(queries.SELECT_MONTH_INVOICE_NUMBERS, customer_id, month)
    ]
    minimum, note = await _minimum(
        conn,
        customer,
        month,
        exact_sum(x.amount_usd for x in billed),
        default_plan,
        has_usage=bool(ids or earlier),
    )
    return Draft(
        job=None,
        entry_ids=ids,
        lines=billed + ([minimum] if minimum is not None else []),
        not_billed=not_billed,
        unpriced_events=int(
            await conn.fetchval(queries.COUNT_UNPRICED_MONTH_EVENTS, customer_id, start, end)
        ),
        period_start=period["period_start"] if period else None,
        period_end=period["period_end"] if period else None,
        earlier=earlier,
        follows=await followed(conn, ids, earlier),
        bill_to=BillTo(
            id=customer.id, name=customer.name, address=customer.address, tax_id=customer.tax_id
        ),
        month=month,
        minimum_note=note if minimum is not None else None,
        # The credits the month's entries drew: committed with them, so exactly theirs.
        credits_drawn=await credits_applied(conn, ids),
    )


def _stub(line: DraftLine) -> bool:
    return not_billed(line)


def month_refusal(draft: Draft, customer: Customer, now: datetime) -> str | None:
    """Why issuing the month's ``draft`` now would be refused, or None."""
    assert draft.month is not None
    if customer.invoicing != "monthly" and not draft.earlier:
        return (
            f"customer {customer.id!r} is invoiced per job: its jobs' invoices bill its "
            "usage one job at a time (PATCH its invoicing to monthly for one invoice a month)"
        )
    _, end = month_bounds(draft.month)
    if now < end:
        return (
            f"the month {draft.month:%Y-%m} has not ended (it ends {end:%Y-%m-%d} 00:00 UTC): "
            "a monthly invoice is issued once the month is whole; the preview shows it so far"
        )
    if draft.lines and not draft.entry_ids:  # no new usage: a change of the minimum alone
        return carried_forward(draft) if draft.rounds_to_zero else None
    return refusal(draft)


async def issue_month_invoice(
    conn: Connection,
    customer_id: str,
    month: date,
    issuer: IssuerSettings,
    default_plan: str | None,
) -> Invoice:
    """Issue the customer's invoice for ``month`` (the first, or a follow-up)."""
    async with conn.transaction():
        # As a job's invoice: re-pricing waits, so the month's entries are one picture.
        await lock_repricing(conn, shared=True)
        customer = await get_customer(conn, customer_id)
        # One issue of a customer's month at a time: the second sees the first's entries.
        await lock_month_invoice(conn, customer_id, f"{month:%Y-%m}")
        draft = await draft_month(conn, customer_id, month, default_plan)
        now = await conn.fetchval("SELECT clock_timestamp()")
        reason = month_refusal(draft, customer, now)
        if reason is not None:
            raise ConflictError(reason)
        return await store_invoice(conn, draft, issuer)
