"""An issued invoice as a printable A4 page, the one a finance person sends.

The issuer (logo, name, address, tax id), who is billed, number, dates and terms, the
lines with their readable unit prices, the totals to the cent and the issuer's footer.
Inline CSS, no script, every value escaped. Printed (or saved as PDF) it breaks across
pages cleanly: the table header repeats on each page and no line is cut in two.
"""

from __future__ import annotations

from base64 import b64encode
from html import escape
from typing import Any

from service.invoices.forms import (
    billed_usage,
    customer_id,
    kind_of_document,
    price_text,
    summary,
)
from service.invoices.models import CREDIT_NOTE
from service.invoices.pricing import terms_text
from service.pricing.models import rate_label

LEGACY_ISSUER = "LUC · LLM usage cost ledger"
"""What invoices issued before the issuer was configurable named as their issuer."""
NOT_CONFIGURED = "Issuer not configured (set LUC_ISSUER_NAME)"

_CSS = """
@page { size: A4; margin: 14mm 14mm 16mm; }
* { box-sizing: border-box; }
body { font: 9.5pt/1.4 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1a1a1a;
       margin: 0 auto; max-width: 182mm; padding: 8mm 0; }
header { display: flex; justify-content: space-between; align-items: flex-start;
         gap: 8mm; padding-bottom: 4mm; border-bottom: 2px solid #1a1a1a; }
.issuer img { display: block; max-height: 18mm; max-width: 60mm; margin-bottom: 2mm; }
.issuer .name { font-size: 12pt; font-weight: bold; }
.issuer .missing { color: #b00020; font-weight: bold; }
.title { text-align: right; }
h1 { font-size: 22pt; margin: 0; letter-spacing: 0.02em; }
.number { font-size: 12pt; font-weight: bold; margin-top: 1mm; }
.parties { display: flex; justify-content: space-between; gap: 8mm; margin: 5mm 0; }
.bill-to { flex: 1; }
h2 { font-size: 8pt; text-transform: uppercase; color: #555; margin: 0 0 1mm;
     letter-spacing: 0.05em; }
.bill-to .name { font-weight: bold; }
.multiline { white-space: pre-line; }
dl.meta { display: grid; grid-template-columns: 35mm auto; gap: 0.6mm 4mm; margin: 0; }
dl.meta dt { color: #555; }
dl.meta dd { margin: 0; }
dl.meta .due { font-weight: bold; }
table { width: 100%; border-collapse: collapse; }
/* A long invoice: the header row on every printed page, no line cut in two. */
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
th { text-align: left; font-size: 7.5pt; text-transform: uppercase; color: #555;
     border-bottom: 1px solid #1a1a1a; padding: 1.5mm 1mm; }
td { vertical-align: top; border-bottom: 1px solid #ddd; padding: 1.5mm 1mm; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.small { font-size: 7.5pt; color: #444; }
.usage td { border: none; padding: 0 2mm 0 0; font-size: 8pt; white-space: nowrap; }
.usage td.qty { text-align: right; font-variant-numeric: tabular-nums; }
.rate { font-size: 7.5pt; font-weight: bold; color: #7a4b00; }
.totals-block { break-inside: avoid; page-break-inside: avoid; }
table.totals { width: 95mm; margin: 4mm 0 0 auto; }
table.totals td { border: none; padding: 0.8mm 1mm; }
table.totals tr.total td { border-top: 1px solid #1a1a1a; font-weight: bold; }
table.totals tr.amount_due td { border-top: 2px solid #1a1a1a; font-size: 12pt;
                                font-weight: bold; }
table.not-billed { color: #555; }
.notes { margin-top: 5mm; font-size: 8pt; color: #333; break-inside: avoid; }
.notes p { margin: 0 0 1.5mm; }
footer { margin-top: 6mm; border-top: 1px solid #ddd; padding-top: 2mm; font-size: 7.5pt;
         color: #555; break-inside: avoid; }
footer .digest { word-break: break-all; color: #888; margin-top: 1mm; }
@media print { body { padding: 0; } }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _date(value: str | None) -> str:
    """``2026-11-24T01:58:36.639108Z`` → ``2026-11-24`` (the UTC date)."""
    return "" if value is None else _e(value[:10])


def _instant(value: str | None) -> str:
    """``2026-11-24T01:58:36.639108Z`` → ``2026-11-24 01:58 UTC``."""
    return "" if value is None else _e(value[:16].replace("T", " ") + " UTC")


def _usage(line: dict[str, Any]) -> str:
    """One row per price the line used: how many, of what, at which unit price."""
    rows = "".join(
        f"<tr><td class='qty'>{quantity:,}</td><td>{_e(what)}</td><td>× {_e(price)}</td></tr>"
        for quantity, what, price in billed_usage(line)
    )
    rate = line.get("long_context_from")
    head = f"<div class='rate'>{_e(rate_label(rate))} rate</div>" if rate is not None else ""
    return f"{head}<table class='usage'>{rows}</table>"


def _catalog(version: int | None) -> str:
    """The catalog version a line's prices are from; a line without one billed a model no
    catalog version priced, at the plan's price."""
    return "no catalog price" if version is None else f"catalog version {_e(version)}"


