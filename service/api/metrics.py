"""``GET /metrics``: Prometheus exposition of the ledger and of this process."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from litestar import MediaType, Response, get
from litestar.di import NamedDependency, Provide
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.api.deps import Resources, provide_resources
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
    opt={**READ, "metrics": True},
    media_type=MediaType.TEXT,
)
async def metrics(luc: NamedDependency[Resources]) -> Response[bytes]:
    # This process's series (the spool counted first, on threads) are written on a thread
    # while PostgreSQL answers the ledger's queries, not after them.
    process = asyncio.ensure_future(_process_text(luc))
    try:
        try:
            async with luc.pool.acquire(timeout=5) as conn:
                snapshot = await read_snapshot(conn, luc.settings.reconciliation.tolerance)
        except CONNECTION_ERRORS:
            snapshot = LedgerSnapshot(database_up=False)  # still serve this process's series
        process_text = await process
    finally:
        if not process.done():
            process.cancel()
    return Response(luc.metrics.render(snapshot, process_text), media_type=EXPOSITION_TYPE)


async def _process_text(luc: Resources) -> bytes:
    if luc.recording is not None and (counts := await _spool_counts(luc.recording)) is not None:
        pending, parked = counts
        luc.metrics.gateway_spool_pending.set(pending)
        luc.metrics.gateway_parked_events.set(parked)
    return await asyncio.to_thread(luc.metrics.process_text)


async def _spool_counts(recording: RecordingSink) -> tuple[int, int] | None:
    """Read from the spool file at each scrape: every process sharing it sees the same
    (``None`` when it cannot be read now: the gauges keep their last reading)."""
    with contextlib.suppress(sqlite3.Error, OSError):
        return await recording.spool_counts()
    return None
