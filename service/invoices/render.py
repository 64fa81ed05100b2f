"""An invoice's document: the JSON its digest covers, made of a draft, the issuer and the
customer billed as they are at issue. Pure functions, no I/O.

The forms (``invoices.forms``: CSV, HTML) are presented from this document as stored, so
every form shows exactly the figures the digest protects. Amounts here are at full
precision but the total; the forms present them to the cent.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from service.invoices.models import (
    CREDIT_NOTE,
    CURRENCY,
    ROUNDING_RULE,
    BillTo,
    Draft,
    DraftLine,
    due_date,
)
from service.money import CENT, exact_difference, quantize_half_up
from service.pricing.catalog import NOT_BILLED_STUB
from service.pricing.models import PRICE_CLASSES, rate_label
from service.settings import IssuerSettings
from service.tokens import counts_of
from service.wire import cents_text, instant_text, money_text

# Canonical JSON ----------------------------------------------------------------------------


def canonical_json(document: dict[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 text; money is already a string in ``document``."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_of(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``document`` without its ``digest`` field."""
    return sha256_hex(canonical_json({k: v for k, v in document.items() if k != "digest"}))


def entries_digest(entry_ids: list[int]) -> str:
    """SHA-256 of the covered ledger entry ids, ascending, comma-separated."""
    return sha256_hex(",".join(str(i) for i in sorted(entry_ids)))


def _price_text(price: Decimal | None) -> str | None:
    return None if price is None else money_text(price)


def line_document(line: DraftLine) -> dict[str, Any]:
    """A billed line as the customer sees it: what it bills and why, never what it cost
    LUC (the internal view adds that). The line's job (on a monthly invoice), the plan's
    terms and the line's type appear only where there are some, so lines without them keep
    the shape (and the digests) they always had."""
    extra: dict[str, Any] = {}
    if line.line_type != "usage":
        # No usage: a line of the usual shape (zero tokens, zero prices, no catalog
        # version) so every reader of lines reads it, told apart by its type.
        extra |= {"line_type": line.line_type, "description": line.model_name}
    if line.job_id is not None:
        extra["job_id"] = line.job_id
    if line.pricing is not None:
        extra["pricing"] = line.pricing
    return {
        **extra,
        "agent": line.agent,
        "model": line.model,
        "model_name": line.model_name,
        "provider": line.provider,
        "catalog_version": line.catalog_version,
        "tier": line.tier,
        "events": line.events,
        **counts_of(line),
        # The rate the unit prices are (base, or a long-context entry), named as well as
        # marked. Absent from invoices issued before long context: their rate was base.
        "long_context_from": line.long_context_from,
        "rate": rate_label(line.long_context_from),
        # null each on a line of events no catalog version prices that no plan's own
        # price explains: unknown, never zero (its amount is the plan's markup).
        "unit_prices": {k: _price_text(line.unit_prices.get(k, Decimal(0))) for k in PRICE_CLASSES},
        "amount_usd": money_text(line.amount_usd),
    }


def issuer_document(issuer: IssuerSettings) -> dict[str, Any]:
    """Who issues the invoice, copied into it: settings changed later change no issued one.
    The logo is named by the SHA-256 of its bytes, which are stored beside the invoices."""
    logo = issuer.logo
    return {
        "name": issuer.name,
        "address": issuer.address,
        "tax_id": issuer.tax_id,
        "payment_terms_days": issuer.payment_terms_days,
        "footer": issuer.footer,
        "logo": None
        if logo is None
        else {"sha256": hashlib.sha256(logo.data).hexdigest(), "media_type": logo.media_type},
    }


def bill_to_document(bill_to: BillTo | None) -> dict[str, Any] | None:
    if bill_to is None:
        return None
    return {
        "id": bill_to.id,
        "name": bill_to.name,
        "address": bill_to.address,
        "tax_id": bill_to.tax_id,
    }


def bill_to_of_document(customer: dict[str, Any] | str | None) -> BillTo | None:
    """The inverse of ``bill_to_document``: who an issued document was addressed to, as it
    was then (a name alone on invoices issued before customers were registered)."""
    if customer is None:
        return None
    if isinstance(customer, str):
        return BillTo(id=None, name=customer)
    return BillTo(
        id=customer["id"],
        name=customer["name"],
        address=customer.get("address"),
        tax_id=customer.get("tax_id"),
    )


