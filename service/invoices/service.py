"""Invoice preview and issue, reading issued invoices (checking them: ``invoices.verify``).

An issued invoice is a snapshot: its canonical JSON and digest are stored in the issuing
transaction beside its lines and the ledger entries it covers, and the database refuses
to change any of them. The issuer (settings) and the customer billed (the job's customer)
are copied into it as they are at issue. Usage recorded later is covered by the job's next
(follow-up) invoice; an entry is covered by at most one invoice. A follow-up whose total is
negative is a credit note; one that is 0.00 at the cent is not issued, its entries carry
forward.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC
from decimal import Decimal
from typing import Any

import asyncpg

from service.customers.credits import credits_applied
from service.customers.plans import load_plans
from service.customers.service import get_customer
from service.db import Connection, from_row
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.invoices import queries
from service.invoices.models import (
    CREDIT_NOTE,
    CURRENCY,
    ROUNDING_RULE,
    BillTo,
    Draft,
    DraftLine,
    InternalLine,
    Invoice,
    InvoiceSummary,
    due_date,
    invoice_number,
    parse_number,
)
from service.invoices.pricing import OWN_PRICES, priced_by_plan
from service.invoices.render import (
    bill_to_of_document,
    canonical_json,
    invoice_document,
    sha256_hex,
)
from service.jobs.models import JobInfo
from service.jobs.service import get_job, lock_job
from service.locks import lock_repricing
from service.money import exact_difference, exact_sum
from service.pricing.catalog import STUB_PROVIDER
from service.pricing.models import PRICE_CLASSES
from service.settings import IssuerSettings
from service.tokens import TOKEN_FIELDS, counts_from_row
from service.wire import cents_text, money_text

# Drafting ----------------------------------------------------------------------------------


def _line(r: asyncpg.Record) -> DraftLine:
    return from_row(
        DraftLine,
        r,
        events=int(r["events"]),
        **counts_from_row(r),  # sums: NUMERIC
        unit_prices={k: r[f"price_{k}"] for k in PRICE_CLASSES},
        pricing=None,
        line_type="usage",
    )


async def draft_lines(conn: Connection, ids: list[int], *, name_jobs: bool) -> list[DraftLine]:
    """The lines of the entries ``ids``, each with the unit prices and plan terms that
    explain its amount; lines whose entries cancel out left out. ``name_jobs``: each line
    names its job (a monthly invoice's); a job's invoice names the job once."""
    if not ids:
        return []
    lines = [_line(r) for r in await conn.fetch(queries.SELECT_DRAFT_LINES, ids)]
    versions = (
        {v.id: v for plan in (await load_plans(conn)).values() for v in plan.versions}
        if any(line.plan_version is not None for line in lines)
        else {}
    )
    priced = [
        priced_by_plan(
            line if name_jobs else dataclasses.replace(line, job_id=None),
            None if line.plan_version is None else versions.get(line.plan_version),
        )
        for line in lines
        if not _is_empty(line)
    ]
    return [line for line in _merged_own_prices(priced) if not _is_empty(line)]


def _merged_own_prices(lines: list[DraftLine]) -> list[DraftLine]:
    """``lines`` with those at the same rate of a plan's own price made one: the query keys
    lines by the catalog's rate too (``queries.SELECT_DRAFT_LINES``), which the plan's own
    price does not follow, and two lines alike in everything the invoice shows would say
    the same twice. Their catalog and actual costs (internal) add up."""
    merged: dict[tuple[Any, ...], DraftLine] = {}
    for line in lines:
        if line.pricing is None or line.pricing.get("method") != OWN_PRICES:
            merged[(id(line),)] = line
            continue
        key = (
            line.job_id,
            line.agent,
            line.model,
            line.provider,
            line.catalog_version,
            line.long_context_from,
            line.plan_version,
            tuple(line.unit_prices.items()),
        )
        first = merged.get(key)
        merged[key] = line if first is None else _sum_lines(first, line)
    return list(merged.values())


def _sum_lines(a: DraftLine, b: DraftLine) -> DraftLine:
    def known(x: Decimal | None, y: Decimal | None) -> Decimal | None:
        return y if x is None else x if y is None else exact_sum((x, y))

    return dataclasses.replace(
        a,
        events=a.events + b.events,
        **{k: getattr(a, k) + getattr(b, k) for k in TOKEN_FIELDS},
        amount_usd=exact_sum((a.amount_usd, b.amount_usd)),
        cost_usd=known(a.cost_usd, b.cost_usd),
        provider_cost_usd=known(a.provider_cost_usd, b.provider_cost_usd),
        actual_cost_usd=known(a.actual_cost_usd, b.actual_cost_usd),
    )


def not_billed(line: DraftLine) -> bool:
    """Stub answers priced at zero (``PriceQuote.for_provider``). A stub line carrying money
    (the reversal of a stub answer booked at the catalog's price before stub answers were
    priced at zero) stays a billed line: it credits what an earlier invoice charged."""
    return (
        line.provider == STUB_PROVIDER
        and line.amount_usd == 0
        and not any(line.unit_prices.values())
    )


def _is_empty(line: DraftLine) -> bool:
    """A line whose entries cancel out (a charge and its reversal on the same invoice)."""
    return (
        line.events == 0
        and line.amount_usd == 0
        and all(getattr(line, k) == 0 for k in TOKEN_FIELDS)
    )


async def bill_to(conn: Connection, job: JobInfo) -> BillTo | None:
    """Who the job's invoice is addressed to: its registered customer (name, address, tax
    id as they are now); a customer an event named but nobody registered yet, by the job's
    free-text ``customer`` or else its id; without a customer, the free text alone."""
    if job.customer_id is not None:
        try:
            customer = await get_customer(conn, job.customer_id)
        except NotFoundError:
            return BillTo(id=job.customer_id, name=job.customer or job.customer_id)
        return BillTo(
            id=customer.id, name=customer.name, address=customer.address, tax_id=customer.tax_id
        )
    if job.customer is not None:
        return BillTo(id=None, name=job.customer)
    return None


async def _draft(conn: Connection, job: JobInfo) -> Draft:
    """The job's next invoice. Entries are billed to the customer they were priced for: a
    job whose customer changed holds the re-pricing reversals of its former customer's
    entries, which are owed to (or by) that customer, never netted against the new one's
    charges on the new one's invoice. So while entries priced for a former customer are
    unbilled, the job's next document is that customer's (former customers in id order);
    then, when entries priced for no customer (before the job had one) were billed already,
    the rest of those (the reversals of what was billed) go to whoever they were billed to;
    then the current customer's. A former billee's part that comes to 0.00 at the cent (a
    charge never invoiced and its reversal) is no document of its own: it goes with the
    current one's, as do the entries priced for no customer when none was billed."""
    rows = await conn.fetch(queries.SELECT_UNINVOICED_ENTRY_IDS, job.job_id)
    former: dict[str, list[int]] = {}
    no_customer: list[int] = []
    current: list[int] = []
    for r in rows:
        if r["customer_id"] == job.customer_id:
            current.append(r["id"])
        elif r["customer_id"] is None:
            no_customer.append(r["id"])
        else:
            former.setdefault(r["customer_id"], []).append(r["id"])
    parts: list[tuple[BillTo | None, list[int]]] = [
        (await _former_customer(conn, customer_id), former[customer_id])
        for customer_id in sorted(former)
    ]
    if no_customer:
        billed, never_billed = await _no_customer_billees(conn, no_customer)
        parts += billed
        current += never_billed
    for billee, ids in parts:
        draft = await _draft_of(conn, job, ids, billee, former=True)
        if draft.total != 0:
            return draft
        current += ids
    return await _draft_of(conn, job, sorted(current), await bill_to(conn, job), former=False)


