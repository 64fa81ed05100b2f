"""Invoice money rules and forms, without a database: rounding, canonical JSON, CSV."""

from __future__ import annotations

import csv
import hashlib
import io
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from service.api.schemas.invoices import InvoiceLineOut
from service.invoices.forms import billed_usage, price_lines, summary, to_csv
from service.invoices.models import round_total
from service.invoices.page import to_html
from service.invoices.render import canonical_json, digest_of
from service.invoices.verify import verify_document
from service.wire import cents_text, money_text

D = Decimal


def test_the_total_rounds_half_up_away_from_zero_and_only_at_the_half() -> None:
    assert round_total(D("0.125")) == D("0.13")  # half even would give 0.12
    assert round_total(D("0.135")) == D("0.14")
    assert round_total(D("0.1249999999")) == D("0.12")
    assert round_total(D("-0.125")) == D("-0.13")  # a credit rounds like a charge
    assert round_total(D("2.675")) == D("2.68")  # float round() gives 2.67


def test_a_total_that_rounds_to_nothing_is_zero_not_minus_zero() -> None:
    assert cents_text(round_total(D("-0.001"))) == "0.00"
    assert cents_text(round_total(D("0.004"))) == "0.00"
    assert cents_text(D("1")) == "1.00"


def test_money_text_is_plain_decimal_at_full_precision() -> None:
    assert money_text(D("1E-7")) == "0.0000001"
    assert money_text(D("0.0581200")) == "0.05812"
    assert money_text(D("-0.00")) == "0"
    assert money_text(D("120")) == "120"


def test_canonical_json_sorts_keys_has_no_whitespace_and_keeps_unicode() -> None:
    text = canonical_json({"b": "0.10", "a": [1, {"d": None, "c": "→"}]})
    assert text == '{"a":[1,{"c":"→","d":null}],"b":"0.10"}'


def document() -> dict[str, Any]:
    body: dict[str, Any] = {
        "number": "LUC-2026-000007",
        "job_id": '=HYPERLINK("x")',
        "currency": "USD",
        "lines": [
            {
                "agent": "@agent",
                "model": "m/one",
                "provider": "p",
                "catalog_version": 1,
                "tier": "fast",
                "events": 2,
                "input_tokens": 10,
                "cached_input_tokens": 0,
                "cache_write_tokens": 0,
                "output_tokens": 5,
                "reasoning_tokens": 0,
                "unit_prices": {
                    "input": "0.1",
                    "output": "0.4",
                    "cache_read": "0.1",
                    "cache_write": "0.1",
                    "reasoning": "0.4",
                    "per_request": "0",
                },
                "amount_usd": "0.1",
            },
            {
                "agent": "b",
                "model": "m/two",
                "provider": "p",
                "catalog_version": 2,
                "tier": None,
                "events": 1,
                "input_tokens": 1,
                "cached_input_tokens": 0,
                "cache_write_tokens": 0,
                "output_tokens": 1,
                "reasoning_tokens": 0,
                "unit_prices": {
                    "input": "1",
                    "output": "1",
                    "cache_read": "1",
                    "cache_write": "1",
                    "reasoning": "1",
                    "per_request": "0",
                },
                "amount_usd": "0.025",
            },
        ],
        "events": 3,
        "subtotal_usd": "0.125",
        "rounding_rule": "half up",
        "rounding_usd": "0.005",
        "total_usd": "0.13",
        "unpriced_events": 2,
    }
    text = canonical_json(body)
    return {**body, "digest": hashlib.sha256(text.encode()).hexdigest()}


def test_an_untouched_document_verifies_and_any_change_does_not() -> None:
    good = document()
    assert digest_of(good) == good["digest"]
    assert verify_document(good).ok

    changed = document()
    changed["lines"][1]["input_tokens"] = 2
    result = verify_document(changed)
    assert not result.ok and "digest mismatch" in result.problems[0]


