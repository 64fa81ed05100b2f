"""A customer, a new one, a change to one; a new rate plan version as an author writes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

INVOICING = ("per_job", "monthly")
"""How a customer is invoiced: an invoice per job, or one per UTC month of all its jobs."""

CLEARABLE_FIELDS = ("email", "address", "tax_id", "plan_id", "low_balance_usd", "webhook_url")
"""The optional fields a change may set back to null."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCustomer:
    id: str
    name: str
    email: str | None = None
    address: str | None = None
    tax_id: str | None = None
    plan_id: str | None = None
    """The rate plan that prices its jobs; none: ``LUC_DEFAULT_PLAN``, else the catalog cost."""
    invoicing: str = "per_job"
    low_balance_usd: Decimal | None = None
    """Prepaid credits below this raise ``customer.credits_low``."""
    credit_stop: bool = False
    """Refuse its calls while its prepaid balance is zero."""
    webhook_url: str | None = None
    """Where its credit alerts are posted (signed); none: recorded, not sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer(NewCustomer):
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerChanges:
    """A PATCH: ``None`` leaves a field as it is; ``clear`` names fields set to null."""

    name: str | None = None
    email: str | None = None
    address: str | None = None
    tax_id: str | None = None
    plan_id: str | None = None
    invoicing: str | None = None
    low_balance_usd: Decimal | None = None
    credit_stop: bool | None = None
    webhook_url: str | None = None
    clear: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class NewPlanVersion:
    """A plan version as an author writes it: money already parsed, ``models`` as given
    (model id or alias → the catalog's price entry, decimal strings)."""

    effective_from: datetime
    basis: str
    markup: Decimal
    per_request_usd: Decimal = Decimal(0)
    minimum_monthly_usd: Decimal | None = None
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