def _line_row(line: dict[str, Any]) -> str:
    if line.get("line_type") == "minimum":
        return (
            f"<tr class='minimum'><td><strong>Monthly minimum</strong>"
            f"<div class='small'>{_e(line['description'])}</div></td><td class='num'></td>"
            f"<td></td><td class='num'>{_e(price_text(line['amount_usd']))}</td></tr>"
        )
    name = line.get("model_name") or line["model"]
    job = f"job {_e(line['job_id'])} · " if "job_id" in line else ""
    terms = (
        "".join(f"<div class='terms'>{_e(t)}</div>" for t in terms_text(line["pricing"]))
        if "pricing" in line
        else ""
    )
    return (
        "<tr>"
        f"<td><strong>{_e(name)}</strong>"
        f"<div class='small'>{_e(line['model'])} · {_e(line['provider'])}<br>"
        f"{job}agent {_e(line['agent'])} · {_catalog(line['catalog_version'])}"
        f"</div>{terms}</td>"
        f"<td class='num'>{int(line['events']):,}</td>"
        f"<td>{_usage(line)}</td>"
        f"<td class='num'>{_e(price_text(line['amount_usd']))}</td>"
        "</tr>"
    )


_HEAD = (
    "<thead><tr><th>Description</th><th class='num'>Calls</th>"
    "<th>Usage × unit price (USD)</th><th class='num'>Amount (USD)</th></tr></thead>"
)


def _issuer(document: dict[str, Any], logo: tuple[str, bytes] | None) -> str:
    issuer = document.get("issuer")
    if issuer is None:  # issued before the issuer was configurable
        return f"<div class='issuer'><div class='name'>{_e(LEGACY_ISSUER)}</div></div>"
    image = ""
    if logo is not None:
        media_type, data = logo
        source = f"data:{media_type};base64,{b64encode(data).decode('ascii')}"
        image = f"<img src='{_e(source)}' alt='{_e(issuer['name'] or 'logo')}'>"
    name = (
        f"<div class='name'>{_e(issuer['name'])}</div>"
        if issuer["name"]
        else f"<div class='missing'>{_e(NOT_CONFIGURED)}</div>"
    )
    address = f"<div class='multiline'>{_e(issuer['address'])}</div>" if issuer["address"] else ""
    tax = f"<div>Tax ID: {_e(issuer['tax_id'])}</div>" if issuer["tax_id"] else ""
    return f"<div class='issuer'>{image}{name}{address}{tax}</div>"


def _bill_to(document: dict[str, Any]) -> str:
    customer = document.get("customer")
    if customer is None:
        body = "<div class='small'>No customer named for this job.</div>"
    elif isinstance(customer, str):  # issued before customers: the job's free text
        body = f"<div class='name'>{_e(customer)}</div>"
    else:
        body = f"<div class='name'>{_e(customer['name'])}</div>"
        if customer.get("address"):
            body += f"<div class='multiline'>{_e(customer['address'])}</div>"
        if customer.get("tax_id"):
            body += f"<div>Tax ID: {_e(customer['tax_id'])}</div>"
        if customer.get("id"):
            body += f"<div class='small'>Customer ID: {_e(customer['id'])}</div>"
    return f"<div class='bill-to'><h2>Bill to</h2>{body}</div>"


def _terms(days: int) -> str:
    return "due on receipt" if days == 0 else f"{days} days net"


