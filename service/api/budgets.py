"""Budgets, the pre-call check and reservations, and alerts with their delivery state."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from standardwebhooks.webhooks import Webhook

from service.api.deps import Resources, provide_resources
from service.api.schemas import money, timestamp
from service.auth.guard import ADMIN, INGEST, INGEST_OR_READ, READ
from service.budgets import reservations
from service.budgets.delivery import redeliver
from service.budgets.models import (
    DEFAULT_THRESHOLDS,
    Alert,
    Budget,
    BudgetStanding,
    NewBudget,
)
from service.budgets.service import (
    BudgetChanges,
    create_budget,
    delete_budget,
    get_budget,
    list_alerts,
    list_budgets,
    new_webhook_secret,
    update_budget,
)
from service.budgets.targets import check_target
from service.budgets.thresholds import thresholds_as_sent
from service.db import Connection, on_connection
from service.errors import InvalidRequestError, NotFoundError
from service.ingest.models import AgentName, JobId, ModelName
from service.wire import WireValueError, parse_money


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    scope: str
    """``global``, ``agent``, ``job`` or ``model``."""
    scope_id: str | None = None
    """The agent, job or model id; absent for ``global``."""
    period: str
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


class BudgetPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    limit_usd: str | None = None
    thresholds: list[Decimal] | None = None
    hard: bool | None = None
    webhook_url: str | None = None
    """An empty string removes the webhook."""
    webhook_secret: str | None = None


class BudgetOut(msgspec.Struct, kw_only=True):
    id: int
    scope: str
    scope_id: str | None
    period: str
    limit_usd: str
    thresholds: list[float]
    """Fractions of the limit (ratios, not money)."""
    hard: bool
    webhook_url: str | None
    created_at: str
    updated_at: str
    webhook_secret: str | None = None
    """Only in the answer that created it, when LUC generated the secret."""


class BudgetList(msgspec.Struct):
    items: list[BudgetOut]


class StandingOut(msgspec.Struct):
    id: int
    scope: str
    scope_id: str | None
    period: str
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
    """The least any applicable budget has left; null when none applies."""
    budgets: list[StandingOut]
    reason: str | None
    """Why a call would be refused: the first hard budget without room."""


class ReservationIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    job_id: JobId
    agent: AgentName
    model: ModelName
    """A catalog model id or alias."""
    estimated_cost_usd: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """Decimal string: what the call may cost (prompt and max output at list price)."""
    customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class ReservationOut(msgspec.Struct):
    allowed: bool
    reservation_id: str | None
    """Put it on the call's usage event (``reservation_id``): that settles this reservation.
    Null when refused, or when no hard budget applies (nothing to hold)."""
    remaining_usd: str | None
    """The least any applicable budget has left, this reservation deducted."""
    budgets: list[StandingOut]
    reason: str | None
    """Why the call is refused: the first hard budget without room."""
    expires_at: str | None
    """When the reservation lapses if no usage event names it (LUC_BUDGET_RESERVATION_SECONDS)."""


class AlertOut(msgspec.Struct):
    alert_id: str
    budget_id: int
    scope: str
    scope_id: str | None
    period_start: str
    threshold: float
    """Fraction of the limit (a ratio, not money)."""
    spent_usd: str
    limit_usd: str
    created_at: str
    delivery: str
    """``none`` (no webhook), ``pending``, ``delivered`` or ``dead``."""
    attempts: int
    last_error: str | None
    delivered_at: str | None


class AlertList(msgspec.Struct):
    items: list[AlertOut]


def budget_out(b: Budget, secret: str | None = None) -> BudgetOut:
    return BudgetOut(
        id=b.id,
        scope=b.scope,
        scope_id=b.scope_id,
        period=b.period,
        limit_usd=money(b.limit_usd) or "0",
        thresholds=[float(t) for t in b.thresholds],
        hard=b.hard,
        webhook_url=b.webhook_url,
        created_at=timestamp(b.created_at) or "",
        updated_at=timestamp(b.updated_at) or "",
        webhook_secret=secret,
    )


def standing_out(s: BudgetStanding) -> StandingOut:
    b = s.budget
    return StandingOut(
        id=b.id,
        scope=b.scope,
        scope_id=b.scope_id,
        period=b.period,
        period_start=timestamp(s.period_start) or "",
        hard=b.hard,
        limit_usd=money(b.limit_usd) or "0",
        spent_usd=money(s.spent_usd) or "0",
        reserved_usd=money(s.reserved_usd) or "0",
        remaining_usd=money(s.remaining_usd) or "0",
        exceeded=s.spent_usd >= b.limit_usd,
    )


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        alert_id=a.id,
        budget_id=a.budget_id,
        scope=a.scope,
        scope_id=a.scope_id,
        period_start=timestamp(a.period_start) or "",
        threshold=float(a.threshold),
        spent_usd=money(a.spent_usd) or "0",
        limit_usd=money(a.limit_usd) or "0",
        created_at=timestamp(a.created_at) or "",
        delivery=a.delivery,
        attempts=a.attempts,
        last_error=a.last_error,
        delivered_at=timestamp(a.delivered_at),
    )


def _amount(field: str, raw: str) -> Decimal:
    """An amount on the wire (SPEC §2's money rule: service.wire); never negative."""
    try:
        return parse_money(field, raw)
    except WireValueError as exc:
        raise InvalidRequestError(str(exc)) from None


def _secret(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        Webhook(raw)
    except Exception:
        raise InvalidRequestError(
            "webhook_secret: must be a Standard Webhooks secret, whsec_<base64>"
        ) from None
    if not raw.startswith("whsec_"):
        raise InvalidRequestError("webhook_secret: must start with whsec_")
    return raw


class BudgetsController(Controller):
    path = "/v1/budgets"
    tags = ["budgets"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @post(
        "/",
        operation_id="createBudget",
        summary="Create a budget",
        description=(
            "Spend already on the ledger counts towards it. Each threshold fires one alert "
            "per period; with a webhook, the alert is posted signed (Standard Webhooks)."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def create(
        self,
        luc: NamedDependency[Resources],
        data: JSONBody[BudgetIn],
        request: Request[Any, Any, Any],
    ) -> BudgetOut:
        settings = luc.settings.budgets
        thresholds = thresholds_as_sent(await request.body())  # exact, not via a float
        secret = _secret(data.webhook_secret)
        generated = None
        if data.webhook_url is not None:
            await check_target(data.webhook_url, settings.allowed_hosts)
            if secret is None and settings.webhook_secret is None:
                secret = generated = new_webhook_secret()
        scope_id = data.scope_id
        if data.scope == "model" and scope_id:
            # The ledger names models by catalog id; a budget on an alias would never count.
            catalog = await on_connection(luc.pool, luc.catalog_cache.get)
            scope_id = catalog.quote(scope_id, datetime.now(UTC)).model_id
        new = NewBudget(
            scope=data.scope,
            scope_id=scope_id,
            period=data.period,
            limit_usd=_amount("limit_usd", data.limit_usd),
            # Absent: the defaults; an explicit [] is refused (no silent defaults).
            thresholds=list(DEFAULT_THRESHOLDS if thresholds is None else thresholds),
            hard=data.hard,
            webhook_url=data.webhook_url,
            webhook_secret=secret,
        )
        budget = await on_connection(luc.pool, lambda conn: create_budget(conn, new))
        return budget_out(budget, generated)

    @get("/", operation_id="listBudgets", summary="Budgets, optionally of one scope")
    async def list(
        self,
        luc: NamedDependency[Resources],
        # ``scope`` is a reserved handler kwarg in Litestar (the ASGI scope): alias it.
        budget_scope: Annotated[str | None, QueryParameter(name="scope")] = None,
        scope_id: FromQuery[str | None] = None,
    ) -> BudgetList:
        budgets = await on_connection(
            luc.pool, lambda conn: list_budgets(conn, budget_scope, scope_id)
        )
        return BudgetList(items=[budget_out(b) for b in budgets])

    @get(
        "/check",
        operation_id="checkBudgets",
        summary="Would a call go ahead? Only looks: reserves nothing",
        description=(
            "Considers the global budget and those of the given job, agent and model, in the "
            "period that contains now. A hard budget refuses when spent + reserved + estimate "
            "would pass its limit. Safe to repeat: to hold the estimate for a call, reserve it "
            "with POST /v1/budgets/reservations."
        ),
        opt=INGEST_OR_READ,
    )
    async def check(
        self,
        luc: NamedDependency[Resources],
        job_id: FromQuery[str | None] = None,
        agent: FromQuery[str | None] = None,
        model: FromQuery[str | None] = None,
        estimated_cost_usd: Annotated[
            str | None, QueryParameter(description="decimal string, USD")
        ] = None,
    ) -> CheckOut:
        estimate = (
            None
            if estimated_cost_usd is None
            else _amount("estimated_cost_usd", estimated_cost_usd)
        )

        async def run(conn: Connection) -> CheckOut:
            now = datetime.now(UTC)
            result = await reservations.check(
                conn,
                job_id=job_id,
                agent=agent,
                model=await _model_id(luc, conn, model, now),
                estimated_cost_usd=estimate,
                now=now,
            )
            return CheckOut(
                allowed=result.allowed,
                remaining_usd=money(result.remaining_usd),
                budgets=[standing_out(s) for s in result.standings],
                reason=result.reason,
            )

        return await on_connection(luc.pool, run)

    @post(
        "/reservations",
        operation_id="createBudgetReservation",
        summary="Admit a call under its hard budgets, holding its estimate until its usage",
        description=(
            "Considers the same budgets as the check. Refused (402) when a hard budget has "
            "less left than the estimate. Admitted, the estimate is held against every hard "
            "budget of the call (201, with a reservation_id) until a usage event naming that "
            "reservation_id is recorded, or the reservation expires; with no hard budget "
            "nothing is held (200, reservation_id null). Usage without a reservation_id "
            "releases no reservation. Keys of scope ingest or admin only."
        ),
        status_code=201,
        opt=INGEST,
        responses={
            200: ResponseSpec(
                ReservationOut,
                description="Allowed; no hard budget applies, so nothing is held",
                generate_examples=False,
            ),
            402: ResponseSpec(
                ReservationOut,
                description="Refused: a hard budget has no room for the estimate",
                generate_examples=False,
            ),
        },
    )
    async def reserve(
        self, luc: NamedDependency[Resources], data: JSONBody[ReservationIn]
    ) -> Response[ReservationOut]:
        estimate = _amount("estimated_cost_usd", data.estimated_cost_usd)

        async def run(conn: Connection) -> ReservationOut:
            now = datetime.now(UTC)
            result = await reservations.reserve(
                conn,
                job_id=data.job_id,
                agent=data.agent,
                model=await _model_id(luc, conn, data.model, now),
                estimated_cost_usd=estimate,
                now=now,
                reservation_seconds=luc.settings.budgets.reservation_seconds,
                customer_id=data.customer_id,
            )
            return ReservationOut(
                allowed=result.allowed,
                reservation_id=result.reservation_id,
                remaining_usd=money(result.remaining_usd),
                budgets=[standing_out(s) for s in result.standings],
                reason=result.reason,
                expires_at=timestamp(result.expires_at),
            )

        answer = await on_connection(luc.pool, run)
        status = 402 if not answer.allowed else 201 if answer.reservation_id else 200
        return Response(answer, status_code=status)

    @delete(
        "/reservations/{reservation_id:str}",
        operation_id="releaseBudgetReservation",
        summary="Release a reservation whose call spent nothing",
        description=(
            "For a call that ended without a usage event (an upstream error before any "
            "token, a stream that never started, a caller gone before the call): its "
            "estimate stops being held at once instead of at expiry. Idempotent (204 again); "
            "a settled reservation stays settled. 404 for an id LUC never issued. Keys of "
            "scope ingest or admin only."
        ),
        status_code=204,
        opt=INGEST,
    )
    async def release(self, luc: NamedDependency[Resources], reservation_id: FromPath[str]) -> None:
        await on_connection(luc.pool, lambda conn: reservations.release(conn, reservation_id))

    @get("/{budget_id:int}", operation_id="getBudget", summary="One budget")
    async def one(self, luc: NamedDependency[Resources], budget_id: FromPath[int]) -> BudgetOut:
        return budget_out(await on_connection(luc.pool, lambda conn: get_budget(conn, budget_id)))

    @patch(
        "/{budget_id:int}",
        operation_id="updateBudget",
        summary="Change a budget's limit, thresholds, hardness or webhook",
        opt=ADMIN,
    )
    async def update(
        self,
        luc: NamedDependency[Resources],
        budget_id: FromPath[int],
        data: JSONBody[BudgetPatch],
        request: Request[Any, Any, Any],
    ) -> BudgetOut:
        if data.webhook_url:
            await check_target(data.webhook_url, luc.settings.budgets.allowed_hosts)
        changes = BudgetChanges(
            limit_usd=None if data.limit_usd is None else _amount("limit_usd", data.limit_usd),
            thresholds=thresholds_as_sent(await request.body()),  # exact, not via a float
            hard=data.hard,
            webhook_url=data.webhook_url or None,
            clear_webhook=data.webhook_url == "",
            webhook_secret=_secret(data.webhook_secret),
        )
        budget, alerts = await on_connection(
            luc.pool, lambda conn: update_budget(conn, budget_id, changes, datetime.now(UTC))
        )
        if alerts and luc.dispatcher is not None:
            luc.dispatcher.wake()  # a threshold the new limit puts behind the spend fires now
        return budget_out(budget)

    @delete(
        "/{budget_id:int}",
        operation_id="deleteBudget",
        summary="Retire a budget (its alerts stay on record)",
        status_code=204,
        opt=ADMIN,
    )
    async def remove(self, luc: NamedDependency[Resources], budget_id: FromPath[int]) -> None:
        await on_connection(luc.pool, lambda conn: delete_budget(conn, budget_id))


class AlertsController(Controller):
    path = "/v1/alerts"
    tags = ["budgets"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @get("/", operation_id="listAlerts", summary="Budget alerts with their delivery state")
    async def list(
        self, luc: NamedDependency[Resources], budget_id: FromQuery[int | None] = None
    ) -> AlertList:
        alerts = await on_connection(luc.pool, lambda conn: list_alerts(conn, budget_id))
        return AlertList(items=[alert_out(a) for a in alerts])

    @get("/{alert_id:str}", operation_id="getAlert", summary="One alert")
    async def one(self, luc: NamedDependency[Resources], alert_id: FromPath[str]) -> AlertOut:
        alerts = await on_connection(luc.pool, lambda conn: _alerts_by_id(conn, alert_id))
        if not alerts:
            raise NotFoundError(f"alert {alert_id!r} does not exist")
        return alert_out(alerts[0])

    @post(
        "/{alert_id:str}/redeliver",
        operation_id="redeliverAlert",
        summary="Send an alert's webhook again (after it was marked dead)",
        status_code=202,
        opt=ADMIN,
    )
    async def resend(
        self, luc: NamedDependency[Resources], alert_id: FromPath[str]
    ) -> Response[AlertOut]:
        window = luc.settings.budgets.retry_window_seconds
        await on_connection(luc.pool, lambda conn: redeliver(conn, alert_id, window))
        if luc.dispatcher is not None:
            luc.dispatcher.wake()
        alerts = await on_connection(luc.pool, lambda conn: _alerts_by_id(conn, alert_id))
        return Response(alert_out(alerts[0]), status_code=202)


async def _model_id(
    luc: Resources, conn: Connection, model: str | None, now: datetime
) -> str | None:
    """The catalog id of ``model``: the ledger (so model budgets and settling) names models
    by id, so an alias is resolved as pricing will resolve it (gemini-3.0-flash → google/…)."""
    if model is None:
        return None
    return (await luc.catalog_cache.get(conn)).quote(model, now).model_id


async def _alerts_by_id(conn: Connection, alert_id: str) -> list[Alert]:
    return await list_alerts(conn, alert_id=alert_id)
