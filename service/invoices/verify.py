"""Checking an invoice against its digest and its own arithmetic: an exported document on
its own, or a stored invoice against its rows and the ledger entries it covers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from service.db import Connection
from service.invoices import queries
from service.invoices.models import (
    INVOICE,
    ROUNDING_RULE,
    Verification,
    amount_due,
    amount_due_rounding,
    kind_of,
    legacy_amount_due,
    parse_number,
    round_total,
)
from service.invoices.render import canonical_json, digest_of, entries_digest, sha256_hex
from service.invoices.service import get_invoice
from service.money import exact_difference, exact_sum
from service.wire import parse_money


def _amount(field: str, text: str) -> Decimal:
    return parse_money(field, text, signed=True, any_size=True)


def _year_problems(document: dict[str, Any]) -> list[str]:
    """A number's year is the UTC year of ``issued_at``: both are one instant, read after
    the counters' lock (``invoices.service.store_invoice``)."""
    number, issued = document.get("number"), document.get("issued_at")
    parsed = parse_number(number) if isinstance(number, str) else None
    if parsed is None or not isinstance(issued, str):
        return []  # a preview, or no number: nothing to compare
    try:
        year = datetime.fromisoformat(issued).astimezone(UTC).year
    except ValueError:
        return [f"issued_at {issued!r} is not an instant"]
    if year != parsed[1]:
        return [f"the number's year ({parsed[1]}) is not the year of issued_at ({year}, UTC)"]
    return []


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
        # Invoices issued before credits were shown have neither field.
        credits = _amount("credits_applied_usd", document.get("credits_applied_usd", "0"))
        due = _amount("amount_due_usd", document.get("amount_due_usd", document["total_usd"]))
        # Stated only where the credits carry sub-cent digits (else it is zero).
        due_step = _amount("amount_due_rounding_usd", document.get("amount_due_rounding_usd", "0"))
    except KeyError as exc:
        # A bare KeyError reads "'lines'": say what is missing.
        problems.append(f"the document's amounts cannot be read: it has no {exc.args[0]!r}")
    except (TypeError, ValueError) as exc:
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
        if document.get("rounding_rule") == ROUNDING_RULE:
            if amount_due(subtotal, credits) != due:
                problems.append(
                    "amount_due_usd is not subtotal − credits_applied_usd rounded to the cent"
                )
            if amount_due_rounding(total, credits, due) != due_step:
                problems.append("amount_due_rounding_usd is not amount due − (total − credits)")
        elif legacy_amount_due(total, credits) != due:
            # Issued under the earlier rule, which the document states: checked by it.
            problems.append(
                "amount_due_usd is not total − credits_applied_usd (credits rounded to the cent)"
            )
        problems += _year_problems(document)
        if document.get("kind", INVOICE) not in (INVOICE, kind_of(total)):
            # Before credit notes, a negative follow-up was an invoice: that stays valid.
            problems.append(f"a {document['kind']} cannot have the total {document['total_usd']}")
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
    customer = doc.get("customer")
    # Invoices issued before credit notes and bill-to have none of these in their document:
    # they were invoices, correcting none, with no due date, billed to a text or nobody.
    for column, value, issued_before in (
        ("kind", row["kind"], "invoice"),
        ("corrects", row["corrects"], None),
        ("due_date", row["due_date"] and row["due_date"].isoformat(), None),
    ):
        if doc.get(column, issued_before) != value:
            problems.append(f"column {column} ({value!r}) differs from the document")
    if (customer.get("id") if isinstance(customer, dict) else None) != row["customer_id"]:
        problems.append(f"column customer_id ({row['customer_id']!r}) differs from the document")
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