async def _no_customer_billees(
    conn: Connection, ids: list[int]
) -> tuple[list[tuple[BillTo | None, list[int]]], list[int]]:
    """The entries ``ids`` (priced for no customer) by the party of the invoice that billed
    their event, in the order those invoices were issued: each party is credited what it
    paid. Second, the entries whose event was never billed (they go with the current
    customer's)."""
    by_invoice: dict[str, tuple[BillTo | None, list[int]]] = {}
    never_billed: list[int] = []
    for r in await conn.fetch(queries.SELECT_NO_CUSTOMER_BILLED_IN, ids):
        if r["billed_in"] is None:
            never_billed.append(r["id"])
            continue
        if r["billed_in"] not in by_invoice:
            by_invoice[r["billed_in"]] = (bill_to_of_document(r["billed_to"]), [])
        by_invoice[r["billed_in"]][1].append(r["id"])
    return list(by_invoice.values()), never_billed


async def _former_customer(conn: Connection, customer_id: str) -> BillTo:
    try:
        customer = await get_customer(conn, customer_id)
    except NotFoundError:
        return BillTo(id=customer_id, name=customer_id)
    return BillTo(
        id=customer.id, name=customer.name, address=customer.address, tax_id=customer.tax_id
    )


async def _draft_of(
    conn: Connection, job: JobInfo, ids: list[int], billed: BillTo | None, *, former: bool
) -> Draft:
    """The draft of the job's entries ``ids``, addressed to ``billed``: the job's current
    customer, or (``former``) whoever entries priced before the job's customer was set or
    changed were billed to."""
    lines = await draft_lines(conn, ids, name_jobs=False)
    period = await conn.fetchrow(queries.SELECT_PERIOD, ids) if ids else None
    earlier = [
        r["number"] for r in await conn.fetch(queries.SELECT_JOB_INVOICE_NUMBERS, job.job_id)
    ]
    return Draft(
        job=job,
        entry_ids=ids,
        lines=[line for line in lines if not not_billed(line)],
        not_billed=[line for line in lines if not_billed(line)],
        # Unpriced events are billed, once priced, to the job's customer: not a former one.
        unpriced_events=0
        if former
        else int(await conn.fetchval(queries.COUNT_UNPRICED_EVENTS, job.job_id)),
        period_start=period["period_start"] if period else None,
        period_end=period["period_end"] if period else None,
        earlier=earlier,
        follows=await followed(conn, ids, earlier),
        bill_to=billed,
        # The credits its entries drew: committed with them, so this is exactly theirs.
        credits_drawn=await credits_applied(conn, ids),
        # Only a refusal says it (``_nothing_new``): read only when there is nothing new.
        billed_elsewhere=[]
        if ids
        else [
            r["number"] for r in await conn.fetch(queries.SELECT_JOB_BILLED_ELSEWHERE, job.job_id)
        ],
    )


