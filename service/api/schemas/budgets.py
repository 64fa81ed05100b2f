"""Budgets: definitions, standings, the pre-call check and reservations, alerts."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

from service.api.schemas.common import ExactNumber, one_of, wire_struct
from service.budgets.models import (
    DEFAULT_THRESHOLDS,
    MEASURES,
    PERIODS,
    SCOPES,
    Alert,
    Budget,
    BudgetStanding,
    CheckResult,
    NewBudget,
)
from service.budgets.service import BudgetChanges, checked_secret, parse_amount
from service.ingest.models import AgentName, JobId, ModelName
from service.wire import instant_text, money_text, number_json


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    scope: Annotated[str, one_of(SCOPES)]
    """``global``, ``agent``, ``job``, ``model`` or ``customer`` (its jobs)."""
    scope_id: str | None = None
    """The agent, job, model or customer id; absent for ``global``."""
    period: Annotated[str, one_of(PERIODS)]
    """``lifetime``, ``day`` or ``month`` (calendar periods in UTC, by event time)."""
    limit_usd: str
    """Decimal string."""
    thresholds: list[Decimal] | None = None
    """Fractions of the limit in (0, 1]; default [0.5, 0.8, 1.0]."""
    hard: bool = False
    """True: pre-call checks deny once the limit is reached."""
    webhook_url: str | None = None
    webhook_secret: str | None = None
    """Standard Webhooks secret (``whsec_<base64>``); default LUC_WEBHOOK_SECRET."""
    measure: Annotated[str, one_of(MEASURES)] = "cost"
    """What it counts: ``cost`` (the catalog's list price), ``actual_cost`` (the provider's
    reported cost where there is one) or ``price`` (what the customers pay)."""

    def new_budget(self, webhook_secret: str | None) -> NewBudget:
        """The budget to create, with the checked (or generated) ``webhook_secret``."""
        return NewBudget(
            scope=self.scope,
            scope_id=self.scope_id,
            period=self.period,
            limit_usd=parse_amount("limit_usd", self.limit_usd),
            # Absent: the defaults; an explicit [] is refused (no silent defaults).
            thresholds=list(DEFAULT_THRESHOLDS if self.thresholds is None else self.thresholds),
            hard=self.hard,
            webhook_url=self.webhook_url,
            webhook_secret=webhook_secret,
            measure=self.measure,
        )


class BudgetPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    limit_usd: str | None = None
    thresholds: list[Decimal] | None = None
    hard: bool | None = None
    webhook_url: str | msgspec.UnsetType | None = msgspec.UNSET
    """``null`` (or an empty string) removes the webhook, as ``null`` clears an optional
    field of a customer; absent, it stays."""
    webhook_secret: str | None = None

    def changes(self) -> BudgetChanges:
        url = None if self.webhook_url is msgspec.UNSET else self.webhook_url
        return BudgetChanges(
            limit_usd=None if self.limit_usd is None else parse_amount("limit_usd", self.limit_usd),
            thresholds=self.thresholds,
            hard=self.hard,
            webhook_url=url or None,
            # null cleared nothing (200, the webhook kept), where a customer's null clears
            clear_webhook=self.webhook_url is None or self.webhook_url == "",
            webhook_secret=checked_secret(self.webhook_secret),
        )


class BudgetOut(msgspec.Struct, kw_only=True):
    id: int
    scope: Annotated[str, one_of(SCOPES)]
    scope_id: str | None
    measure: Annotated[str, one_of(MEASURES)]
    """``cost``, ``actual_cost`` or ``price``: what its spend and limit are figures of."""
    period: Annotated[str, one_of(PERIODS)]
    limit_usd: str
    thresholds: list[ExactNumber]
    """Fractions of the limit (ratios, not money), every digit as given."""
    hard: bool
    webhook_url: str | None
    created_at: str
    updated_at: str
    webhook_secret: str | None = None
    """Only in the answer that created it, or gave it a webhook, when LUC generated the
    secret (no ``webhook_secret`` given, none before, and LUC_WEBHOOK_SECRET unset)."""


class BudgetList(msgspec.Struct):
    items: list[BudgetOut]


class StandingOut(msgspec.Struct):
    id: int
    scope: Annotated[str, one_of(SCOPES)]
    scope_id: str | None
    measure: Annotated[str, one_of(MEASURES)]
    period: Annotated[str, one_of(PERIODS)]
    period_start: str
    hard: bool
    limit_usd: str
    spent_usd: str
    reserved_usd: str
    remaining_usd: str
    exceeded: bool


class CheckOut(msgspec.Struct):
    allowed: bool
    remaining_usd: str | None
    """The least the budgets that decide have left: the hard ones when any applies, else
    every (soft) one; null when none applies. Each budget's own standing is in ``budgets``.
    Negative only past a soft budget's limit when no hard budget applies (``allowed`` is
    then true: a soft budget never refuses)."""
    budgets: list[StandingOut]
    reason: str | None
    """Why a call would be refused: the customer's credits at zero under credit_stop, else
    the first hard budget without room."""
    refused_by: str | None = None
    """``credits`` or ``budget`` when refused."""


class ReservationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    job_id: JobId
    agent: AgentName
    model: ModelName
    """A catalog model id or alias."""
    estimated_cost_usd: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """Decimal string: what the call may cost (prompt and max output at list price)."""
    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    """The customer the call is for (its budgets count); absent: the job's customer."""
    fallback_models: Annotated[list[ModelName], msgspec.Meta(max_length=16)] | None = None
    """The other models that may answer the call (OpenRouter's ``models`` fallbacks), ids
    or aliases: a hard budget of any of them must have room for the estimate too, and holds
    it under the same reservation."""


