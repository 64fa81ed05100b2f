"""An issued invoice's forms for the customer: how amounts and prices are presented, and
the CSV (the printable page is ``invoices.page``).

Pure functions, no I/O, presented from the stored document (``invoices.render``), so every
form shows the figures the digest protects. They present the lines and the subtotal at
every digit, the total and the amount due to the cent (rounded once, half up, the
invoice's own rule), and each line's unit prices as one readable line per price it used.
A document issued before a field existed (a token class, the issuer, the customer as a
record, credits) is presented without it.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

from service.invoices.models import INVOICE
from service.invoices.pricing import terms_text
from service.money import CENT, decimal_places, exact_difference, quantize_half_up
from service.pricing.models import rate_label
from service.tokens import TOKEN_CLASSES, TOKEN_FIELDS, parts_of
from service.wire import money_text, spreadsheet_text

# Presenting amounts ---------------------------------------------------------------------------

PRICE_LABELS = {
    "input": "input",
    "output": "output",
    "cache_read": "cache read",
    "cache_write": "cache write",
    "reasoning": "reasoning",
}


def cents(text: str) -> str:
    """An amount of the document presented to the cent, half up (``0.053325`` → ``0.05``),
    never ``-0.00``."""
    value = quantize_half_up(Decimal(text), CENT)
    return format(value if value != 0 else Decimal("0.00"), "f")


def price_text(amount: str | Decimal) -> str:
    """An amount or a unit price (a document's decimal string, or the value) with every
    digit it has and at least two decimals (``3`` → ``3.00``, ``0.075`` → ``0.075``, never
    ``-0.00``)."""
    value = Decimal(amount)
    if value == 0:
        return "0.00"
    # Measured and padded at any size: quantize() in the default 28-digit context raised
    # for an amount of 10^26 or more (a CSV or page of such an invoice was a 500).
    if decimal_places(value) <= 2:
        return format(quantize_half_up(value, CENT), "f")
    return money_text(value)


NO_UNIT_PRICE = "no catalog price"
"""A unit price a line does not have: its model had no catalog price when it was billed
(at the plan's markup on the providers' cost)."""


def _unit(price: str | None, per: str) -> str:
    return NO_UNIT_PRICE if price is None else f"{price_text(price)} / {per}"


def billed_usage(line: dict[str, Any]) -> list[tuple[int, str, str]]:
    """What a line billed, one entry per price it used: (tokens, what, unit price). Only
    the classes that have tokens; each token in the narrowest class that holds it (cached
    reads are not also input), as the cost was computed; per-request prices per call. A
    line of a model no catalog version priced has no unit prices: its tokens are listed
    with ``NO_UNIT_PRICE``."""
    prices = line["unit_prices"]
    used = []
    for token_class in TOKEN_CLASSES:
        own = int(line.get(token_class.name, 0)) - sum(
            int(line.get(part.name, 0)) for part in parts_of(token_class)
        )
        if own:
            used.append(
                (
                    own,
                    f"{PRICE_LABELS[token_class.price]} tokens",
                    _unit(prices[token_class.price], "1M tokens"),
                )
            )
    if Decimal(prices.get("per_request") or "0") and int(line["events"]):
        used.append((int(line["events"]), "calls", _unit(prices["per_request"], "call")))
    return used


def price_lines(line: dict[str, Any]) -> list[str]:
    """``input 3.00 / 1M tokens``, one per price the line used; a line at a long-context
    rate says so first."""
    names = {"calls": "per request"}
    lines = [
        f"{names.get(what, what.removesuffix(' tokens'))} {price}"
        for _, what, price in billed_usage(line)
    ]
    rate = line.get("long_context_from")
    lines = [f"at the {rate_label(rate)} rate", *lines] if rate is not None else lines
    # A plan's terms after the unit prices they apply to (absent without a plan).
    return [*lines, *(terms_text(line["pricing"]) if "pricing" in line else [])]


def summary(document: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The summary rows as the forms present them: (row type, label, as shown, exact).

    Rounding happens once (SPEC §3): the lines and the subtotal are shown at every digit,
    as billed, and the rounding row is the document's step from the subtotal to the total,
    its one rounding to the cent. The column adds up as printed, and every figure shown is
    the document's (lines shown to the cent had a subtotal of their own, the sum of the
    cents, which was not the invoice's: three lines of 0.005 showed 0.03 for 0.015)."""
    total = Decimal(document["total_usd"])
    rows = [
        ("subtotal", "Subtotal", price_text(document["subtotal_usd"]), document["subtotal_usd"]),
        ("rounding", "Rounding", price_text(document["rounding_usd"]), document["rounding_usd"]),
        ("total", "Total", document["total_usd"], document["total_usd"]),
    ]
    if "amount_due_usd" in document:  # not on invoices issued before credits were shown
        credits = document["credits_applied_usd"]
        due = Decimal(document["amount_due_usd"])
        # The credits are shown as applied, at every digit (a grant of 5.005 drew 5.005,
        # never 5.01); the amount due is whole cents, so the step between them is its own
        # row, and total − credits + that step = amount due as printed.
        step = exact_difference(due, exact_difference(total, Decimal(credits)))
        rows.append(("credits", "Prepaid credits applied", price_text(credits), credits))
        if step != 0:
            rows.append(
                (
                    "amount_due_rounding",
                    "Rounding of the amount due",
                    money_text(step),
                    money_text(step),
                )
            )
        rows.append(
            (
                "amount_due",
                "Credit due to you" if due < 0 else "Amount due",
                cents(document["amount_due_usd"]),
                document["amount_due_usd"],
            )
        )
    return rows


def kind_of_document(document: dict[str, Any]) -> str:
    return str(document.get("kind") or INVOICE)


def customer_id(document: dict[str, Any]) -> str | None:
    customer = document.get("customer")
    return customer.get("id") if isinstance(customer, dict) else None


def customer_name(document: dict[str, Any]) -> str | None:
    """Who the document is addressed to: a registered customer's name, or the job's
    free-text ``customer`` when it has no registered one (then ``customer_id`` is empty)."""
    customer = document.get("customer")
    return customer.get("name") if isinstance(customer, dict) else None


# CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "invoice",
    "kind",
    "customer_id",
    "customer_name",
    "job_id",
    "row_type",
    "agent",
    "model",
    "provider",
    "catalog_version",
    "rate",
    "events",
    *TOKEN_FIELDS,
    "unit_prices",
    "amount_usd",
    "amount_exact_usd",
    "note",
    "job_ids",
)
"""Every row names the invoice, the customer (``customer_id`` and ``customer_name``: a job
without a registered customer is billed to its free-text ``customer``, which has no id) and
the job. ``job_id`` is always one job id
or empty: a job's invoice names its job on every row, a month's invoice each line's job on
the line and none on its own rows (the minimum, the summary), which bill several.
``job_ids`` names the jobs of every row as a JSON array (``["job a","job-b"]``, sorted): a
job id may hold any character but NUL (SPEC §2), spaces, commas and quotes included, so no
separator could list them unambiguously; JSON's escaping does, and a sheet filtered on
``"job-a"`` in it finds the month's totals that include that job. ``row_type`` tells the lines
(``line``; ``minimum``, a plan's monthly minimum topping a month up) from the summary
(``subtotal``, ``rounding``, ``total``, ``credits``, ``amount_due_rounding`` where the
credits have sub-cent digits, ``amount_due``) and from what is listed but not billed
(``not_billed``). ``amount_usd`` is the amount as the invoice presents it and adds up down
the column: the lines, at every digit, to the subtotal; the subtotal and its one rounding
to the total, to the cent; the total less the credits, shown at every digit they were
applied with, plus the amount due's rounding, to the amount due. ``amount_exact_usd`` is
the document's figure (the same digits, without the padding to two decimals)."""