async def followed(conn: Connection, ids: list[int], earlier: list[str]) -> str | None:
    """``Draft.follows``: looked for only when the draft has no invoice of its own before."""
    if earlier or not ids:
        return None
    found = await conn.fetchval(queries.SELECT_FOLLOWED_INVOICE, ids)
    return None if found is None else str(found)


async def _require_usage(conn: Connection, job_id: str) -> None:
    if not await conn.fetchval(queries.JOB_HAS_USAGE, job_id):
        raise NotFoundError(f"job {job_id!r} has no recorded usage")


async def preview_invoice(conn: Connection, job_id: str) -> Draft:
    """What ``issue_invoice`` would issue now: the entries no earlier invoice covers."""
    await _require_usage(conn, job_id)
    return await _draft(conn, await get_job(conn, job_id))


def _nothing_new(draft: Draft) -> str:
    message = f"nothing new to invoice for {draft.subject}: "
    if draft.not_billed and not draft.lines:
        n = sum(line.events for line in draft.not_billed)
        message += (
            f"its new usage is {n} stub answer{'s' if n != 1 else ''} (no LLM was called), "
            "which is never billed; it is listed as not billed on the job's next invoice"
        )
    elif draft.earlier:
        message += (
            f"every ledger entry is already on {', '.join(draft.earlier)}; usage recorded "
            "from now on goes on a follow-up invoice"
        )
    elif draft.billed_elsewhere:
        several = len(draft.billed_elsewhere) > 1
        message += (
            f"every ledger entry is already on {', '.join(draft.billed_elsewhere)}, the "
            f"customer's monthly invoice{'s' if several else ''}; usage billed on an invoice is "
            "never billed again"
        )
    elif draft.month is not None:
        message += (
            "it has no priced usage not yet billed (usage billed on a job's invoice is never "
            "billed again)"
        )
    else:
        message += "it has no priced usage yet"
    if draft.unpriced_events:
        message += (
            f" ({draft.unpriced_events} unpriced events wait for a catalog version that "
            "prices them)"
        )
    return message


