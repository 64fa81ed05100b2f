"""Budgets: definition, spend evaluation inside the ingest transaction, alerts.

Pre-call checks and reservations are in ``service.budgets.reservations``.
"""

from __future__ import annotations

import secrets
import typing
import uuid
from base64 import b64encode
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from service.budgets import queries
from service.budgets.holds import hold_open_reservations
from service.budgets.models import (
    MEASURES,
    PERIODS,
    SCOPES,
    Alert,
    Budget,
    NewBudget,
)
from service.budgets.targets import check_target
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.customers.service import customer_exists
from service.db import Connection, from_row
from service.errors import InvalidRequestError, NotFoundError
from service.ingest.models import AgentName, CustomerId, JobId, ModelName
from service.locks import lock_repricing
from service.money import EXACT
from service.settings import BudgetSettings, webhook_secret_problem
from service.wire import WireValueError, money_text, parse_money


def period_start(period: str, at: datetime) -> datetime:
    """Start of the UTC period containing ``at`` (mirrors SQL ``luc_period_start``)."""
    utc = at.astimezone(UTC)
    if period == "day":
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return datetime(1970, 1, 1, tzinfo=UTC)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + b64encode(secrets.token_bytes(32)).decode()


def checked_secret(raw: str | None) -> str | None:
    """``raw`` if it is a Standard Webhooks secret (``whsec_<base64>``), else refused."""
    if raw is None:
        return None
    if (problem := webhook_secret_problem(raw)) is not None:
        raise InvalidRequestError(f"webhook_secret: must be a Standard Webhooks secret, {problem}")
    return raw


async def webhook_secret_for(
    url: str | None, secret: str | None, settings: BudgetSettings
) -> tuple[str | None, str | None]:
    """The secret a new budget's webhook signs with, and the one LUC generated if it made
    one: a webhook with neither its own secret nor LUC_WEBHOOK_SECRET gets a new secret,
    shown once. The secret is checked, then the URL (``targets.check_target``)."""
    checked = checked_secret(secret)
    if url is None:
        return checked, None
    await check_target(url, settings.allowed_hosts)
    if checked is None and settings.webhook_secret is None:
        generated = new_webhook_secret()
        return generated, generated
    return checked, None


def parse_amount(field: str, text: str) -> Decimal:
    """An amount given as text (SPEC §2's money rule, ``service.wire``); never negative."""
    try:
        return parse_money(field, text)
    except WireValueError as exc:
        raise InvalidRequestError(str(exc)) from None


# The longest id a usage event may carry, per budget scope.
_LONGEST_SCOPE_ID = {
    scope: int(typing.get_args(wire_type)[1].max_length)  # Annotated[str, Meta(...)]
    for scope, wire_type in (
        ("job", JobId),
        ("agent", AgentName),
        ("model", ModelName),
        ("customer", CustomerId),
    )
}


MAX_THRESHOLDS = 100
"""A threshold per percent of the limit is more than any alerting needs."""


def check_definition(
    scope: str, scope_id: str | None, period: str, limit_usd: Decimal, thresholds: Sequence[Decimal]
) -> list[Decimal]:
    """Validate a budget's shape; returns its thresholds sorted and de-duplicated."""
    if scope not in SCOPES:
        raise InvalidRequestError(f"scope: {scope!r} is not one of {', '.join(SCOPES)}")
    if scope == "global" and scope_id is not None:
        raise InvalidRequestError("scope_id: a global budget has no scope_id")
    if scope != "global" and not scope_id:
        raise InvalidRequestError(f"scope_id: required for a budget of scope {scope!r}")
    longest = _LONGEST_SCOPE_ID.get(scope)
    if longest is not None and scope_id is not None and len(scope_id) > longest:
        # A longer id than any usage event can carry: a budget that could never count.
        raise InvalidRequestError(
            f"scope_id: at most {longest} characters for scope {scope!r} (as on a usage "
            f"event), got {len(scope_id)}"
        )
    if period not in PERIODS:
        raise InvalidRequestError(f"period: {period!r} is not one of {', '.join(PERIODS)}")
    if not limit_usd.is_finite() or limit_usd <= 0:
        raise InvalidRequestError(
            f"limit_usd: must be a positive amount, got {money_text(limit_usd)}"
        )
    if not thresholds:
        raise InvalidRequestError("thresholds: give at least one, e.g. [0.5, 0.8, 1.0]")
    if len(set(thresholds)) > MAX_THRESHOLDS:
        # Every batch that spends on the budget checks each of them: a million stored
        # thresholds would slow every ingest of its scope.
        raise InvalidRequestError(
            f"thresholds: at most {MAX_THRESHOLDS} different ones, got {len(set(thresholds))}"
        )
    for t in thresholds:
        if not t.is_finite() or not Decimal(0) < t <= Decimal(1):
            raise InvalidRequestError(
                f"thresholds: {t} is outside (0, 1]; a threshold is a fraction of the limit"
            )
    return sorted(set(thresholds))


def budget_from_row(r: Any) -> Budget:
    """A ``Budget`` from a row of ``queries.BUDGET_COLUMNS``."""
    return from_row(Budget, r, thresholds=list(r["thresholds"]))


