"""Which credit alerts a customer's standing fires (``budgets.credit_alerts.due_alerts``):
an armed alert whose condition holds, low below ``low_balance_usd``, exhausted at zero."""

from __future__ import annotations

from decimal import Decimal

from service.budgets.credit_alerts import due_alerts
from service.customers.credits import CreditStanding


def standing(
    balance: str, low: str | None = "10", *, low_armed: bool = True, exhausted_armed: bool = True
) -> CreditStanding:
    return CreditStanding(
        customer_id="acme",
        balance_usd=Decimal(balance),
        low_balance_usd=None if low is None else Decimal(low),
        low_alert_armed=low_armed,
        exhausted_alert_armed=exhausted_armed,
        webhook_url=None,
    )


def test_low_fires_strictly_below_the_low_balance() -> None:
    assert due_alerts(standing("10")) == []
    assert due_alerts(standing("9.99")) == ["customer.credits_low"]


def test_a_balance_at_zero_is_exhausted_and_low_when_both_are_armed() -> None:
    assert due_alerts(standing("0")) == ["customer.credits_low", "customer.credits_exhausted"]
    assert due_alerts(standing("0", low_armed=False)) == ["customer.credits_exhausted"]


def test_a_fired_alert_stays_quiet_until_re_armed() -> None:
    assert due_alerts(standing("3", low_armed=False)) == []
    assert due_alerts(standing("0", low_armed=False, exhausted_armed=False)) == []


def test_without_a_low_balance_only_exhaustion_fires() -> None:
    assert due_alerts(standing("0.01", low=None)) == []
    assert due_alerts(standing("0", low=None)) == ["customer.credits_exhausted"]
