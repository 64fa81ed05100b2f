"""The gateway inside LUC: usage goes straight to the ledger, budgets and prices come
from the database. (A gateway running elsewhere uses ``service.client`` instead.)

The gateway is where usage is born, so it sits before ingest in the flow; in-process it
still hands each event to ``record_batch``, exactly as ``POST /v1/events`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import msgspec
import structlog

from service.budgets.reservations import reserve
from service.catalog.service import CatalogCache, aims_catalog
from service.client import Spool
from service.db import on_connection
from service.errors import DatabaseUnavailableError, LucError
from service.gateway.models import BudgetVerdict
from service.ingest.models import Rejection, UsageEvent, UsageEventIn
from service.ingest.validate import check_event
from service.pricing.catalog import Catalog
from service.pricing.models import CatalogVersion
from service.record.service import ACCEPTED, DUPLICATE, BatchOutcome, record_batch
from service.settings import IngestSettings

log = structlog.get_logger("luc.gateway")

RecordFn = Callable[[Sequence[UsageEvent | Rejection]], Awaitable[BatchOutcome]]


class RecordingSink:
    """Validates each event as ingest does and records it in its own transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        catalog_cache: CatalogCache,
        ingest: IngestSettings,
        record: RecordFn | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.pool = pool
        self.catalog_cache = catalog_cache
        self.ingest = ingest
        self._record = record or self._record_batch
        self.spool = spool
        """Where usage waits while PostgreSQL is down; replayed by ``replay_spooled``."""

    async def _record_batch(self, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        return await on_connection(
            self.pool, lambda conn: record_batch(conn, self.catalog_cache, items)
        )

    async def emit(self, event: UsageEventIn) -> None:
        body = msgspec.json.encode(event).decode()
        checked = check_event(event, datetime.now(UTC), self.ingest)
        if isinstance(checked, str):
            log.error("usage_event_invalid", reason=checked, event=body)
            return
        try:
            outcome = await self._record([checked])
        except DatabaseUnavailableError as exc:
            if self.spool is None:
                log.error("usage_event_not_recorded", error=exc.message, event=body)
                return
            # The upstream call happened and was paid for: keep its usage on local disk
            # until PostgreSQL is back (replay_spooled), like a remote gateway's emitter.
            await self.spool.add([(checked.id, body.encode())])
            log.warning("usage_event_spooled", event_id=checked.id, error=exc.message)
            return
        except LucError as exc:
            log.error("usage_event_not_recorded", error=exc.message, event=body)
            return
        result = outcome.results[0]
        if result.status not in (ACCEPTED, DUPLICATE):
            log.error("usage_event_refused", status=result.status, reason=result.reason, event=body)

    async def replay_spooled(self, limit: int = 500) -> int:
        """Record what waits in the spool; returns how many events left it.

        Raises ``DatabaseUnavailableError`` while PostgreSQL is still away.
        """
        if self.spool is None:
            return 0
        rows = await self.spool.take(limit)
        if not rows:
            return 0
        now = datetime.now(UTC)
        checked: list[tuple[int, str, bytes, UsageEvent | str]] = []
        for seq, event_id, body in rows:
            try:
                wire = msgspec.json.decode(body, type=UsageEventIn)
            except msgspec.MsgspecError as exc:
                checked.append((seq, event_id, body, f"spooled event unreadable: {exc}"))
                continue
            checked.append((seq, event_id, body, check_event(wire, now, self.ingest)))
        events = [c for _, _, _, c in checked if isinstance(c, UsageEvent)]
        results = iter((await self._record(events)).results if events else [])
        done: list[int] = []
        aside: list[tuple[int, str, bytes, str, str | None]] = []
        for seq, event_id, body, item in checked:
            if isinstance(item, str):
                aside.append((seq, event_id, body, "rejected", item))
                continue
            result = next(results)
            if result.status in (ACCEPTED, DUPLICATE):
                done.append(seq)
            else:
                aside.append((seq, event_id, body, result.status, result.reason))
        await self.spool.settle(done, aside)
        for _, event_id, _, status, reason in aside:
            log.error("spooled_event_refused", event_id=event_id, status=status, reason=reason)
        return len(rows)

    async def run_replay(self, every_seconds: float = 2.0) -> None:
        """Replay the spool until cancelled; quiet while PostgreSQL stays away."""
        while True:
            try:
                while await self.replay_spooled():
                    pass
            except DatabaseUnavailableError:
                pass
            await asyncio.sleep(every_seconds)


class DatabaseBudgets:
    """``POST /v1/budgets/reservations``, on the database directly."""

    def __init__(self, pool: asyncpg.Pool, reservation_seconds: int) -> None:
        self.pool = pool
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
            ),
        )
        return BudgetVerdict(
            result.allowed, result.remaining_usd, result.reason, result.reservation_id
        )


def database_catalog(pool: asyncpg.Pool, cache: CatalogCache) -> Callable[[], Awaitable[Catalog]]:
    """The ledger's catalog (every version), reloaded only when a version was added."""

    async def load() -> Catalog:
        return await on_connection(pool, cache.get)

    return load


def bundled_catalog() -> Catalog:
    """The AIMS catalog shipped with LUC, for a gateway that cannot read LUC's own."""
    new = aims_catalog()
    version = CatalogVersion(
        id=0,
        label=new.label,
        effective_from=new.effective_from,
        created_at=None,
        default_model=new.default_model,
        aliases=new.aliases,
        models={m.model_id: m.with_defaults() for m in new.models},
    )
    return Catalog([version])


def fixed_catalog(catalog: Catalog) -> Callable[[], Awaitable[Catalog]]:
    async def load() -> Catalog:
        return catalog

    return load
