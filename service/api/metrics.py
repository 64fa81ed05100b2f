"""``GET /metrics``: Prometheus exposition of the ledger and of this process."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency, Provide
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.api.deps import Resources, provide_resources
from service.api.params import ANY_QUERY
from service.auth.guard import READ, found_database_away
from service.db import CONNECTION_ERRORS, PROBE_WAIT_SECONDS, pooled
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
async def metrics(
    luc: NamedDependency[Resources], request: Request[Any, Any, Any]
) -> Response[bytes]:
    # The spool is counted (on threads) while PostgreSQL answers, not after it.
    spooled = None if luc.recording is None else asyncio.ensure_future(_spool_counts(luc.recording))
    try:
        # Without the ledger the answer still holds this process's series and says
        # `luc_database_up 0`: it must come before Prometheus gives the scrape up (10 s by
        # default), or `LucDatabaseDown` never fires for a database that answers nothing.
        # The connection is closed, not reset, when PostgreSQL did not answer (``pooled``).
        snapshot = LedgerSnapshot(database_up=False)
        if not found_database_away(request.scope):  # the key's look-up just found it away
            with contextlib.suppress(*CONNECTION_ERRORS):
                async with pooled(luc.pool, PROBE_WAIT_SECONDS) as conn:
                    snapshot = await read_snapshot(
                        conn, luc.settings.reconciliation.tolerance, within=2 * PROBE_WAIT_SECONDS
                    )
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
