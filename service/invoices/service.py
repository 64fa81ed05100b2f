"""Invoice preview and issue, reading and verifying issued invoices.

An issued invoice is a snapshot: its canonical JSON and digest are stored in the issuing
transaction beside its lines and the ledger entries it covers, and the database refuses
to change any of them. Usage recorded later is covered by the job's next (follow-up)
invoice; an entry is covered by at most one invoice.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import asyncpg

from service.db import Connection, from_row
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.invoices import queries
from service.invoices.models import (
    CURRENCY,
    ROUNDING_RULE,
    Draft,
    DraftLine,
    Invoice,
    InvoiceSummary,
    Verification,
    invoice_number,
    round_total,
)
from service.invoices.render import (
    canonical_json,
    digest_of,
    entries_digest,
    invoice_document,
    sha256_hex,
)
from service.jobs.models import JobInfo
from service.jobs.service import get_job, lock_job
from service.locks import lock_repricing
from service.money import exact_difference, exact_sum
from service.pricing.catalog import STUB_PROVIDER
from service.pricing.models import PRICE_CLASSES
from service.tokens import TOKEN_FIELDS, counts_from_row
from service.wire import parse_money

# Drafting ----------------------------------------------------------------------------------


def _line(r: asyncpg.Record) -> DraftLine:
    return from_row(
        DraftLine,
        r,
        events=int(r["events"]),
        **counts_from_row(r),  # sums: NUMERIC
        unit_prices={k: r[f"price_{k}"] for k in PRICE_CLASSES},
    )


def _not_billed(line: DraftLine) -> bool:
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


async def _draft(conn: Connection, job: JobInfo) -> Draft:
    ids = [r["id"] for r in await conn.fetch(queries.SELECT_UNINVOICED_ENTRY_IDS, job.job_id)]
    lines = [_line(r) for r in await conn.fetch(queries.SELECT_DRAFT_LINES, ids)] if ids else []
    period = await conn.fetchrow(queries.SELECT_PERIOD, ids) if ids else None
    lines = [line for line in lines if not _is_empty(line)]
    return Draft(
        job=job,
        entry_ids=ids,
        lines=[line for line in lines if not _not_billed(line)],
        not_billed=[line for line in lines if _not_billed(line)],
        unpriced_events=int(await conn.fetchval(queries.COUNT_UNPRICED_EVENTS, job.job_id)),
        period_start=period["period_start"] if period else None,
        period_end=period["period_end"] if period else None,
        earlier=[
            r["number"] for r in await conn.fetch(queries.SELECT_JOB_INVOICE_NUMBERS, job.job_id)
        ],
    )


async def _require_usage(conn: Connection, job_id: str) -> None:
    if not await conn.fetchval(queries.JOB_HAS_USAGE, job_id):
        raise NotFoundError(f"job {job_id!r} has no recorded usage")


async def preview_invoice(conn: Connection, job_id: str) -> Draft:
    """What ``issue_invoice`` would issue now: the entries no earlier invoice covers."""
    await _require_usage(conn, job_id)
    return await _draft(conn, await get_job(conn, job_id))


def _nothing_new(draft: Draft) -> str:
    message = f"nothing new to invoice for job {draft.job.job_id!r}: "
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
    else:
        message += "it has no priced usage yet"
    if draft.unpriced_events:
        message += (
            f" ({draft.unpriced_events} unpriced events wait for a catalog version that "
            "prices them)"
        )
    return message


# Issuing -----------------------------------------------------------------------------------


async def issue_invoice(conn: Connection, job_id: str) -> Invoice:
    """Issue the job's next invoice, covering every entry no earlier invoice covers.

    Refused (``ConflictError``) when there is nothing new. Numbers are gap-free per year:
    the year's counter row is incremented in this transaction.
    """
    async with conn.transaction():
        # Re-pricing waits until this invoice is issued (ingest does not), so the entries
        # it covers and the unpriced events it names are one consistent picture.
        await lock_repricing(conn, shared=True)
        await _require_usage(conn, job_id)
        job = await lock_job(conn, job_id)
        draft = await _draft(conn, job)
        # Stub answers alone are nothing to bill: no number is spent on them; they wait,
        # listed as not billed, for the job's next invoice.
        if not draft.entry_ids or (draft.not_billed and not draft.lines):
            raise ConflictError(_nothing_new(draft))
        year = int(await conn.fetchval("SELECT extract(year FROM now() AT TIME ZONE 'UTC')"))
        seq = await conn.fetchval(queries.NEXT_NUMBER, year)
        # Read after the counter's lock: issue times follow number order.
        issued_at = await conn.fetchval("SELECT clock_timestamp()")
        number = invoice_number(year, seq)
        document = invoice_document(draft, number, issued_at)
        canonical = canonical_json(document)
        digest = sha256_hex(canonical)
        subtotal, total = draft.subtotal, draft.total
        await conn.execute(
            queries.INSERT_INVOICE,
            number,
            year,
            seq,
            job_id,
            issued_at,
            CURRENCY,
            subtotal,
            ROUNDING_RULE,
            exact_difference(total, subtotal),
            total,
            len(draft.entry_ids),
            draft.unpriced_events,
            draft.follow_up_of,
            canonical,
            digest,
        )
        await _insert_lines(conn, number, draft.lines)
        await conn.execute(queries.INSERT_ENTRIES, number, draft.entry_ids)
    return Invoice(number, job_id, issued_at, total, document, canonical, digest)


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
        [x.actual_cost_usd for x in lines],
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


def parse_number(number: str) -> tuple[int, int]:
    """``LUC-2026-000042`` → (2026, 42)."""
    try:
        prefix, year, seq = number.split("-")
        if prefix != "LUC":
            raise ValueError(prefix)
        return int(year), int(seq)
    except ValueError:
        raise InvalidRequestError(f"{number!r} is not an invoice number", status_code=400) from None


async def list_invoices(
    conn: Connection, job_id: str | None, after: str | None, limit: int
) -> list[InvoiceSummary]:
    """Issued invoices in number order, optionally of one job, after the number ``after``."""
    year, seq = parse_number(after) if after else (0, 0)
    rows = await conn.fetch(queries.SELECT_INVOICES, job_id, year, seq, limit)
    return [from_row(InvoiceSummary, r) for r in rows]


# Verifying ---------------------------------------------------------------------------------


def _amount(field: str, text: str) -> Decimal:
    return parse_money(field, text, signed=True, written_by_luc=True)


def verify_document(document: dict[str, Any]) -> Verification:
    """Check an exported invoice against its own digest, and its arithmetic."""
    number = document.get("number")
    problems = []
    claimed = document.get("digest")
    if not isinstance(claimed, str):
        problems.append("the document has no digest")
    elif digest_of(document) != claimed:
        problems.append(
            f"digest mismatch: the document hashes to {digest_of(document)}, it claims {claimed}"
        )
    try:
        lines = [
            _amount(f"lines[{i}].amount_usd", line["amount_usd"])
            for i, line in enumerate(document["lines"])
        ]
        subtotal = _amount("subtotal_usd", document["subtotal_usd"])
        total = _amount("total_usd", document["total_usd"])
        rounding = _amount("rounding_usd", document["rounding_usd"])
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"the document's amounts cannot be read: {exc}")
    else:
        # Exactly, at every digit the document holds: a 28-digit sum would agree with a
        # subtotal rounded the same way.
        if exact_sum(lines) != subtotal:
            problems.append("the lines do not sum to the subtotal")
        if round_total(subtotal) != total:
            problems.append("the total is not the subtotal rounded by the stated rule")
        if exact_difference(total, subtotal) != rounding:
            problems.append("rounding_usd is not total − subtotal")
    return Verification(
        number=number if isinstance(number, str) else None, ok=not problems, problems=problems
    )


async def verify_stored(conn: Connection, number: str) -> Verification:
    """Check a stored invoice: its text against its digest, and its rows against its text."""
    invoice = await get_invoice(conn, number)
    problems = []
    if sha256_hex(invoice.canonical) != invoice.digest:
        problems.append("stored digest does not match the stored canonical JSON")
    if canonical_json(invoice.document) != invoice.canonical:
        problems.append("stored text is not in canonical form")
    problems += verify_document(invoice.with_digest()).problems
    doc = invoice.document
    row = await conn.fetchrow(queries.SELECT_INVOICE_COLUMNS, number)
    assert row is not None
    for column, value in (
        ("job_id", row["job_id"]),
        ("currency", row["currency"]),
        ("rounding_rule", row["rounding_rule"]),
        ("follow_up_of", row["follow_up_of"]),
        ("covered_entries", row["covered_entries"]),
        ("unpriced_events", row["unpriced_events"]),
    ):
        if doc.get(column) != value:
            problems.append(f"column {column} ({value!r}) differs from the document")
    for column in ("subtotal_usd", "rounding_usd", "total_usd"):
        if Decimal(doc[column]) != row[column]:
            problems.append(f"column {column} ({row[column]}) differs from the document")
    ids = [r["ledger_entry_id"] for r in await conn.fetch(queries.SELECT_INVOICE_ENTRY_IDS, number)]
    if len(ids) != doc.get("covered_entries") or entries_digest(ids) != doc.get("entries_sha256"):
        problems.append("the covered ledger entries differ from the document")
    return Verification(number=number, ok=not problems, problems=problems)
