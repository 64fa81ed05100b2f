"""What an invoice asks for (``invoices.models.amount_due``): the total less the prepaid
credits applied, those rounded to the cent by the total's rule (half up) so the printed
column adds up; never below zero on an invoice, never above on a credit note."""

from __future__ import annotations

from decimal import Decimal

from service.invoices.models import amount_due

D = Decimal


def test_the_credits_are_rounded_once_like_the_total_so_the_column_adds_up() -> None:
    assert amount_due(D("6.50"), D("5")) == D("1.50")
    # 4.995 is printed 5.00 (half up): 6.50 − 5.00 = 1.50, not a rounding of 1.505.
    assert amount_due(D("6.50"), D("4.995")) == D("1.50")
    assert amount_due(D("6.50"), D("4.9949")) == D("1.51")
    assert amount_due(D("0.00"), D("0")) == D("0.00")


def test_an_invoice_never_asks_for_less_than_nothing() -> None:
    # A total rounded down to 0.00 from 0.004, all of it drawn from credits.
    assert amount_due(D("0.00"), D("0.004")) == D("0.00")
    assert amount_due(D("0.01"), D("0.0149")) == D("0.00")


def test_a_credit_note_owes_money_only_for_what_came_back_as_no_credit() -> None:
    assert amount_due(D("-0.78"), D("-0.75")) == D("-0.03")
    assert amount_due(D("-0.78"), D("-0.78")) == D("0.00")
    assert amount_due(D("-0.78"), D("0")) == D("-0.78")
    # Never a credit note asking for money.
    assert amount_due(D("-0.78"), D("-0.80")) == D("0.00")
