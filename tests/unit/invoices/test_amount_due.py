"""What an invoice asks for (``invoices.models.amount_due``): the exact subtotal less the
exact prepaid credits applied, rounded once to the cent, half up; signed on either kind
(never clamped: a clamp drops money from every document and balance). The forms show the
credits as drawn and the step to the amount due as its own row (``amount_due_rounding``).
Documents issued under the earlier rule verify by the rule they state."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from service.invoices.forms import summary
from service.invoices.models import (
    ROUNDING_RULE,
    ROUNDING_RULE_CREDITS_TO_CENTS,
    amount_due,
    amount_due_rounding,
    legacy_amount_due,
)
from service.invoices.render import digest_of
from service.invoices.verify import verify_document

D = Decimal


def test_the_amount_due_is_the_exact_difference_rounded_once() -> None:
    assert amount_due(D("6.50"), D("5")) == D("1.50")
    # 6.50 − 4.995 = 1.505 → 1.51 (half up), not 6.50 − 5.00 (the credits rounded first).
    assert amount_due(D("6.50"), D("4.995")) == D("1.51")
    assert amount_due(D("6.50"), D("4.9949")) == D("1.51")
    assert amount_due(D("0.00"), D("0")) == D("0.00")
    # A subtotal of 5.005 (total 5.01) fully paid by a 5.005 grant: nothing is due.
    assert amount_due(D("5.005"), D("5.005")) == D("0.00")
    assert amount_due_rounding(D("5.01"), D("5.005"), D("0.00")) == D("-0.005")


def test_usage_covered_by_credits_to_the_last_digit_owes_nothing() -> None:
    # A total rounded down to 0.00 from 0.004, all of it drawn from credits.
    assert amount_due(D("0.004"), D("0.004")) == D("0.00")
    assert amount_due(D("0.0149"), D("0.0149")) == D("0.00")


def test_the_amount_due_is_signed_on_either_kind() -> None:
    assert amount_due(D("-0.78"), D("-0.75")) == D("-0.03")
    assert amount_due(D("-0.78"), D("-0.78")) == D("0.00")
    assert amount_due(D("-0.78"), D("0")) == D("-0.78")
    # A credit note whose entries gave back more credits than its total: owed by the
    # customer (its rise paid in money), not dropped.
    assert amount_due(D("-0.29"), D("-0.40")) == D("0.11")
    # An invoice whose entries drew more credits than its total: owed to the customer.
    assert amount_due(D("0.40"), D("0.80")) == D("-0.40")


def test_the_earlier_rule_rounded_the_credits_and_clamped() -> None:
    assert legacy_amount_due(D("6.50"), D("4.995")) == D("1.50")
    assert legacy_amount_due(D("0.40"), D("0.80")) == D("0.00")
    assert legacy_amount_due(D("-0.29"), D("-0.40")) == D("0.00")


def _document(rule: str, credits: str, due: str, **more: str) -> dict[str, Any]:
    body = {
        "number": "LUC-2026-000001",
        "lines": [{"amount_usd": "5.40"}],
        "subtotal_usd": "5.40",
        "rounding_rule": rule,
        "rounding_usd": "0",
        "total_usd": "5.40",
        "credits_applied_usd": credits,
        "amount_due_usd": due,
        **more,
    }
    return {**body, "digest": digest_of(body)}


def test_each_document_verifies_by_the_rule_it_states() -> None:
    new = _document(ROUNDING_RULE, "5.005", "0.40", amount_due_rounding_usd="0.005")
    assert verify_document(new).problems == []
    old = _document(ROUNDING_RULE_CREDITS_TO_CENTS, "5.005", "0.39")
    assert verify_document(old).problems == []
    # Each under the other's rule is wrong.
    assert verify_document(_document(ROUNDING_RULE, "5.005", "0.39")).problems == [
        "amount_due_usd is not subtotal − credits_applied_usd rounded to the cent",
        "amount_due_rounding_usd is not amount due − (total − credits)",
    ]
    assert verify_document(_document(ROUNDING_RULE_CREDITS_TO_CENTS, "5.005", "0.40")).problems
    # The step stated must be the step.
    wrong_step = _document(ROUNDING_RULE, "5.005", "0.40", amount_due_rounding_usd="0.004")
    assert verify_document(wrong_step).problems == [
        "amount_due_rounding_usd is not amount due − (total − credits)"
    ]


def test_the_forms_show_the_credits_as_drawn_and_add_up_as_printed() -> None:
    for document in (
        _document(ROUNDING_RULE, "5.005", "0.40", amount_due_rounding_usd="0.005"),
        # An invoice issued under the earlier rule is shown the same honest way.
        _document(ROUNDING_RULE_CREDITS_TO_CENTS, "5.005", "0.39"),
    ):
        rows = {row_type: shown for row_type, _label, shown, _exact in summary(document)}
        assert rows["credits"] == "5.005"
        total, credits, due = D(rows["total"]), D(rows["credits"]), D(rows["amount_due"])
        assert total - credits + D(rows["amount_due_rounding"]) == due
    # Whole-cent credits need no step row.
    plain = _document(ROUNDING_RULE, "5.00", "0.40")
    assert [r[0] for r in summary(plain)] == [
        "subtotal",
        "rounding",
        "total",
        "credits",
        "amount_due",
    ]
    assert verify_document(plain).problems == []