def carried_forward(draft: Draft) -> str:
    """Why a follow-up that rounds to zero is not issued (``Draft.rounds_to_zero``)."""
    n = len(draft.entry_ids)
    if not n:
        return (
            f"not issued: the month's minimum for {draft.subject} changed by "
            f"{money_text(draft.subtotal)} USD since {draft.follow_up_of}, which is "
            f"{cents_text(draft.total)} at the cent, so no invoice or credit note is issued and "
            "no number is spent; the change carries forward to the month's next follow-up"
        )
    return (
        f"not issued: the new usage of {draft.subject} since {draft.follow_up_of} "
        f"comes to {money_text(draft.subtotal)} USD, which is {cents_text(draft.total)} at "
        f"the cent, so no invoice or credit note is issued and no number is spent; its {n} "
        f"ledger {'entries stay' if n != 1 else 'entry stays'} unbilled and carr"
        f"{'y' if n != 1 else 'ies'} forward to the {'job' if draft.job else 'month'}'s next "
        "follow-up"
    )


def refusal(draft: Draft) -> str | None:
    """Why issuing ``draft`` now would be refused (409), or None when it would be issued."""
    # Stub answers alone are nothing to bill: no number is spent on them; they wait,
    # listed as not billed, for the job's next invoice.
    if not draft.entry_ids or (draft.not_billed and not draft.lines):
        return _nothing_new(draft)
    if draft.rounds_to_zero:
        return carried_forward(draft)
    return None


# Issuing -----------------------------------------------------------------------------------


async def issue_invoice(conn: Connection, job_id: str, issuer: IssuerSettings) -> Invoice:
    """Issue the job's next invoice, covering every entry no earlier invoice covers, with
    ``issuer`` and the job's customer copied in as they are now.

    A negative total makes it a credit note (``LUC-CN-…``) naming the invoice it corrects.
    Refused (``ConflictError``) when there is nothing new, or when a follow-up comes to
    0.00 at the cent (its entries carry forward). Numbers are gap-free per kind and year:
    the counter row is incremented in this transaction.
    """
    async with conn.transaction():
        # Re-pricing waits until this invoice is issued (ingest does not), so the entries
        # it covers and the unpriced events it names are one consistent picture.
        await lock_repricing(conn, shared=True)
        await _require_usage(conn, job_id)
        job = await lock_job(conn, job_id)
        draft = await _draft(conn, job)
        reason = refusal(draft)
        if reason is not None:
            raise ConflictError(reason)
        return await store_invoice(conn, draft, issuer)