async def create_budget(
    conn: Connection,
    new: NewBudget,
    catalog: CatalogCache | None = None,
    plans: PlanCache | None = None,
) -> Budget:
    """Store a budget and count the spend already on the ledger towards it; a threshold
    that spend has already reached fires now, in this transaction, as when a limit is
    changed (a budget created past its limit would otherwise stay silent all period: the
    spend that passed it came before the budget, and no later event crosses it). A hard
    one also holds the calls its scope has running (``holds``; a price budget with
    ``plans``' prices).

    With ``catalog``, a model budget given an alias is stored under the model's catalog id,
    as pricing resolves the alias now: the ledger names models by id, so a budget on an
    alias would never count. Without it, ``scope_id`` is taken as the id."""
    if catalog is not None and new.scope == "model" and new.scope_id:
        now = datetime.now(UTC)
        new = replace(new, scope_id=await catalog.model_id(conn, new.scope_id, now))
    thresholds = check_definition(
        new.scope, new.scope_id, new.period, new.limit_usd, new.thresholds
    )
    if new.measure not in MEASURES:
        raise InvalidRequestError(
            f"measure: {new.measure!r} is not one of {', '.join(MEASURES)} (what the budget "
            "counts: the catalog cost, the actual cost, or the customer's price)"
        )
    if new.scope == "customer" and not await customer_exists(conn, str(new.scope_id)):
        # Customers are made on purpose (POST /v1/customers), unlike jobs and agents that
        # come with their events: an unknown one is a typo, and its budget would never count.
        raise InvalidRequestError(
            f"scope_id: customer {new.scope_id!r} does not exist (create it with "
            "POST /v1/customers first)"
        )
    async with conn.transaction():
        # Exclusive: batches in flight commit first (the backfill sees their spend), and
        # batches after it see the budget. Without it, a batch that had not seen the new
        # budget and committed after the backfill would never count towards it.
        await lock_repricing(conn)
        row = await conn.fetchrow(
            queries.INSERT_BUDGET,
            new.scope,
            new.scope_id,
            new.period,
            new.limit_usd,
            thresholds,
            new.hard,
            new.webhook_url,
            new.webhook_secret,
            new.measure,
        )
        assert row is not None
        await conn.execute(queries.BACKFILL_SPEND, row["id"])
        budget = budget_from_row(row)
        now = datetime.now(UTC)
        if budget.hard:
            await hold_open_reservations(conn, budget, now, catalog=catalog, plans=plans)
        await _raise_alerts(conn, await _passed_thresholds(conn, budget, now))
    return budget


async def get_budget(conn: Connection, budget_id: int) -> Budget:
    row = await conn.fetchrow(queries.SELECT_BUDGET, budget_id)
    if row is None:
        raise NotFoundError(f"budget {budget_id} does not exist")
    return budget_from_row(row)


