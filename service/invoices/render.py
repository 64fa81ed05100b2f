"""An invoice's forms: the canonical JSON its digest covers, CSV, and a printable HTML page.

Pure functions, no I/O. CSV and HTML are rendered from the stored canonical document, so
every form shows exactly the figures the digest protects. A document issued before a token
class was declared has no count of it: it counts as zero.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime
from html import escape
from typing import Any

from service.invoices.models import (
    CURRENCY,
    ROUNDING_RULE,
    Draft,
    DraftLine,
)
from service.money import exact_difference
from service.pricing.catalog import NOT_BILLED_STUB
from service.pricing.models import PRICE_CLASSES, rate_label
from service.tokens import TOKEN_CLASSES, TOKEN_FIELDS, counts_of
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


def line_document(line: DraftLine) -> dict[str, Any]:
    return {
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
        "unit_prices": {k: money_text(line.unit_prices[k]) for k in PRICE_CLASSES},
        "amount_usd": money_text(line.amount_usd),
        "actual_cost_usd": money_text(line.actual_cost_usd),
    }


def notes_for(draft: Draft) -> list[str]:
    notes = []
    if draft.follow_up_of is not None:
        notes.append(
            f"Follow-up to {draft.follow_up_of}: covers only ledger entries recorded after "
            "the earlier invoices of this job (late usage and re-rating adjustments)."
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


def invoice_document(
    draft: Draft, number: str | None, issued_at: datetime | None
) -> dict[str, Any]:
    """The invoice as JSON-ready data (without ``digest``); ``number`` None for a preview."""
    subtotal, total = draft.subtotal, draft.total
    # ``not_billed`` appears only when there is some, so invoices without stub answers keep
    # the shape (and the digests) they always had.
    not_billed = {"not_billed": [not_billed_document(x) for x in draft.not_billed]}
    return {
        "number": number,
        "job_id": draft.job.job_id,
        "issued_at": None if issued_at is None else instant_text(issued_at),
        "currency": CURRENCY,
        "customer": draft.job.customer,
        "title": draft.job.title,
        "reference": draft.job.reference,
        "follow_up_of": draft.follow_up_of,
        "period_start": None if draft.period_start is None else instant_text(draft.period_start),
        "period_end": None if draft.period_end is None else instant_text(draft.period_end),
        "lines": [line_document(line) for line in draft.lines],
        "events": sum(line.events for line in draft.lines),
        "subtotal_usd": money_text(subtotal),
        "rounding_rule": ROUNDING_RULE,
        "rounding_usd": money_text(exact_difference(total, subtotal)),
        "total_usd": cents_text(total),
        "covered_entries": len(draft.entry_ids),
        "entries_sha256": entries_digest(draft.entry_ids),
        "unpriced_events": draft.unpriced_events,
        "notes": notes_for(draft),
        **(not_billed if draft.not_billed else {}),
    }


# CSV ---------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "invoice",
    "job_id",
    "row",
    "agent",
    "model",
    "provider",
    "catalog_version",
    "tier",
    "events",
    *TOKEN_FIELDS,
    "rate",
    *(f"unit_price_{k}" for k in PRICE_CLASSES),
    "actual_cost_usd",  # for information: invoices bill amount_usd
    "amount_usd",
    "note",
)


def _rate(line: dict[str, Any]) -> str:
    """The rate a line's unit prices are; a line issued before long context was at base."""
    return str(line.get("rate") or rate_label(None))