async def store_invoice(conn: Connection, draft: Draft, issuer: IssuerSettings) -> Invoice:
    """Number ``draft`` and store it with its lines and the entries it covers, in the
    caller's transaction (which holds the locks that make the draft current)."""
    job_id = None if draft.job is None else draft.job.job_id
    kind = draft.kind
    corrects = await corrected_by(conn, draft)
    # The counters' lock first, then one instant for both the number's year and
    # ``issued_at``: an issue that waited on the lock across New Year's midnight is numbered
    # and dated in the new year (a year read before the wait, at the transaction's start,
    # numbered it in the old one and dated it in the new). Taken after the lock, issue
    # times also follow number order.
    await conn.execute(queries.LOCK_COUNTERS)
    issued_at = await conn.fetchval("SELECT clock_timestamp()")
    year = issued_at.astimezone(UTC).year
    seq = await conn.fetchval(queries.NEXT_NUMBER, kind, year)
    number = invoice_number(year, seq, kind)
    document = invoice_document(draft, issuer, number, issued_at, corrects=corrects)
    canonical = canonical_json(document)
    digest = sha256_hex(canonical)
    subtotal, total = draft.subtotal, draft.total
    if issuer.logo is not None:
        await conn.execute(
            queries.INSERT_LOGO,
            hashlib.sha256(issuer.logo.data).hexdigest(),
            issuer.logo.media_type,
            issuer.logo.data,
        )
    await conn.execute(
        queries.INSERT_INVOICE,
        number,
        kind,
        year,
        seq,
        job_id,
        None if draft.bill_to is None else draft.bill_to.id,
        issued_at,
        due_date(issued_at, issuer.payment_terms_days),
        CURRENCY,
        subtotal,
        ROUNDING_RULE,
        exact_difference(total, subtotal),
        total,
        len(draft.entry_ids),
        draft.unpriced_events,
        draft.follow_up_of,
        corrects,
        canonical,
        digest,
        draft.month,
    )
    await _insert_lines(conn, number, draft.lines)
    try:
        await conn.execute(queries.INSERT_ENTRIES, number, draft.entry_ids)
    except asyncpg.UniqueViolationError:
        # A job's invoice and its customer's monthly invoice lock different things (the
        # job's row, the customer's month), so both can draft the same entries at once; the
        # one that commits second meets the other's entries here. Its transaction rolls
        # back whole (number included: the series keeps no gap).
        raise ConflictError(
            f"not issued: an invoice issued at the same moment covers some of the entries "
            f"of {draft.subject}; issue again to bill what it left"
        ) from None
    return Invoice(number, kind, job_id, issued_at, total, document, canonical, digest)


async def corrected_by(conn: Connection, draft: Draft) -> str | None:
    """The invoice ``draft`` corrects when it is a credit note (issued or previewed: a
    preview is what issuing would issue, its ``corrects`` included), else None."""
    return await _corrected(conn, draft) if draft.kind == CREDIT_NOTE else None


async def _corrected(conn: Connection, draft: Draft) -> str | None:
    """The invoice a credit note corrects: the latest that billed an event it re-books,
    else the job's latest invoice."""
    found = await conn.fetchval(queries.SELECT_CORRECTED_INVOICE, draft.entry_ids)
    if found is None and draft.job is not None:
        found = await conn.fetchval(queries.SELECT_LATEST_JOB_INVOICE, draft.job.job_id)
    elif found is None and draft.bill_to is not None:
        found = await conn.fetchval(
            queries.SELECT_LATEST_MONTH_INVOICE, draft.bill_to.id, draft.month
        )
    return None if found is None else str(found)


async def _insert_lines(conn: Connection, number: str, lines: list[DraftLine]) -> None:
    if not lines:
        return
    columns: list[list[Any]] = [
        list(range(1, len(lines) + 1)),
        [x.agent for x in lines],
        [x.model for x in lines],
        [x.provider for x in lines],
        [x.catalog_version for x in lines],
        [x.long_context_from for x in lines],
        [x.tier for x in lines],
        [x.events for x in lines],
        *([getattr(x, k) for x in lines] for k in TOKEN_FIELDS),
        *([x.unit_prices[k] for x in lines] for k in PRICE_CLASSES),
        [x.amount_usd for x in lines],
        [x.cost_usd for x in lines],
        [x.actual_cost_usd for x in lines],
        [x.line_type for x in lines],
        [x.job_id for x in lines],
        [x.plan_id for x in lines],
        [x.plan_version for x in lines],
        [x.provider_cost_usd for x in lines],
    ]
    await conn.execute(queries.INSERT_LINES, number, *columns)


# Reading -----------------------------------------------------------------------------------