def test_a_document_whose_arithmetic_is_wrong_fails_even_with_a_matching_digest() -> None:
    bad = document()
    bad["total_usd"] = "0.12"  # half even, not the stated rule
    bad["rounding_usd"] = "-0.005"
    bad["digest"] = digest_of(bad)
    result = verify_document(bad)
    assert result.problems == ["the total is not the subtotal rounded by the stated rule"]


def test_the_csv_rows_add_up_as_shown_and_exactly_and_text_cannot_become_a_formula() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(document()).removeprefix("\ufeff"))))
    # An invoice issued before credits were shown: no credits nor amount-due rows.
    assert [r["row_type"] for r in rows] == [
        "line",
        "line",
        "subtotal",
        "rounding",
        "total",
        "not_billed",
    ]
    lines = [r for r in rows if r["row_type"] == "line"]
    # 0.1 shown 0.10 and 0.025 at every digit: subtotal 0.125, rounded once, half up, to
    # 0.13 (+0.005). To the cent, the lines showed 0.10 and 0.03, a subtotal of 0.13 and a
    # rounding of 0.00, neither the invoice's.
    assert [(r["amount_usd"], r["amount_exact_usd"]) for r in lines] == [
        ("0.10", "0.1"),
        ("0.025", "0.025"),
    ]
    assert (rows[2]["amount_usd"], rows[2]["amount_exact_usd"]) == ("0.125", "0.125")
    assert (rows[3]["amount_usd"], rows[3]["amount_exact_usd"]) == ("0.005", "0.005")
    assert (rows[4]["amount_usd"], rows[4]["amount_exact_usd"]) == ("0.13", "0.13")
    assert sum(D(r["amount_exact_usd"]) for r in lines) == D("0.125")
    assert lines[0]["agent"] == "'@agent"
    assert lines[0]["job_id"] == '\'=HYPERLINK("x")'
    assert {r["invoice"] for r in rows} == {"LUC-2026-000007"}


def test_verify_reads_amounts_with_more_digits_than_any_input_has() -> None:
    # A subtotal of 10^12 USD and 36 decimal places: 49 significant digits, exactly summed.
    amount = "1000000000000.004999999999999999999999999999999999"
    document = {
        "number": "LUC-2026-000001",
        "lines": [{"amount_usd": amount}],
        "subtotal_usd": amount,
        "total_usd": "1000000000000.00",
        "rounding_usd": "-0.004999999999999999999999999999999999",
    }
    verified = verify_document({**document, "digest": digest_of(document)})
    assert (verified.ok, verified.problems) == (True, [])
    forged = {**document, "subtotal_usd": "1e12"}
    assert verify_document({**forged, "digest": digest_of(forged)}).problems == [
        "the document's amounts cannot be read: subtotal_usd: '1e12' has an exponent; "
        "write every digit (a plain decimal string is expected, e.g. '12.05')"
    ]
    # A document without lines says so (it read "cannot be read: 'lines'").
    bare = {k: v for k, v in document.items() if k != "lines"}
    assert (
        "the document's amounts cannot be read: it has no 'lines'"
        in verify_document({**bare, "digest": digest_of(bare)}).problems
    )


def old_page(old: dict[str, Any]) -> dict[str, Any]:
    """The fields of a document issued before the issuer, bill-to, kind and credits."""
    return {
        **old,
        "issued_at": None,
        "period_start": None,
        "period_end": None,
        "customer": None,
        "title": None,
        "reference": None,
        "follow_up_of": None,
        "notes": [],
        "covered_entries": 3,
        "lines": [{**line, "model_name": None} for line in old["lines"]],
    }