def _rate(line: dict[str, Any]) -> str:
    """The rate a line's unit prices are; a line issued before long context was at base."""
    return str(line.get("rate") or rate_label(None))


def _jobs_cell(jobs: list[str]) -> str:
    """Job ids as a JSON array, every character of each kept (``ensure_ascii=False``) and
    quotes, backslashes and control characters escaped: one reading only. It starts with
    ``[``, so no spreadsheet runs it."""
    return json.dumps(sorted(set(jobs)), ensure_ascii=False, separators=(",", ":"))


def _jobs_covered(document: dict[str, Any]) -> list[str]:
    """The jobs a document bills: its job, or (a month's invoice) every job its lines and
    its not-billed lines name."""
    if document["job_id"] is not None:
        return [document["job_id"]]
    lines = [*document["lines"], *document.get("not_billed", [])]
    return [line["job_id"] for line in lines if line.get("job_id")]


CSV_BOM = "\ufeff"
"""The CSV starts with a UTF-8 byte-order mark: the CSV form is the spreadsheet's (machines
read the JSON), and Excel reads a CSV without one in the system's legacy code page, which
garbles every non-ASCII character (customer names, job ids, the rule's arrows and minus
signs). LibreOffice, Google Sheets, Numbers and ``utf-8-sig`` readers skip it."""


def to_csv(document: dict[str, Any]) -> str:
    """One ``line`` row per invoice line, then the summary rows, then what is not billed;
    after the byte-order mark (``CSV_BOM``)."""
    out = io.StringIO()
    out.write(CSV_BOM)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    jobs = _jobs_cell(_jobs_covered(document))
    head = [
        document["number"] or "preview",
        kind_of_document(document),
        spreadsheet_text(customer_id(document)),
        spreadsheet_text(customer_name(document)),
        spreadsheet_text(document["job_id"]),
    ]
    blank_line = [""] * (len(CSV_COLUMNS) - len(head) - 5)

    def line_row(kind: str, line: dict[str, Any], note: str) -> list[Any]:
        if line.get("line_type") == "minimum":
            return [
                *head,
                "minimum",
                *blank_line,
                price_text(line["amount_usd"]),
                line["amount_usd"],
                line["description"],
                jobs,
            ]
        # A monthly invoice's lines name their job (the document names none).
        row_head = [*head[:-1], spreadsheet_text(line["job_id"])] if "job_id" in line else head
        row_jobs = _jobs_cell([line["job_id"]]) if "job_id" in line else jobs
        return [
            *row_head,
            kind,
            spreadsheet_text(line["agent"]),
            spreadsheet_text(line["model"]),
            spreadsheet_text(line["provider"]),
            line["catalog_version"],
            _rate(line),
            line["events"],
            *(line.get(k, 0) for k in TOKEN_FIELDS),
            "; ".join(price_lines(line)),
            price_text(line["amount_usd"]),
            line["amount_usd"],
            note,
            row_jobs,
        ]

    for line in document["lines"]:
        writer.writerow(line_row("line", line, ""))
    notes = {
        "subtotal": f"{document['events']} events",
        "rounding": document["rounding_rule"],
        "total": document["currency"],
    }
    for row_type, _label, shown, exact in summary(document):
        writer.writerow([*head, row_type, *blank_line, shown, exact, notes.get(row_type, ""), jobs])
    if document["unpriced_events"]:
        n = document["unpriced_events"]
        writer.writerow(
            [*head, "not_billed", *blank_line, "", "", f"{n} unpriced events, not billed", jobs]
        )
    for line in document.get("not_billed", []):  # absent from invoices issued before it
        writer.writerow(line_row("not_billed", line, line["reason"]))
    return out.getvalue()
