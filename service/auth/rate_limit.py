"""Per-key request rates, counted in PostgreSQL so that a key's limit holds across every
process serving the database (the workers of ``luc serve --workers N``, replicas).

Each request adds one to its key's row for the current second (``rate_limit_windows``,
unlogged); its number in that second decides: up to the limit it goes on, past it 429.
The requests that arrive while a count is in flight share the next statement, so a busy
process pays one round trip per group, not per request, on a connection it keeps for
this. When PostgreSQL cannot count, requests go on (every route but the probes needs the
database anyway) and a warning is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg
import structlog

from service.auth import queries
from service.db import gave_up

log = structlog.get_logger("luc.auth")

FORGET_EVERY_SECONDS = 10.0
COUNT_TIMEOUT_SECONDS = 2.0
"""How long a count may wait for PostgreSQL before the requests it counts go through
uncounted (as on any failure to count), rather than each waiting out
``LUC_DB_COMMAND_TIMEOUT_SECONDS`` on a database that answers nothing."""
WARN_EVERY_SECONDS = 10.0


class RateLimiter:
    """At most ``limit`` requests per second per identity, across processes."""

    def __init__(self, pool: asyncpg.Pool, limit: int) -> None:
        self.pool = pool
        self.limit = limit
        self._waiting: list[tuple[str, asyncio.Future[int | None]]] = []
        self._counting: asyncio.Task[None] | None = None
        self._conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | None = None
        self._forgot_at = 0.0
        self._warned_at = 0.0

    async def hit(self, identity: str) -> int | None:
        """Count a request of ``identity``: its number in this second (1 for the first),
        or ``None`` when it could not be counted."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((identity, future))
        if self._counting is None or self._counting.done():
            self._counting = asyncio.create_task(self._count_all(), name="luc-rate-limit")
        return await future

    async def _count_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            hits = Counter(identity for identity, _ in group)
            try:
                counts = await self._count(hits)
            except Exception as exc:  # not counted: let them through, and say so
                self._warn(exc)
                counts = None
            seen: Counter[str] = Counter()
            for identity, future in group:
                seen[identity] += 1
                if not future.done():
                    # The group's requests of one identity take the last numbers, in order.
                    future.set_result(
                        None
                        if counts is None
                        else counts[identity] - hits[identity] + seen[identity]
                    )

    async def _count(self, hits: Counter[str]) -> dict[str, int]:
        if self._conn is None:
            self._conn = await self.pool.acquire(timeout=COUNT_TIMEOUT_SECONDS)
        conn = self._conn
        try:
            rows = await conn.fetch(
                queries.HIT_RATE_WINDOWS,
                list(hits),
                list(hits.values()),
                timeout=COUNT_TIMEOUT_SECONDS,
            )
            if (now := time.monotonic()) - self._forgot_at > FORGET_EVERY_SECONDS:
                self._forgot_at = now
                await conn.execute(queries.FORGET_RATE_WINDOWS, timeout=COUNT_TIMEOUT_SECONDS)
        except BaseException as exc:
            self._conn = None
            gave_up(conn, exc)  # closed, not reset: a reset would wait as long again
            await self.pool.release(conn)  # a broken one is closed by the pool
            raise
        return {r["identity"]: r["requests"] for r in rows}

    def _warn(self, exc: Exception) -> None:
        if (now := time.monotonic()) - self._warned_at > WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "rate_limit_not_counted",
                error=f"{type(exc).__name__}: {exc}",
                detail="requests go on unlimited while PostgreSQL cannot count them",
            )

    async def aclose(self) -> None:
        if self._counting is not None:
            await asyncio.gather(self._counting, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self.pool.release(conn)