def test_an_invoice_issued_before_a_token_class_existed_renders_it_as_zero() -> None:
    # An invoice keeps the document it was issued with; a class declared since
    # (service.tokens) is absent from its lines, which had none of those tokens.
    old = document()
    for line in old["lines"]:
        del line["reasoning_tokens"]
    rows = [r for r in csv.DictReader(io.StringIO(to_csv(old))) if r["row_type"] == "line"]
    assert [r["reasoning_tokens"] for r in rows] == ["0", "0"]
    page = to_html(old_page(old), None)
    assert "reasoning" not in page  # a class without tokens has no price line
    # The first line: 10 input tokens at 0.10, 5 output at 0.40.
    assert "<td class='qty'>10</td><td>input tokens</td><td>× 0.10 / 1M tokens</td>" in page
    assert "<td class='qty'>5</td><td>output tokens</td><td>× 0.40 / 1M tokens</td>" in page
    # Issued before the issuer was configurable: the issuer it named then.
    assert "LUC · LLM usage cost ledger" in page


def test_an_invoice_with_actual_costs_in_its_lines_is_served_as_issued_but_never_shows_them() -> (
    None
):
    # Invoices issued between actual costs and the internal view carry actual_cost_usd in
    # their lines: the wire form keeps it (the digest covers the document as issued), the
    # CSV and the page, the customer's forms, do not show it.
    old = document()
    lines = [{**line, "model_name": None, "actual_cost_usd": "0.09"} for line in old["lines"]]
    served = [
        msgspec.json.decode(msgspec.json.encode(msgspec.convert(x, InvoiceLineOut))) for x in lines
    ]
    assert served == lines
    without = [{**line, "model_name": None} for line in old["lines"]]
    served = [
        msgspec.json.decode(msgspec.json.encode(msgspec.convert(x, InvoiceLineOut)))
        for x in without
    ]
    assert served == without
    recorded = {**old, "lines": lines}
    assert "actual" not in to_csv(recorded) and "0.09" not in to_csv(recorded)
    page = to_html({**old_page(old), "lines": lines}, None)
    assert "0.09" not in page and "Actual cost" not in page


def priced_line(**fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "events": 3,
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 0,
        "reasoning_tokens": 0,
        "unit_prices": {
            "input": "3",
            "output": "15",
            "cache_read": "0.3",
            "cache_write": "3.75",
            "reasoning": "15",
            "per_request": "0",
        },
        **fields,
    }
    return line


def test_a_line_shows_one_price_per_class_it_has_tokens_of_each_token_counted_once() -> None:
    # 1,000 prompt tokens of which 600 cached and 100 written: 300 at the input price.
    line = priced_line(
        input_tokens=1_000, cached_input_tokens=600, cache_write_tokens=100, output_tokens=50
    )
    assert price_lines(line) == [
        "input 3.00 / 1M tokens",
        "cache read 0.30 / 1M tokens",
        "cache write 3.75 / 1M tokens",
        "output 15.00 / 1M tokens",
    ]
    assert billed_usage(line)[0] == (300, "input tokens", "3.00 / 1M tokens")
    # Only reasoning among the completion tokens: no output price line.
    assert price_lines(priced_line(output_tokens=40, reasoning_tokens=40)) == [
        "reasoning 15.00 / 1M tokens"
    ]


def test_a_per_request_price_is_per_call_and_a_long_context_line_names_its_rate() -> None:
    line = priced_line(input_tokens=250_000, long_context_from=200_001)
    line["unit_prices"] = {**line["unit_prices"], "input": "6", "per_request": "0.0005"}
    assert price_lines(line) == [
        "at the long context ≥ 200,001 input tokens rate",
        "input 6.00 / 1M tokens",
        "per request 0.0005 / call",
    ]
    assert billed_usage(line)[-1] == (3, "calls", "0.0005 / call")


def test_a_reversal_line_shows_its_negative_counts_at_the_prices_it_takes_back() -> None:
    line = priced_line(events=-1, input_tokens=-1_000, cached_input_tokens=-900)
    assert billed_usage(line) == [
        (-100, "input tokens", "3.00 / 1M tokens"),
        (-900, "cache read tokens", "0.30 / 1M tokens"),
    ]


