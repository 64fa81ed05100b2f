"""``GET /metrics``: Prometheus exposition of the ledger and of this process."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from litestar import MediaType, Response, get
from litestar.di import NamedDependency, Provide
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.api.deps import Resources, provide_resources
from service.api.params import ANY_QUERY
from service.auth.guard import READ
from service.db import CONNECTION_ERRORS
from service.metrics.rollup_series import LedgerSnapshot, read_snapshot
from service.recording.sink import RecordingSink

# Litestar appends "; charset=utf-8" to text/* types itself; CONTENT_TYPE_LATEST has it.
EXPOSITION_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics: cost and tokens from the ledger, ingest and HTTP timings",
    tags=["metrics"],
    dependencies={"luc": Provide(provide_resources)},
    include_in_schema=True,
    opt={**READ, "metrics": True, ANY_QUERY: True},  # scrapers may add their own
    media_type=MediaType.TEXT,
)
async def metrics(luc: NamedDependency[Resources]) -> Response[bytes]:
    # The spool is counted (on threads) while PostgreSQL answers, not after it.
    spooled = None if luc.recording is None else asyncio.ensure_future(_spool_counts(luc.recording))
    try:
        try:
            async with luc.pool.acquire(timeout=5) as conn:
                snapshot = await read_snapshot(conn, luc.settings.reconciliation.tolerance)
        except CONNECTION_ERRORS:
            snapshot = LedgerSnapshot(database_up=False)  # still serve this process's series
        counts = None if spooled is None else await spooled
    finally:
        if spooled is not None and not spooled.done():
            spooled.cancel()
    if counts is not None:
        pending, parked = counts
        luc.metrics.gateway_spool_pending.set(pending)
        luc.metrics.gateway_parked_events.set(parked)
    return Response(luc.metrics.render(snapshot), media_type=EXPOSITION_TYPE)


async def _spool_counts(recording: RecordingSink) -> tuple[int, int] | None:
    """Read from the spool file at each scrape: every process sharing it sees the same
    (``None`` when it cannot be read now: the gauges keep their last reading)."""
    with contextlib.suppress(sqlite3.Error, OSError):
        return await recording.spool_counts()
    return None