def _meta(document: dict[str, Any], title: str) -> str:
    d = document
    number = d["number"] or "PREVIEW (not issued)"
    issuer = d.get("issuer")
    period = (
        f"{_instant(d['period_start'])} – {_instant(d['period_end'])}" if d["period_start"] else ""
    )
    rows = [  # (label, HTML, CSS class)
        (f"{title} number", _e(number), ""),
        ("Issue date", _date(d["issued_at"]) or "not issued", ""),
        ("Due date", _date(d.get("due_date")), "due"),
        ("Payment terms", _e(_terms(issuer["payment_terms_days"])) if issuer else "", ""),
        ("Corrects invoice", _e(d.get("corrects")), ""),
        ("Follow-up to", _e(d["follow_up_of"]), ""),
        ("Job", _e(d["job_id"]), ""),
        ("Month", _e(d.get("month")), ""),
        ("Title", _e(d.get("title")), ""),
        ("Reference", _e(d.get("reference")), ""),
        ("Usage period", period, ""),
        ("Currency", _e(d["currency"]), ""),
    ]
    items = "".join(
        f"<dt>{label}</dt><dd class='{css}'>{value}</dd>" for label, value, css in rows if value
    )
    return f"<dl class='meta'>{items}</dl>"


def _totals(document: dict[str, Any], credit_note: bool) -> str:
    # The amount due's label follows its sign (``forms.summary``): signed on either kind.
    labels = {"total": "Total credit" if credit_note else "Total"}
    rows = "".join(
        f"<tr class='{row_type}'><td>{_e(labels.get(row_type, label))} ({_e(document['currency'])})"
        f"</td><td class='num' id='invoice-{row_type.replace('_', '-')}'>{_e(shown)}</td></tr>"
        for row_type, label, shown, _exact in summary(document)
    )
    return f"<table class='totals'>{rows}</table>"


def _not_billed(document: dict[str, Any]) -> str:
    not_billed = document.get("not_billed", [])  # absent from invoices issued before it
    if not not_billed:
        return ""
    return (
        "<h2 style='margin-top:6mm'>Not billed</h2>"
        f"<p class='small'>{_e(not_billed[0]['reason'])}: listed for the record, at zero.</p>"
        f"<table class='lines not-billed'>{_HEAD}"
        f"<tbody>{''.join(_line_row(line) for line in not_billed)}</tbody></table>"
    )


def to_html(
    document: dict[str, Any], digest: str | None, logo: tuple[str, bytes] | None = None
) -> str:
    """The printable page of ``document``; ``logo`` is the issuer's (media type, bytes) the
    document names, as stored when it was issued."""
    d = document
    credit_note = kind_of_document(d) == CREDIT_NOTE
    title = "Credit note" if credit_note else "Invoice"
    number = d["number"] or "PREVIEW (not issued)"
    rows = "".join(_line_row(line) for line in d["lines"])
    exact = (
        "The lines and the subtotal are shown at every digit, as billed; the total is the "
        "subtotal rounded once to the cent, half up (the rounding line)."
    )
    if any(row[0] == "amount_due_rounding" for row in summary(d)):
        exact += (
            " Prepaid credits are shown as applied, at every digit; the amount due is "
            "rounded once to the cent, and the rounding of the amount due makes the column "
            "add up as printed."
        )
    rule = f"Rounding rule: {d['rounding_rule']}."
    notes = "".join(f"<p>{_e(n)}</p>" for n in [exact, rule, *d["notes"]])
    issuer = d.get("issuer") or {}
    footer = f"<div class='multiline'>{_e(issuer['footer'])}</div>" if issuer.get("footer") else ""
    digest_html = f"SHA-256 of the canonical JSON: {_e(digest)}" if digest else "Preview: no digest"
    who = customer_id(d)
    # What the invoice bills: a job, or (a monthly invoice, which names no job) a month.
    subject = f"job {_e(d['job_id'])}" if d["job_id"] is not None else f"month {_e(d.get('month'))}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} {_e(number)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
  {_issuer(d, logo)}
  <div class="title"><h1>{title}</h1>
    <div class="number" id="invoice-number">{_e(number)}</div></div>
</header>
<section class="parties">
  {_bill_to(d)}
  {_meta(d, title)}
</section>
<table class="lines">
  {_HEAD}
  <tbody>{rows}</tbody>
</table>
<div class="totals-block">
{_totals(d, credit_note)}
</div>{_not_billed(d)}
<div class="notes">
  {notes}
</div>
<footer>
  {footer}
  <div class="digest">{_e(number)} · {subject}{" · customer " + _e(who) if who else ""}
  · {int(d["covered_entries"]):,} ledger entries covered · {digest_html}</div>
</footer>
</body>
</html>
"""