@pytest.mark.parametrize(
    ("amounts", "shown", "subtotal", "rounding", "total"),
    [
        # 0.004 × 3 = 0.012 → 0.01, rounding −0.002 (to the cent, each line showed 0.00)
        (["0.004", "0.004", "0.004"], ["0.004", "0.004", "0.004"], "0.012", "-0.002", "0.01"),
        # 0.005 × 3 = 0.015 → 0.02 half up, rounding +0.005 (to the cent, each line showed
        # 0.01: a subtotal of 0.03 and a rounding of −0.01, neither the invoice's)
        (["0.005", "0.005", "0.005"], ["0.005", "0.005", "0.005"], "0.015", "0.005", "0.02"),
        # whole cents: nothing to round, still two decimals
        (["0.5", "1"], ["0.50", "1.00"], "1.50", "0.00", "1.50"),
        # a credit: −0.102 + 0.021 = −0.081 → −0.08, rounding +0.001
        (["-0.102", "0.021"], ["-0.102", "0.021"], "-0.081", "0.001", "-0.08"),
    ],
)
def test_the_lines_and_subtotal_show_every_digit_and_the_total_is_rounded_once(
    amounts: list[str], shown: list[str], subtotal: str, rounding: str, total: str
) -> None:
    exact = sum((D(a) for a in amounts), D(0))
    document = {
        "number": "LUC-2026-000001",
        "kind": "invoice",
        "job_id": "job-1",
        "customer": None,
        "events": len(amounts),
        "currency": "USD",
        "rounding_rule": "half up",
        "unpriced_events": 0,
        "lines": [
            {
                **priced_line(model="m", provider="p", catalog_version=1),
                "amount_usd": a,
                "agent": f"A{n}",
            }
            for n, a in enumerate(amounts)
        ],
        "subtotal_usd": money_text(exact),
        "rounding_usd": money_text(round_total(exact) - exact),
        "total_usd": cents_text(round_total(exact)),
    }
    rows = {row_type: (shown, exact) for row_type, _, shown, exact in summary(document)}
    assert (rows["subtotal"][0], rows["rounding"][0], rows["total"][0]) == (
        subtotal,
        rounding,
        total,
    )
    # The CSV shows the same: every line at every digit, and the column adds up.
    parsed = list(csv.DictReader(io.StringIO(to_csv(document).removeprefix("\ufeff"))))
    by_type = [(row["row_type"], row["amount_usd"]) for row in parsed]
    assert by_type == [
        *(("line", a) for a in shown),
        ("subtotal", subtotal),
        ("rounding", rounding),
        ("total", total),
    ]
    assert sum((D(a) for a in shown), D(0)) == D(subtotal)
    assert D(subtotal) + D(rounding) == D(total)


def test_a_number_whose_year_is_not_the_year_of_issue_fails_verification() -> None:
    """An issue that waited on the counters across New Year's midnight was numbered in the
    old year and dated in the new: such a document is inconsistent, and says so."""
    body = {
        "number": "LUC-2026-000001",
        "issued_at": "2027-01-01T00:00:00.100000Z",
        "lines": [{"amount_usd": "1"}],
        "subtotal_usd": "1",
        "total_usd": "1.00",
        "rounding_usd": "0.00",
    }
    assert verify_document({**body, "digest": digest_of(body)}).problems == [
        "the number's year (2026) is not the year of issued_at (2027, UTC)"
    ]
    # The year is UTC's: 23:30 on 31 December in New York is 2027 in UTC.
    new_york = {**body, "number": "LUC-2027-000002", "issued_at": "2026-12-31T23:30:00-05:00"}
    assert verify_document({**new_york, "digest": digest_of(new_york)}).ok
    good = {**body, "number": "LUC-2027-000001"}
    assert verify_document({**good, "digest": digest_of(good)}).ok