def _invoice(row: asyncpg.Record) -> Invoice:
    return from_row(Invoice, row, document=json.loads(row["canonical"]))


async def get_invoice(conn: Connection, number: str) -> Invoice:
    row = await conn.fetchrow(queries.SELECT_INVOICE, number)
    if row is None:
        raise NotFoundError(f"invoice {number!r} does not exist")
    return _invoice(row)


def check_number(number: str) -> str:
    """``number`` when it is an invoice or credit note number, else a 400."""
    if parse_number(number) is None:
        raise InvalidRequestError(
            f"{number!r} is not an invoice number (LUC-YYYY-NNNNNN or LUC-CN-YYYY-NNNNNN)",
            status_code=400,
        )
    return number


async def list_invoices(
    conn: Connection, job_id: str | None, after: str | None, limit: int
) -> list[InvoiceSummary]:
    """Issued invoices and credit notes in issue order, optionally of one job, after the
    number ``after``."""
    if after is not None:
        check_number(after)
        if not await conn.fetchval(queries.INVOICE_EXISTS, after):
            raise InvalidRequestError(f"cursor: invoice {after!r} does not exist", status_code=400)
    rows = await conn.fetch(queries.SELECT_INVOICES, job_id, after, limit)
    return [from_row(InvoiceSummary, r) for r in rows]


async def internal_lines(conn: Connection, number: str) -> list[InternalLine]:
    """What each line of an issued invoice cost, in the order of its lines."""
    rows = await conn.fetch(queries.SELECT_INTERNAL_LINES, number)
    # Lines issued before invoices billed the price (no line_type) billed the catalog cost:
    # they have no margin to show.
    return [
        InternalLine(
            r["cost_usd"],
            r["provider_cost_usd"],
            r["actual_cost_usd"],
            None
            if r["line_type"] is None or r["actual_cost_usd"] is None
            else exact_difference(r["amount_usd"], r["actual_cost_usd"]),
        )
        for r in rows
    ]


async def internal_view(conn: Connection, number: str) -> dict[str, Any]:
    """An issued invoice for finance: its document with what each line cost."""
    invoice = await get_invoice(conn, number)
    return with_costs(invoice.document, await internal_lines(conn, number))


def with_costs(document: dict[str, Any], lines: list[InternalLine]) -> dict[str, Any]:
    """The document with each line's cost, providers' reported cost, actual cost and
    margin, and their totals: for finance, never sent to the customer. No digest: it is
    not the issued document."""

    def text(value: Decimal | None) -> str | None:
        return None if value is None else money_text(value)

    def total(values: list[Decimal | None]) -> str | None:
        return None if any(v is None for v in values) else text(exact_sum(v for v in values if v))

    def reported(values: list[Decimal | None]) -> str | None:
        # Summed over the lines that have one, as over the entries of a line.
        known = [v for v in values if v is not None]
        return text(exact_sum(known)) if known else None

    return {
        **document,
        "view": "internal",
        "lines": [
            {
                **line,
                "cost_usd": text(x.cost_usd),
                "provider_cost_usd": text(x.provider_cost_usd),
                "actual_cost_usd": text(x.actual_cost_usd),
                "margin_usd": text(x.margin_usd),
            }
            for line, x in zip(document["lines"], lines, strict=True)
        ],
        "cost_usd": total([x.cost_usd for x in lines]),
        "provider_cost_usd": reported([x.provider_cost_usd for x in lines]),
        "actual_cost_usd": total([x.actual_cost_usd for x in lines]),
        "margin_usd": total([x.margin_usd for x in lines]),
    }


async def logo_of(conn: Connection, invoice: Invoice) -> tuple[str, bytes] | None:
    """The logo an invoice was issued with: (media type, bytes); None without one."""
    logo = (invoice.document.get("issuer") or {}).get("logo")
    if logo is None:
        return None
    row = await conn.fetchrow(queries.SELECT_LOGO, logo["sha256"])
    return None if row is None else (row["media_type"], bytes(row["data"]))
