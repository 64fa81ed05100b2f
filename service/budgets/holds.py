"""A budget that becomes hard holds the calls already admitted in its scope.

A hard budget refuses a call when its spend, what open reservations hold against it, and
the call's estimate would pass its limit. A reservation holds against the hard budgets the
call fell under when it was admitted; a hard budget created later (or re-created, or made
hard) saw none of the calls still running, and admitted its whole limit on top of them: a
0.10 job budget let 0.175 through. When a budget becomes hard it now joins the reservations
still holding in its scope, with the call's estimate in its own measure, so it holds what
they may yet spend as if they had been admitted under it.
"""

from __future__ import annotations

from datetime import datetime

from service.budgets import queries
from service.budgets.models import Budget
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import Connection
from service.pricing.models import ModelPrice
from service.pricing.price import price_estimate


async def hold_open_reservations(
    conn: Connection,
    budget: Budget,
    now: datetime,
    *,
    catalog: CatalogCache | None = None,
    plans: PlanCache | None = None,
) -> int:
    """Join ``budget`` (hard, in the caller's transaction, after it was written) to the
    reservations still holding in its scope; returns how many it joined.

    The other hard budgets are locked first, in id order as reservations lock theirs: a
    reservation being made in another transaction holds its budgets until it commits, so
    once they are locked every open reservation can be read here; one that starts later
    waits for this transaction and then sees the budget (``reservations.reserve`` starts
    again when a hard budget appeared). A price budget holds what the customer's plan in
    force ``now`` charges for the estimate, as ``reserve`` holds it."""
    await conn.execute(queries.LOCK_OTHER_HARD_BUDGETS, budget.id)
    rows = await conn.fetch(queries.OPEN_RESERVATIONS_IN_SCOPE, budget.id)
    if not rows:
        return 0
    amounts = [r["estimate_usd"] for r in rows]
    if budget.measure == "price":
        in_force = (await (plans or PlanCache()).get(conn)).in_force
        prices = None if catalog is None else await catalog.get(conn)

        def listed(model: str | None) -> ModelPrice | None:
            return None if prices is None or model is None else prices.quote(model, now).price

        amounts = [
            price_estimate(r["estimate_usd"], in_force(r["plan_id"], now), listed(r["model"]))
            for r in rows
        ]
    columns = ("reservation_id", "period_start", "job_id", "agent", "model", "customer_id")
    await conn.execute(
        queries.INSERT_HOLDS,
        budget.id,
        *([r[name] for r in rows] for name in columns),
        amounts,
        [r["expires_at"] for r in rows],
        [r["api_key_id"] for r in rows],
        [r["estimate_usd"] for r in rows],
    )
    return len(rows)
