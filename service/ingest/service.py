"""Storing validated events once, and telling a replay from a conflicting reuse of an id."""

from __future__ import annotations

from collections.abc import Sequence

from service.db import Connection
from service.ingest import queries
from service.ingest.models import UsageEvent
from service.tokens import counts_from_row


async def stored_events(conn: Connection, ids: Sequence[str]) -> dict[str, UsageEvent]:
    """The stored events with these ids."""
    if not ids:
        return {}  # the usual case (every event new): spare the round trip
    rows = await conn.fetch(queries.SELECT_EVENTS_BY_ID, list(ids))
    return {
        r["event_id"]: UsageEvent(
            id=r["event_id"],
            occurred_at=r["occurred_at"],
            job_id=r["job_id"],
            agent=r["agent"],
            provider=r["provider"],
            model=r["model"],
            **counts_from_row(r),
            provider_cost_usd=r["provider_cost_usd"],
            status=r["status"],
            attributes=r["attributes"],
            reservation_id=r["reservation_id"],
        )
        for r in rows
    }
