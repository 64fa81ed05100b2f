"""Budgets, the pre-call check and reservations, and alerts with their delivery state."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from service.api.deps import LucController, Resources
from service.api.params import MAX_PAGE, PAGE_RANGE, decode_cursor, page, page_size
from service.api.request import reservation_owner
from service.api.schemas.budgets import (
    AlertList,
    AlertOut,
    BudgetIn,
    BudgetList,
    BudgetOut,
    BudgetPatch,
    CheckOut,
    ReservationIn,
    ReservationOut,
    alert_out,
    budget_out,
    check_out,
    reservation_out,
)
from service.auth.guard import ADMIN, INGEST, INGEST_OR_READ, READ
from service.budgets import reservations
from service.budgets.delivery import redeliver
from service.budgets.models import ALERT_TYPES, DELIVERIES, SCOPES, Alert
from service.budgets.service import (
    create_budget,
    delete_budget,
    get_alert,
    get_budget,
    list_alerts,
    list_budgets,
    new_webhook_secret,
    parse_amount,
    update_budget,
    webhook_secret_for,
)
from service.budgets.targets import check_target
from service.budgets.thresholds import thresholds_as_sent
from service.db import Connection, on_connection
from service.errors import InvalidRequestError, NotFoundError


class BudgetsController(LucController):
    path = "/v1/budgets"
    tags = ["budgets"]
    opt = READ

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
        secret, generated = await webhook_secret_for(
            data.webhook_url, data.webhook_secret, luc.settings.budgets
        )
        new = data.new_budget(secret)
        if (exact := thresholds_as_sent(await request.body())) is not None:
            new = replace(new, thresholds=exact)  # as sent, not via a float
        budget = await on_connection(
            luc.pool, lambda conn: create_budget(conn, new, luc.catalog_cache, luc.plan_cache)
        )
        return budget_out(budget, generated)

    @get(
        "/",
        operation_id="listBudgets",
        summary="Budgets, optionally of one scope",
        description=(
            "A model budget is kept under the model's catalog id: a `scope_id` that is a "
            "model alias lists the budgets of the model it names, as one given at creation "
            "made them."
        ),
    )
    async def list(
        self,
        luc: NamedDependency[Resources],
        # ``scope`` is a reserved handler kwarg in Litestar (the ASGI scope): alias it.
        budget_scope: Annotated[
            str | None, QueryParameter(name="scope", schema_extra={"enum": list(SCOPES)})
        ] = None,
        scope_id: FromQuery[str | None] = None,
    ) -> BudgetList:
        if budget_scope is not None and budget_scope not in SCOPES:
            # A misspelt scope would list nothing, as if no budget existed.
            raise InvalidRequestError(f"scope: {budget_scope!r} is not one of {', '.join(SCOPES)}")
        budgets = await on_connection(
            luc.pool, lambda conn: list_budgets(conn, budget_scope, scope_id, luc.catalog_cache)
        )
        return BudgetList(items=[budget_out(b) for b in budgets])

    @get(
        "/check",
        operation_id="checkBudgets",
        summary="Would a call go ahead? Only looks: reserves nothing",
        description=(
            "Considers the global budget and those of the given job, agent, model and "
            "customer (`customer_id`, else the job's customer), in the period that contains "
            "now. A hard budget refuses when spent + reserved + estimate would pass its "
            "limit; a `price` budget counts the estimate (at list price) as the customer's "
            "plan prices it. The job's customer (else `customer_id`) refuses while it has "
            "`credit_stop` and no prepaid credits left. `remaining_usd` is the least any "
            "applicable budget has left, soft ones included: a soft budget only alerts, so "
            "past its limit it answers a negative `remaining_usd` with `allowed` true "
            "(`allowed` is the verdict). Safe to repeat: to hold the estimate "
            "for a call, reserve it with POST /v1/budgets/reservations."
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
        customer_id: FromQuery[str | None] = None,
    ) -> CheckOut:
        estimate = (
            None
            if estimated_cost_usd is None
            else parse_amount("estimated_cost_usd", estimated_cost_usd)
        )
        result = await on_connection(
            luc.pool,
            lambda conn: reservations.check(
                conn,
                job_id=job_id,
                agent=agent,
                model=model,
                estimated_cost_usd=estimate,
                now=datetime.now(UTC),
                catalog=luc.catalog_cache,
                customer_id=customer_id,
                plans=luc.plan_cache,
            ),
        )
        return check_out(result)

    @post(
        "/reservations",
        operation_id="createBudgetReservation",
        summary="Admit a call under its hard budgets, holding its estimate until its usage",
        description=(
            "Considers the same budgets as the check. Refused (402) when a hard budget has "
            "less left than the estimate, or when the job's customer (else `customer_id`) has "
            "`credit_stop` and no prepaid credits left (`refused_by`: `credits`). Admitted, the "
            "estimate is held against every hard budget of the call (201, with a "
            "reservation_id) until a usage event naming that "
            "reservation_id is recorded with the same key (or an admin key), or the "
            "reservation expires; with no hard budget "
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
                description=(
                    "Refused: a hard budget has no room for the estimate, or the customer's "
                    "prepaid credits are at zero under credit_stop"
                ),
                generate_examples=False,
            ),
        },
    )
    async def reserve(
        self,
        luc: NamedDependency[Resources],
        data: JSONBody[ReservationIn],
        request: Request[Any, Any, Any],
    ) -> Response[ReservationOut]:
        estimate = parse_amount("estimated_cost_usd", data.estimated_cost_usd)
        result = await on_connection(
            luc.pool,
            lambda conn: reservations.reserve(
                conn,
                job_id=data.job_id,
                agent=data.agent,
                model=data.model,
                estimated_cost_usd=estimate,
                now=datetime.now(UTC),
                reservation_seconds=luc.settings.budgets.reservation_seconds,
                customer_id=data.customer_id,
                catalog=luc.catalog_cache,
                plans=luc.plan_cache,
                # An operator's hold (an admin key) belongs to no gateway: kept keyless, so
                # the usage of the call it was made for settles it whatever key sends it.
                api_key_id=reservation_owner(request),
                fallback_models=data.fallback_models or (),
            ),
        )
        status = 402 if not result.allowed else 201 if result.reservation_id else 200
        return Response(reservation_out(result), status_code=status)

    @delete(
        "/reservations/{reservation_id:str}",
        operation_id="releaseBudgetReservation",
        summary="Release a reservation whose call spent nothing",
        description=(
            "For a call that ended without a usage event (an upstream error before any "
            "token, a stream that never started, a caller gone before the call): its "
            "estimate stops being held at once instead of at expiry. Idempotent (204 again); "
            "a settled reservation stays settled. Keys of scope ingest or admin only; an "
            "ingest key releases only the reservations it made (404, as for an id LUC never "
            "issued, for any other), an admin key any."
        ),
        status_code=204,
        opt=INGEST,
    )
    async def release(
        self,
        luc: NamedDependency[Resources],
        reservation_id: FromPath[str],
        request: Request[Any, Any, Any],
    ) -> None:
        # An admin key (or no key: authentication is off) may release any reservation.
        owner = reservation_owner(request)
        await on_connection(
            luc.pool, lambda conn: reservations.release(conn, reservation_id, owner)
        )

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
        changes = data.changes()
        if (exact := thresholds_as_sent(await request.body())) is not None:
            changes = replace(changes, thresholds=exact)  # as sent, not via a float
        if luc.settings.budgets.webhook_secret is None:
            # Taken only if the budget has no secret of its own; shown once, as at creation.
            changes = replace(changes, secret_if_none=new_webhook_secret())
        budget, alerts, generated = await on_connection(
            luc.pool,
            lambda conn: update_budget(
                conn,
                budget_id,
                changes,
                datetime.now(UTC),
                catalog=luc.catalog_cache,
                plans=luc.plan_cache,
            ),
        )
        if alerts and luc.dispatcher is not None:
            luc.dispatcher.wake()  # a threshold the new limit puts behind the spend fires now
        return budget_out(budget, generated)

    @delete(
        "/{budget_id:int}",
        operation_id="deleteBudget",
        summary="Retire a budget (its alerts stay on record)",
        status_code=204,
        opt=ADMIN,
    )
    async def remove(self, luc: NamedDependency[Resources], budget_id: FromPath[int]) -> None:
        await on_connection(luc.pool, lambda conn: delete_budget(conn, budget_id))


class AlertsController(LucController):
    path = "/v1/alerts"
    tags = ["budgets"]
    opt = READ

    @get(
        "/",
        operation_id="listAlerts",
        summary="Budget and credit alerts with their delivery state",
        description=(
            "Oldest first, a page at a time (`next_cursor`; `limit` 1–1000, default 1000). "
            "Filters: `budget_id`, `customer_id` (its credit alerts), `type` "
            "(`budget.threshold_crossed`, `customer.credits_low`, "
            "`customer.credits_exhausted`), `delivery` (`none`, `pending`, `delivered`, "
            "`dead`: the alerts whose webhook was never delivered, say). To follow new "
            "alerts, ask `after` the id of the last alert read: the alerts listed after it "
            "(the last page's `next_cursor` is null)."
        ),
    )
    async def list(
        self,
        luc: NamedDependency[Resources],
        budget_id: FromQuery[int | None] = None,
        customer_id: FromQuery[str | None] = None,
        alert_type: Annotated[
            str | None, QueryParameter(name="type", schema_extra={"enum": list(ALERT_TYPES)})
        ] = None,
        delivery: Annotated[
            str | None, QueryParameter(schema_extra={"enum": list(DELIVERIES)})
        ] = None,
        cursor: FromQuery[str | None] = None,
        after_alert: Annotated[
            str | None,
            QueryParameter(name="after", description="an alert's id: the alerts listed after it"),
        ] = None,
        limit: Annotated[
            int | None,
            QueryParameter(description="page size, 1–1000 (1000)", schema_extra=PAGE_RANGE),
        ] = None,
    ) -> AlertList:
        if alert_type is not None and alert_type not in ALERT_TYPES:
            raise InvalidRequestError(
                f"type: {alert_type!r} is not one of {', '.join(ALERT_TYPES)}"
            )
        if delivery is not None and delivery not in DELIVERIES:
            raise InvalidRequestError(
                f"delivery: {delivery!r} is not one of {', '.join(DELIVERIES)}"
            )
        # 1000 by default: the most the list ever answered, now with a way to the rest.
        size = MAX_PAGE if limit is None else page_size(limit)
        if cursor is not None and after_alert is not None:
            raise InvalidRequestError(
                "send cursor or after, not both (each says where the page starts)",
                status_code=400,
            )

        async def listed(conn: Connection) -> list[Alert]:
            after = _alert_position(cursor)
            if after_alert is not None:
                after = await _alert_named(conn, after_alert)
            return await list_alerts(
                conn,
                budget_id,
                limit=size + 1,
                customer_id=customer_id,
                alert_type=alert_type,
                after=after,
                delivery=delivery,
            )

        alerts = await on_connection(luc.pool, listed)
        items, next_cursor = page(alerts, size, lambda a: f"{a.created_at.isoformat()}|{a.id}")
        return AlertList(items=[alert_out(a) for a in items], next_cursor=next_cursor)

    @get("/{alert_id:str}", operation_id="getAlert", summary="One alert")
    async def one(self, luc: NamedDependency[Resources], alert_id: FromPath[str]) -> AlertOut:
        return alert_out(await on_connection(luc.pool, lambda conn: get_alert(conn, alert_id)))

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
        alert = await on_connection(luc.pool, lambda conn: get_alert(conn, alert_id))
        return Response(alert_out(alert), status_code=202)


async def _alert_named(conn: Connection, alert_id: str) -> tuple[datetime, str]:
    """The position in the alert list of the alert ``after`` names: a client following new
    alerts holds the last one it read, where the last page gives no cursor."""
    try:
        alert = await get_alert(conn, alert_id)
    except NotFoundError as exc:
        raise InvalidRequestError(f"after: {exc.message}", status_code=400) from None
    return alert.created_at, str(alert.id)


def _alert_position(cursor: str | None) -> tuple[datetime, str] | None:
    """The alert (its ``created_at`` and id) a cursor of the alert list names."""
    position = decode_cursor(cursor)
    if not position:
        return None
    at, _, alert_id = position.partition("|")
    try:
        return datetime.fromisoformat(at), str(uuid.UUID(alert_id))
    except ValueError:
        raise InvalidRequestError("cursor is not one this API issued", status_code=400) from None
