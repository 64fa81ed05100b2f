"""The gateway's budget gate and price lookup inside LUC: both read the database directly,
and ``DatabaseLookup`` reads what admission needs of both in one round trip. (The third
port, the usage sink, is ``recording.sink``; a gateway running elsewhere uses
``service.client.budgets`` and ``gateway.ports.fixed_catalog`` instead.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import structlog

from service.budgets import queries as budget_queries
from service.budgets.reservations import release, reserve
from service.catalog import queries as catalog_queries
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import Connection, on_connection
from service.gateway.ports import BudgetVerdict, CatalogSource, Outlook
from service.pricing.catalog import Catalog

log = structlog.get_logger("luc.gateway")


SETTLING_WAIT_SECONDS = 1.0
FIRST_PAUSE_SECONDS = 0.05


class DatabaseBudgets:
    """``POST /v1/budgets/reservations`` and ``DELETE /v1/budgets/reservations/{id}``, on
    the database directly.

    ``settled`` waits until the usage this process has answered for is on the ledger (the
    sink's ``settled``): a call's usage is recorded just after its answer, and until then its
    reservation still holds the whole estimate. A call refused meanwhile is asked again
    once that usage has settled its reservations (waiting at most a second), so that a
    caller's next call is judged on what was spent, as it would be a moment later. Usage
    another process answered for is awaited by asking again (``reserve``).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        reservation_seconds: int,
        plans: PlanCache | None = None,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.pool = pool
        self.plans = plans
        """The rate plans a price budget converts the estimate with (LUC's own)."""
        self.reservation_seconds = reservation_seconds
        self.settled = settled

    async def reserve(
        self,
        *,
        job_id: str,
        agent: str,
        model: str,
        estimated_cost_usd: Decimal,
        customer_id: str | None = None,
        at: datetime | None = None,
        fallback_models: Sequence[str] = (),
    ) -> BudgetVerdict:
        when = at or datetime.now(UTC)
        call = (job_id, agent, model, estimated_cost_usd, customer_id, when, fallback_models)
        verdict = await self._reserve(*call)
        if verdict.allowed or self.settled is None:
            return verdict
        deadline = time.monotonic() + SETTLING_WAIT_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled(), SETTLING_WAIT_SECONDS)
        verdict = await self._reserve(*call)
        # The other processes of ``luc serve --workers N`` answer calls too, and theirs hold
        # their estimates until their usage is recorded, moments after: a caller's next call
        # landing on another worker was refused for the one it had just been answered (no
        # usage of this process was in flight to wait for). While a refusing budget holds
        # reservations, the call is asked again, at growing intervals, until the second is up.
        pause = FIRST_PAUSE_SECONDS
        while not verdict.allowed and verdict.reservations_held:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(pause, left))
            pause *= 2
            verdict = await self._reserve(*call)
        return verdict

    async def _reserve(
        self,
        job_id: str,
        agent: str,
        model: str,
        estimated_cost_usd: Decimal,
        customer_id: str | None,
        at: datetime,
        fallback_models: Sequence[str],
    ) -> BudgetVerdict:
        async def admit(conn: Connection) -> BudgetVerdict:
            # Most calls fall under no hard budget: one look says so, and nothing needs
            # holding, so no transaction either (``reserve`` would find the same). The look
            # asks about the call's own model only: with fallbacks, ``reserve`` decides.
            if not fallback_models and not await conn.fetchval(
                budget_queries.HARD_BUDGET_MAY_APPLY, job_id, agent, model
            ):
                return BudgetVerdict(True)
            result = await reserve(
                conn,
                job_id=job_id,
                agent=agent,
                model=model,
                estimated_cost_usd=estimated_cost_usd,
                now=at,
                reservation_seconds=self.reservation_seconds,
                customer_id=customer_id,
                plans=self.plans,
                fallback_models=fallback_models,
            )
            return BudgetVerdict(
                result.allowed,
                result.remaining_usd,
                result.reason,
                result.reservation_id,
                result.refused_by,
                reservations_held=any(
                    s.budget.hard and s.reserved_usd > 0 for s in result.standings
                ),
            )

        return await on_connection(self.pool, admit)

    async def release(self, reservation_id: str) -> None:
        try:
            await on_connection(self.pool, lambda conn: release(conn, reservation_id))
        except Exception:
            # The hold then lasts until it expires: it blocks headroom for a while, and
            # nothing is spent or lost.
            log.exception("budget_reservation_not_released", reservation_id=reservation_id)


def database_catalog(pool: asyncpg.Pool, cache: CatalogCache) -> CatalogSource:
    """The ledger's catalog (every version), reloaded only when a version was added."""

    async def load() -> Catalog:
        return await on_connection(pool, cache.get)

    return load


# The catalog's stamp, whether a hard budget may apply to the model as the cached catalog
# names it, and the job's customer (a primary-key look), in one statement (one snapshot).
_LOOK = f"""
SELECT stamp.versions, stamp.newest, ({budget_queries.HARD_BUDGET_MAY_APPLY}) AS may_reserve,
       (SELECT customer_id FROM jobs WHERE job_id = $1) AS job_customer_id
FROM ({catalog_queries.CATALOG_STAMP}) AS stamp
"""


# A job not seen yet, made with the customer a call names ($2); nothing for a job that
# exists (whatever its customer: its usage claims it as a batch does, re-pricing what was
# recorded before). A job being made by a batch not yet committed is waited for.
_CLAIM_NEW_JOB = """
INSERT INTO jobs (job_id, customer_id) VALUES ($1, $2)
ON CONFLICT (job_id) DO NOTHING
RETURNING customer_id
"""

_JOB_CUSTOMER = "SELECT customer_id FROM jobs WHERE job_id = $1"


class DatabaseLookup:
    """Admission's two look-ups, the catalog (``database_catalog``) and whether a hard budget
    may hold anything (the first question ``DatabaseBudgets.reserve`` asks), in one round
    trip on one pooled connection rather than a connection and a round trip each: together
    they were most of the proxy's time in PostgreSQL and a tenth of its own CPU per call.

    Exact as the two were, on every call and in every worker: nothing is assumed from an
    earlier call but the model's catalog id, and that only to phrase the question; when the
    stamp says the catalog changed and the id with it (an alias moved), the budgets are
    asked again for the new id on the same connection.
    """

    def __init__(self, pool: asyncpg.Pool, cache: CatalogCache) -> None:
        self.pool = pool
        self.cache = cache

    async def __call__(
        self, *, job_id: str, agent: str, model: str, at: datetime, customer_id: str | None = None
    ) -> Outlook:
        async def look(conn: Connection) -> Outlook:
            known = self.cache.loaded
            asked = model if known is None else known.quote(model, at).model_id
            row = await conn.fetchrow(_LOOK, job_id, agent, asked)
            assert row is not None
            catalog = await self.cache.get(conn, (int(row["versions"]), row["newest"]))
            may_reserve = bool(row["may_reserve"])
            if (model_id := catalog.quote(model, at).model_id) != asked:
                may_reserve = bool(
                    await conn.fetchval(
                        budget_queries.HARD_BUDGET_MAY_APPLY, job_id, agent, model_id
                    )
                )
            owner = row["job_customer_id"]
            if owner is None and customer_id is not None:
                owner = await conn.fetchval(_CLAIM_NEW_JOB, job_id, customer_id)
                if owner is None:  # the job exists: as it stands now (a new statement)
                    owner = await conn.fetchval(_JOB_CUSTOMER, job_id)
            return Outlook(catalog, may_reserve, owner)

        return await on_connection(self.pool, look)