def _text_cell(value: str | None) -> str:
    """Text as a spreadsheet will not run it: a leading formula character gets a quote."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value or ""


def to_csv(document: dict[str, Any]) -> str:
    """One ``line`` row per invoice line, then ``subtotal``, ``rounding`` and ``total`` rows.

    The ``line`` rows' ``amount_usd`` sum to the subtotal exactly (full precision).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    head = [document["number"] or "preview", _text_cell(document["job_id"])]
    blank_line = [""] * (len(CSV_COLUMNS) - 5)

    def line_row(kind: str, line: dict[str, Any], note: str) -> list[Any]:
        prices = line["unit_prices"]
        return [
            *head,
            kind,
            _text_cell(line["agent"]),
            _text_cell(line["model"]),
            _text_cell(line["provider"]),
            line["catalog_version"],
            line["tier"] or "",
            line["events"],
            *(line.get(k, 0) for k in TOKEN_FIELDS),
            _rate(line),
            *(prices[k] for k in PRICE_CLASSES),
            line.get("actual_cost_usd", ""),  # absent from invoices issued before it
            line["amount_usd"],
            note,
        ]

    for line in document["lines"]:
        writer.writerow(line_row("line", line, ""))
    for row, amount, note in (
        ("subtotal", document["subtotal_usd"], f"{document['events']} events"),
        ("rounding", document["rounding_usd"], document["rounding_rule"]),
        ("total", document["total_usd"], document["currency"]),
    ):
        writer.writerow([*head, row, *blank_line, amount, note])
    if document["unpriced_events"]:
        n = document["unpriced_events"]
        writer.writerow([*head, "not_billed", *blank_line, "", f"{n} unpriced events, not billed"])
    for line in document.get("not_billed", []):  # absent from invoices issued before it
        writer.writerow(line_row("not_billed", line, line["reason"]))
    return out.getvalue()


# HTML --------------------------------------------------------------------------------------

_CSS = """
@page { size: A4; margin: 16mm 14mm; }
* { box-sizing: border-box; }
body { font: 10pt/1.4 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1a1a1a;
       margin: 0 auto; max-width: 182mm; padding: 8mm 0; }
header { display: flex; justify-content: space-between; align-items: flex-start;
         border-bottom: 2px solid #1a1a1a; padding-bottom: 4mm; margin-bottom: 5mm; }
h1 { font-size: 20pt; margin: 0; letter-spacing: 0.02em; }
.number { font-size: 12pt; font-weight: bold; margin-top: 1mm; }
.issuer { text-align: right; color: #555; }
dl.meta { display: grid; grid-template-columns: 32mm 1fr; gap: 1mm 4mm; margin: 0 0 5mm; }
dl.meta dt { color: #555; }
dl.meta dd { margin: 0; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 8pt; text-transform: uppercase; color: #555;
     border-bottom: 1px solid #1a1a1a; padding: 1.5mm 1mm; }
td { vertical-align: top; border-bottom: 1px solid #ddd; padding: 1.5mm 1mm; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.small { font-size: 7.5pt; color: #444; white-space: nowrap; }
table.totals { width: 95mm; margin: 5mm 0 0 auto; }
h2 { font-size: 11pt; margin: 6mm 0 1mm; }
table.not-billed { color: #555; }
table.totals td { border: none; padding: 1mm; }
table.totals tr.total td { border-top: 2px solid #1a1a1a; font-size: 12pt; font-weight: bold; }
.notes { margin-top: 6mm; font-size: 9pt; }
footer { margin-top: 8mm; border-top: 1px solid #ddd; padding-top: 2mm; font-size: 7.5pt;
         color: #555; word-break: break-all; }
@media print { body { padding: 0; } }
"""


ACTUAL_COST_NOTE = (
    "Actual cost: what the calls cost as the providers reported it, where they did, else "
    "at catalog prices; shown for information, the amount column is what is billed."
)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _tokens(line: dict[str, Any]) -> str:
    return "<br>".join(f"{c.label} {int(line.get(c.name, 0)):,}" for c in TOKEN_CLASSES)


def _prices(prices: dict[str, str]) -> str:
    labels = {
        "input": "input",
        "output": "output",
        "cache_read": "cache read",
        "cache_write": "cache write",
        "reasoning": "reasoning",
        "per_request": "per request",
    }
    return "<br>".join(f"{labels[k]} {_e(prices[k])}" for k in PRICE_CLASSES)


