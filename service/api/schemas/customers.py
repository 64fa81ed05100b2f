"""Customers: who is billed, how, and under which rate plan."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import msgspec

from service.api.schemas.common import totals_fields, wire_struct
from service.customers.models import Customer, CustomerChanges, NewCustomer
from service.customers.service import parse_amount
from service.rollups.models import Totals
from service.wire import money_text

# Lengths, shapes and plans are checked by ``customers.service`` (422 naming the field,
# for REST and ``luc customers`` alike), not here.


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    """1–128 characters: the ``customer_id`` its usage events name."""
    name: str
    email: str | None = None
    address: str | None = None
    tax_id: str | None = None
    plan_id: str | None = None
    """The rate plan pricing its jobs; absent: ``LUC_DEFAULT_PLAN``, else the catalog cost."""
    invoicing: str = "per_job"
    """``per_job`` (an invoice per job) or ``monthly`` (one per UTC month)."""
    low_balance_usd: str | None = None
    """Decimal string: prepaid credits below it raise ``customer.credits_low``."""
    credit_stop: bool = False
    """Refuse the customer's calls while its prepaid balance is zero."""
    webhook_url: str | None = None
    """Where its credit alerts (``customer.credits_low``, ``customer.credits_exhausted``)
    are posted, signed with LUC_WEBHOOK_SECRET; absent: recorded (GET /v1/alerts), not sent."""

    def new_customer(self) -> NewCustomer:
        fields: dict[str, Any] = msgspec.structs.asdict(self)
        if self.low_balance_usd is not None:
            fields["low_balance_usd"] = parse_amount("low_balance_usd", self.low_balance_usd)
        return NewCustomer(**fields)


class CustomerPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Absent fields stay as they are; ``null`` clears an optional one (email, address,
    tax_id, plan_id, low_balance_usd, webhook_url)."""

    name: str | msgspec.UnsetType | None = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    address: str | msgspec.UnsetType | None = msgspec.UNSET
    tax_id: str | msgspec.UnsetType | None = msgspec.UNSET
    plan_id: str | msgspec.UnsetType | None = msgspec.UNSET
    """A plan change prices the customer's usage from then on."""
    invoicing: str | msgspec.UnsetType | None = msgspec.UNSET
    low_balance_usd: str | msgspec.UnsetType | None = msgspec.UNSET
    credit_stop: bool | msgspec.UnsetType | None = msgspec.UNSET
    webhook_url: str | msgspec.UnsetType | None = msgspec.UNSET

    def changes(self) -> CustomerChanges:
        given: dict[str, Any] = {
            name: value
            for name, value in msgspec.structs.asdict(self).items()
            if value is not msgspec.UNSET and value is not None
        }
        if "low_balance_usd" in given:
            given["low_balance_usd"] = parse_amount("low_balance_usd", given["low_balance_usd"])
        cleared = frozenset(
            name for name, value in msgspec.structs.asdict(self).items() if value is None
        )
        return CustomerChanges(**given, clear=cleared)


class CustomerOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    email: str | None
    address: str | None
    tax_id: str | None
    plan_id: str | None
    invoicing: str
    low_balance_usd: str | None
    credit_stop: bool
    webhook_url: str | None
    created_at: str
    updated_at: str
    # Month-to-date money of the customer's jobs (the current UTC month), from the
    # customer × month rollup: what its entries were priced at, what they cost.
    month: str | None = None
    """The UTC month the three figures below are of (``YYYY-MM``)."""
    price_usd: str | None = None
    """Month to date: what the customer's usage is billed at, by its plan."""
    actual_cost_usd: str | None = None
    """Month to date: what that usage cost (the provider's figure where reported)."""
    margin_usd: str | None = None
    """Month to date: ``price_usd − actual_cost_usd``."""
    credit_balance_usd: str | None = None
    """The prepaid credits left now (``GET /v1/customers/{id}/credits``): "0" without any."""


class CustomerPage(msgspec.Struct):
    items: list[CustomerOut]
    next_cursor: str | None


def customer_out(
    customer: Customer,
    month: date | None = None,
    totals: Totals | None = None,
    credit_balance_usd: Decimal | None = None,
) -> CustomerOut:
    """``customer`` with its month-to-date figures of ``month`` (``totals``: none yet, all
    zero; without ``month``, none) and its prepaid balance (None: not read)."""
    balance = None if credit_balance_usd is None else money_text(credit_balance_usd)
    if month is None:
        return wire_struct(
            CustomerOut, customer, **dict.fromkeys(_MONTH), credit_balance_usd=balance
        )
    # No usage yet: all zero; else as every total says them (null where no event of the
    # month knows one: ``Totals.unknown_measures``).
    figures = totals_fields(totals) if totals is not None else dict.fromkeys(_MONTH, "0")
    return wire_struct(
        CustomerOut,
        customer,
        **{name: figures[name] for name in _MONTH[1:]},
        month=month.strftime("%Y-%m"),
        credit_balance_usd=balance,
    )


_MONTH = ("month", "price_usd", "actual_cost_usd", "margin_usd")