async def list_budgets(
    conn: Connection,
    scope: str | None,
    scope_id: str | None,
    catalog: CatalogCache | None = None,
) -> list[Budget]:
    """Budgets, of ``scope`` and ``scope_id`` when given. With ``catalog``, a ``scope_id``
    that is a model alias finds the model budgets of the model it names now, as
    ``create_budget`` stored them (under the catalog id)."""
    model_id = scope_id
    if catalog is not None and scope_id and scope in (None, "model"):
        model_id = await catalog.model_id(conn, scope_id, datetime.now(UTC))
    rows = await conn.fetch(queries.SELECT_BUDGETS, scope, scope_id, model_id)
    return [budget_from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class BudgetChanges:
    limit_usd: Decimal | None = None
    thresholds: list[Decimal] | None = None
    hard: bool | None = None
    webhook_url: str | None = None
    clear_webhook: bool = False
    webhook_secret: str | None = None
    secret_if_none: str | None = None
    """The secret to give the budget when it ends up with a webhook but no secret of its
    own, and LUC_WEBHOOK_SECRET is unset (the caller generates it): as at creation, a
    webhook is never left with nothing to sign its alerts with."""


async def update_budget(
    conn: Connection,
    budget_id: int,
    changes: BudgetChanges,
    now: datetime,
    *,
    catalog: CatalogCache | None = None,
    plans: PlanCache | None = None,
) -> tuple[Budget, int, str | None]:
    """Change limit, thresholds, hardness or webhook; scope and period stay fixed.

    A new limit or new thresholds are evaluated at once against the spend of the period
    that contains ``now``: a threshold the spend has already passed fires then, in this
    transaction, unless it fired before in the period. A budget made hard holds the calls
    its scope has running, as a new hard one does. Returns the budget, the number of
    alerts raised, and ``changes.secret_if_none`` when the budget took it.
    """
    async with conn.transaction():
        reevaluate = changes.limit_usd is not None or changes.thresholds is not None
        if reevaluate:
            # Exclusive, as for a new budget: batches in flight commit first (their spend
            # is in what is read below), and later ones see the new limit. Otherwise a
            # batch that read the old limit could pass a threshold of the new one unseen.
            await lock_repricing(conn)
        current = await get_budget(conn, budget_id)
        limit_usd = current.limit_usd if changes.limit_usd is None else changes.limit_usd
        thresholds = check_definition(
            current.scope,
            current.scope_id,
            current.period,
            limit_usd,
            current.thresholds if changes.thresholds is None else changes.thresholds,
        )
        webhook_url = (
            None if changes.clear_webhook else (changes.webhook_url or current.webhook_url)
        )
        secret, taken = changes.webhook_secret, None
        if secret is None and webhook_url is not None and not current.has_own_secret:
            secret = taken = changes.secret_if_none
        row = await conn.fetchrow(
            queries.UPDATE_BUDGET,
            budget_id,
            limit_usd,
            thresholds,
            current.hard if changes.hard is None else changes.hard,
            webhook_url,
            secret,
        )
        if row is None:
            raise NotFoundError(f"budget {budget_id} does not exist")
        budget = budget_from_row(row)
        if budget.hard and not current.hard:
            await hold_open_reservations(conn, budget, now, catalog=catalog, plans=plans)
        alerts = 0
        if reevaluate:
            alerts = await _raise_alerts(conn, await _passed_thresholds(conn, budget, now))
    return budget, alerts, taken


async def _passed_thresholds(conn: Connection, budget: Budget, now: datetime) -> list[Crossing]:
    """The thresholds that the spend of the current period has reached (spent ≥ t·limit)."""
    start = period_start(budget.period, now)
    spent = await conn.fetchval(queries.SELECT_SPEND, budget.id, start)
    if spent is None:
        return []
    return [
        Crossing(
            budget_id=budget.id,
            period_start=start,
            threshold=threshold,
            spent_usd=spent,
            limit_usd=budget.limit_usd,
            scope=budget.scope,
            scope_id=budget.scope_id,
            webhook_url=budget.webhook_url,
        )
        for threshold in budget.thresholds
        # Exact, as ingest's (``queries.spend_counted``): at 28 digits a 40-digit limit
        # rounds, and an alert would fire below (or miss) its threshold.
        if spent >= EXACT.multiply(threshold, budget.limit_usd)
    ]


async def delete_budget(conn: Connection, budget_id: int) -> None:
    """Retire a budget; its alerts stay on record."""
    if (await conn.execute(queries.DELETE_BUDGET, budget_id)) == "UPDATE 0":
        raise NotFoundError(f"budget {budget_id} does not exist")


@dataclass(frozen=True, slots=True)
class Crossing:
    budget_id: int
    period_start: datetime
    threshold: Decimal
    spent_usd: Decimal
    limit_usd: Decimal
    scope: str
    scope_id: str | None
    webhook_url: str | None


async def apply_entries(conn: Connection, entry_ids: Sequence[int]) -> int:
    """Count freshly appended ledger entries towards budgets; record alerts and their
    outbox rows (``queries.spend_counted``).

    Runs in the caller's transaction, after the rollups. Returns the number of alerts
    raised (a unique key makes each threshold fire once per budget and period).
    """
    if not entry_ids:
        return 0
    raised: int = await conn.fetchval(queries.APPLY_ENTRIES, list(entry_ids))
    return raised


async def _raise_alerts(conn: Connection, found: Sequence[Crossing]) -> int:
    """Record an alert per crossing not recorded yet in its period, and the outbox rows of
    those with a webhook; returns how many alerts are new."""
    if not found:
        return 0
    raised: int = await conn.fetchval(
        queries.RAISE_ALERTS,
        [c.budget_id for c in found],
        [c.period_start for c in found],
        [c.threshold for c in found],
        [c.spent_usd for c in found],
        [c.limit_usd for c in found],
        [c.scope for c in found],
        [c.scope_id for c in found],
        [c.webhook_url for c in found],
    )
    return raised


def _alert(r: Any) -> Alert:
    return from_row(Alert, r, id=str(r["id"]))


async def list_alerts(
    conn: Connection,
    budget_id: int | None = None,
    alert_id: str | None = None,
    limit: int = 1000,
    *,
    customer_id: str | None = None,
    alert_type: str | None = None,
    after: tuple[datetime, str] | None = None,
    delivery: str | None = None,
) -> list[Alert]:
    """Alerts (budget and credit alerts), oldest first (by ``created_at``, then id), from
    the one after ``after`` (an alert's ``created_at`` and id) on; an ``alert_id`` that is
    no UUID names no alert."""
    if alert_id is not None:
        try:
            uuid.UUID(alert_id)
        except ValueError:
            return []
    after_at, after_id = after if after is not None else (None, None)
    rows = await conn.fetch(
        queries.SELECT_ALERTS,
        budget_id,
        alert_id,
        limit,
        customer_id,
        alert_type,
        after_at,
        after_id,
        delivery,
    )
    return [_alert(r) for r in rows]


async def get_alert(conn: Connection, alert_id: str) -> Alert:
    alerts = await list_alerts(conn, alert_id=alert_id)
    if not alerts:
        raise NotFoundError(f"alert {alert_id!r} does not exist")
    return alerts[0]