class ReservationOut(msgspec.Struct):
    allowed: bool
    reservation_id: str | None
    """Put it on the call's usage event (``reservation_id``): that settles this reservation.
    Null when refused, or when no hard budget applies (nothing to hold)."""
    remaining_usd: str | None
    """As ``CheckOut.remaining_usd`` (the hard budgets when any applies), this reservation
    deducted."""
    budgets: list[StandingOut]
    reason: str | None
    """Why the call is refused: the customer's credits at zero under credit_stop, else the
    first hard budget without room."""
    expires_at: str | None
    """When the reservation lapses if no usage event names it (LUC_BUDGET_RESERVATION_SECONDS)."""
    refused_by: str | None = None
    """``credits`` (402: the job's customer has credit_stop and no prepaid credits left) or
    ``budget`` (402: a hard budget has no room) when refused."""


class AlertOut(msgspec.Struct):
    type: str
    """``budget.threshold_crossed`` (the budget fields are set), ``customer.credits_low`` or
    ``customer.credits_exhausted`` (the customer fields are): the webhook body's ``type``."""
    alert_id: str
    budget_id: int | None
    scope: str | None
    scope_id: str | None
    period_start: str | None
    threshold: ExactNumber | None
    """Fraction of the limit (a ratio, not money), every digit as given."""
    spent_usd: str | None
    limit_usd: str | None
    measure: str | None
    """What the budget counts (``spent_usd`` and ``limit_usd`` are figures of it)."""
    created_at: str
    delivery: str
    """``none`` (no webhook), ``pending`` (being retried, or waiting behind the budget's
    older alert), ``delivered`` or ``dead`` (never delivered: ``redeliver`` sends it again)."""
    attempts: int
    last_error: str | None
    delivered_at: str | None
    customer_id: str | None = None
    """A credit alert's customer."""
    balance_usd: str | None = None
    """A credit alert's prepaid balance when it fired."""
    low_balance_usd: str | None = None
    """The customer's ``low_balance_usd`` when a credit alert fired (null: none set)."""


class AlertList(msgspec.Struct):
    items: list[AlertOut]
    next_cursor: str | None = None
    """Pass it as ``cursor`` for the next page; null on the last one."""


# Thresholds are fractions of the limit (ratios, not money): JSON numbers, every digit.


def budget_out(b: Budget, secret: str | None = None) -> BudgetOut:
    return wire_struct(
        BudgetOut, b, thresholds=[number_json(t) for t in b.thresholds], webhook_secret=secret
    )


def standing_out(s: BudgetStanding) -> StandingOut:
    b = s.budget
    return StandingOut(
        id=b.id,
        scope=b.scope,
        scope_id=b.scope_id,
        measure=b.measure,
        period=b.period,
        period_start=instant_text(s.period_start),
        hard=b.hard,
        limit_usd=money_text(b.limit_usd),
        spent_usd=money_text(s.spent_usd),
        reserved_usd=money_text(s.reserved_usd),
        remaining_usd=money_text(s.remaining_usd),
        exceeded=s.spent_usd >= b.limit_usd,
    )


def alert_out(a: Alert) -> AlertOut:
    return wire_struct(
        AlertOut,
        a,
        alert_id=a.id,
        threshold=None if a.threshold is None else number_json(a.threshold),
    )


def check_out(result: CheckResult) -> CheckOut:
    return wire_struct(CheckOut, result, budgets=[standing_out(s) for s in result.standings])


def reservation_out(result: CheckResult) -> ReservationOut:
    return wire_struct(ReservationOut, result, budgets=[standing_out(s) for s in result.standings])
