"""The gateway's budget gate and price lookup inside LUC: both read the database directly.
(The third port, the usage sink, is ``recording.sink``; a gateway running elsewhere uses
``service.client.budgets`` and ``gateway.ports.fixed_catalog`` instead.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import structlog

from service.budgets.reservations import release, reserve
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import on_connection
from service.gateway.ports import BudgetVerdict, CatalogSource
from service.pricing.catalog import Catalog

log = structlog.get_logger("luc.gateway")


class DatabaseBudgets:
    """``POST /v1/budgets/reservations`` and ``DELETE /v1/budgets/reservations/{id}``, on
    the database directly."""

    def __init__(
        self, pool: asyncpg.Pool, reservation_seconds: int, plans: PlanCache | None = None
    ) -> None:
        self.pool = pool
        self.plans = plans
        """The rate plans a price budget converts the estimate with (LUC's own)."""
        self.reservation_seconds = reservation_seconds

    async def reserve(
        self, *, job_id: str, agent: str, model: str, estimated_cost_usd: Decimal
    ) -> BudgetVerdict:
        result = await on_connection(
            self.pool,
            lambda conn: reserve(
                conn,
                job_id=job_id,
                agent=agent,
                model=model,
                estimated_cost_usd=estimated_cost_usd,
                now=datetime.now(UTC),
                reservation_seconds=self.reservation_seconds,
                plans=self.plans,
            ),
        )
        return BudgetVerdict(
            result.allowed, result.remaining_usd, result.reason, result.reservation_id
        )

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