def notes_for(draft: Draft, corrects: str | None = None) -> list[str]:
    notes = []
    if draft.kind == CREDIT_NOTE:
        scope = "job" if draft.job is not None else "month"
        notes.append(
            f"Credit note: what is billed since the last invoice of this {scope} comes to less "
            "than nothing (calls billed before at a higher price, re-rated or re-priced, or "
            "a minimum given back); the amount is owed to the customer"
            + (f", and corrects invoice {corrects}." if corrects else ".")
        )
    if draft.follow_up_of is not None:
        notes.append(
            f"Follow-up to {draft.follow_up_of}: covers only ledger entries recorded after "
            f"the earlier invoices of this {'job' if draft.job is not None else 'month'} "
            "(late usage, re-rating and re-pricing adjustments)."
        )
    if draft.month is not None:
        notes.append(
            f"Monthly invoice for {draft.month:%Y-%m} (UTC): the usage of the customer's jobs "
            "in the month that no earlier invoice billed."
        )
    if draft.minimum_note is not None:
        notes.append(draft.minimum_note)
    uncatalogued = [x for x in draft.lines if x.catalog_version is None and x.line_type == "usage"]
    if any(x.events > 0 for x in uncatalogued):
        notes.append(
            "Lines without a catalog version bill calls to models no catalog version prices "
            "yet at the price of the customer's plan; once a catalog version prices them, "
            "a follow-up takes them back and bills them again: only the difference."
        )
    if any(x.events < 0 for x in uncatalogued):
        notes.append(
            "Lines without a catalog version and negative calls take back calls billed "
            "before at the plan's price while no catalog version priced them; a catalog "
            "version prices them now, and they are billed again on the lines with it."
        )
    if draft.unpriced_events:
        n = draft.unpriced_events
        notes.append(
            f"Not billed: {n} unpriced event{'s' if n != 1 else ''} (no catalog price yet); "
            "billed on a follow-up invoice once a catalog version prices them."
        )
    if draft.not_billed:
        n = sum(line.events for line in draft.not_billed)
        notes.append(
            f"Not billed: {n} stub answer{'s' if n != 1 else ''} (LUC's heuristic mode: no "
            "LLM was called); their usage is listed under not billed, at zero."
        )
    return notes


def not_billed_document(line: DraftLine) -> dict[str, Any]:
    """A line of usage the invoice covers without billing it, and why."""
    return {**line_document(line), "reason": NOT_BILLED_STUB}


def _due_text(amount: Decimal) -> str:
    """Whole cents as the total is written (``0.05``); credits drawn by exact entries may
    leave more digits, which are kept, never rounded (the amount due's rounding row makes
    up the sub-cent step)."""
    return cents_text(amount) if amount == quantize_half_up(amount, CENT) else money_text(amount)


def invoice_document(
    draft: Draft,
    issuer: IssuerSettings,
    number: str | None,
    issued_at: datetime | None,
    *,
    corrects: str | None = None,
) -> dict[str, Any]:
    """The invoice as JSON-ready data (without ``digest``); ``number`` None for a preview."""
    subtotal, total = draft.subtotal, draft.total
    # ``not_billed`` appears only when there is some, so invoices without stub answers keep
    # the shape (and the digests) they always had.
    not_billed = {"not_billed": [not_billed_document(x) for x in draft.not_billed]}
    due = None if issued_at is None else due_date(issued_at, issuer.payment_terms_days)
    return {
        "number": number,
        "kind": draft.kind,
        "job_id": None if draft.job is None else draft.job.job_id,
        "issued_at": None if issued_at is None else instant_text(issued_at),
        "due_date": None if due is None else due.isoformat(),
        "currency": CURRENCY,
        "issuer": issuer_document(issuer),
        "customer": bill_to_document(draft.bill_to),
        "title": None if draft.job is None else draft.job.title,
        "reference": None if draft.job is None else draft.job.reference,
        "follow_up_of": draft.follow_up_of,
        "corrects": corrects,
        "period_start": None if draft.period_start is None else instant_text(draft.period_start),
        "period_end": None if draft.period_end is None else instant_text(draft.period_end),
        "lines": [line_document(line) for line in draft.lines],
        "events": sum(line.events for line in draft.lines),
        "subtotal_usd": money_text(subtotal),
        "rounding_rule": ROUNDING_RULE,
        "rounding_usd": money_text(exact_difference(total, subtotal)),
        "total_usd": cents_text(total),
        # Credits at every digit they were drawn with: what was applied, never rounded.
        "credits_applied_usd": _due_text(draft.credits_applied),
        "amount_due_usd": cents_text(draft.amount_due),
        # Only where credits carry sub-cent digits, so other invoices keep their shape.
        **(
            {"amount_due_rounding_usd": money_text(draft.amount_due_rounding)}
            if draft.amount_due_rounding != 0
            else {}
        ),
        "covered_entries": len(draft.entry_ids),
        "entries_sha256": entries_digest(draft.entry_ids),
        "unpriced_events": draft.unpriced_events,
        "notes": notes_for(draft, corrects),
        **(not_billed if draft.not_billed else {}),
        **({} if draft.month is None else {"month": f"{draft.month:%Y-%m}"}),
    }