def _line_row(line: dict[str, Any]) -> str:
    return (
        "<tr>"
        f"<td><strong>{_e(line['model_name'] or line['model'])}</strong>"
        f"<div class='small'>{_e(line['model'])}<br>agent {_e(line['agent'])} · "
        f"{_e(line['provider'])}<br>catalog version {_e(line['catalog_version'])}</div></td>"
        f"<td class='num'>{int(line['events']):,}</td>"
        f"<td class='small'>{_tokens(line)}</td>"
        f"<td class='small'>{_e(_rate(line))}<br>{_prices(line['unit_prices'])}</td>"
        # Absent from invoices issued before it was recorded: an empty cell.
        f"<td class='num small'>{_e(line.get('actual_cost_usd'))}</td>"
        f"<td class='num'>{_e(line['amount_usd'])}</td>"
        "</tr>"
    )


def _date(value: str | None) -> str:
    """``2026-11-24T01:58:36.639108Z`` → ``2026-11-24 01:58:36 UTC`` (whole seconds)."""
    if value is None:
        return ""
    return _e(value.split(".")[0].rstrip("Z").replace("T", " ") + " UTC")


def to_html(document: dict[str, Any], digest: str | None) -> str:
    """A printable A4 page: inline CSS, no script, every value escaped."""
    d = document
    number = d["number"] or "PREVIEW (not issued)"
    period = f"{_date(d['period_start'])} – {_date(d['period_end'])}" if d["period_start"] else ""
    meta = [  # (label, HTML)
        ("Invoice number", _e(number)),
        ("Issued", _date(d["issued_at"]) or "not issued"),
        ("Job", _e(d["job_id"])),
        ("Customer", _e(d["customer"])),
        ("Title", _e(d["title"])),
        ("Reference", _e(d["reference"])),
        ("Follow-up of", _e(d["follow_up_of"])),
        ("Usage period", period),
    ]
    meta_html = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in meta if value)
    rows = "".join(_line_row(line) for line in d["lines"])
    not_billed = d.get("not_billed", [])  # absent from invoices issued before it
    not_billed_html = ""
    if not_billed:
        not_billed_html = f"""
<h2>Not billed</h2>
<p class="small">{_e(not_billed[0]["reason"])}: listed for the record, at zero.</p>
<table class="lines not-billed">
  <thead><tr><th>Model / agent</th><th class="num">Events</th><th>Tokens</th>
  <th>Unit prices (USD per 1M tokens)</th><th class="num">Actual cost (USD)</th>
  <th class="num">Amount (USD)</th></tr></thead>
  <tbody>{"".join(_line_row(line) for line in not_billed)}</tbody>
</table>"""
    notes = "".join(f"<p>{_e(n)}</p>" for n in d["notes"])
    recorded = any("actual_cost_usd" in line for line in d["lines"])
    actual_note = f"<p>{_e(ACTUAL_COST_NOTE)}</p>" if recorded else ""
    digest_html = f"SHA-256 of the canonical JSON: {_e(digest)}" if digest else "Preview: no digest"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Invoice {_e(number)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
  <div><h1>Invoice</h1><div class="number" id="invoice-number">{_e(number)}</div></div>
  <div class="issuer">LUC · LLM usage cost ledger<br>Currency: {_e(d["currency"])}</div>
</header>
<dl class="meta">{meta_html}</dl>
<table class="lines">
  <thead><tr><th>Model / agent</th><th class="num">Events</th><th>Tokens</th>
  <th>Unit prices (USD per 1M tokens)</th><th class="num">Actual cost (USD)</th>
  <th class="num">Amount (USD)</th></tr></thead>
  <tbody>{rows}</tbody>
</table>
<table class="totals">
  <tr><td>Subtotal (full precision)</td><td class="num">{_e(d["subtotal_usd"])}</td></tr>
  <tr><td>Rounding</td><td class="num">{_e(d["rounding_usd"])}</td></tr>
  <tr class="total"><td>Total {_e(d["currency"])}</td>
      <td class="num" id="invoice-total">{_e(d["total_usd"])}</td></tr>
</table>{not_billed_html}
<div class="notes">
  <p>Rounding rule: {_e(d["rounding_rule"])}.</p>
  {actual_note}
  {notes}
</div>
<footer>{int(d["covered_entries"]):,} ledger entries covered · {digest_html}</footer>
</body>
</html>
"""
