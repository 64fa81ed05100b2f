"""Budgets, the alerts they raise, and the answer to "may this call go ahead?"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from service.money import exact

SCOPES = ("global", "agent", "job", "model", "customer")
"""``customer`` counts the entries priced for that customer: its jobs' events."""
PERIODS = ("lifetime", "day", "month")
MEASURES = {"cost": "cost_usd", "actual_cost": "actual_cost_usd", "price": "price_usd"}
"""What a budget counts (SPEC §6) → the ledger column it sums: the catalog's list price
(the default), the actual cost (the provider's reported cost where there is one), or the
customer's price."""
DEFAULT_THRESHOLDS = (Decimal("0.5"), Decimal("0.8"), Decimal("1"))


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetDefinition:
    """What a budget is, as it is given and as it is stored."""

    scope: str
    scope_id: str | None
    period: str
    limit_usd: Decimal
    thresholds: list[Decimal]
    """Fractions of the limit in (0, 1], ascending once stored."""
    hard: bool
    webhook_url: str | None
    measure: str = "cost"
    """A key of ``MEASURES``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget(BudgetDefinition):
    id: int
    has_own_secret: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NewBudget(BudgetDefinition):
    webhook_secret: str | None


ALERT_TYPES = ("budget.threshold_crossed", "customer.credits_low", "customer.credits_exhausted")
"""What an alert says: a budget threshold crossed, or a customer's prepaid credits low or
exhausted (SPEC §12). The type is the webhook body's ``type``."""
BUDGET_ALERT, CREDITS_LOW, CREDITS_EXHAUSTED = ALERT_TYPES

DELIVERIES = ("none", "pending", "delivered", "dead")
"""Where an alert's webhook delivery stands: ``none`` (no webhook), ``pending`` (being
retried, or waiting behind its budget's older alert), ``delivered``, ``dead`` (its retry
window spent, or a 410: re-sent only by ``redeliver``)."""
NO_WEBHOOK, PENDING, DELIVERED, DEAD = DELIVERIES


@dataclass(frozen=True, slots=True)
class Alert:
    """A budget alert (the budget fields set) or a credit alert (the customer fields)."""

    id: str
    type: str
    budget_id: int | None
    scope: str | None
    scope_id: str | None
    period_start: datetime | None
    threshold: Decimal | None
    spent_usd: Decimal | None
    limit_usd: Decimal | None
    customer_id: str | None
    balance_usd: Decimal | None
    """A credit alert's balance when it fired."""
    low_balance_usd: Decimal | None
    """The customer's low balance then (null: none set)."""
    created_at: datetime
    delivery: str
    """One of ``DELIVERIES``."""
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    measure: str | None = "cost"
    """What the budget counts, as ``spent_usd`` and ``limit_usd`` are figures of it (None:
    a credit alert)."""


@dataclass(frozen=True, slots=True)
class BudgetStanding:
    """One budget as a pre-call check sees it, in the period that contains now."""

    budget: Budget
    period_start: datetime
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal:
        with exact():  # limits have up to 40 significant digits; Python's default keeps 28
            return self.budget.limit_usd - self.spent_usd - self.reserved_usd


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to "may this call go ahead?"; with ``reservation_id`` when the estimate is
    now held against the call's hard budgets (``reserve``; a look, ``check``, holds nothing).
    """

    allowed: bool
    remaining_usd: Decimal | None
    """The least the deciding budgets have left: the hard ones when any applies, else every
    one (after this reservation, when one was made)."""
    standings: list[BudgetStanding]
    reason: str | None
    """Why a call was refused: the customer's credits at zero under credit_stop, else the
    first hard budget without room."""
    reservation_id: str | None = None
    expires_at: datetime | None = None
    refused_by: str | None = None
    """``budget`` (a hard budget without room) or ``credits`` (the customer's credit_stop
    with no prepaid credits left); None when allowed."""
