"""Storing validated events once, and telling a replay from a conflicting reuse of an id."""

from __future__ import annotations

from collections.abc import Sequence

from service.db import Connection
from service.ingest import queries
from service.ingest.models import UsageEvent


async def insert_new_events(conn: Connection, events: Sequence[UsageEvent]) -> set[str]:
    """Insert ``events`` (unique ids) and return the ids that were new.

    Ids already stored insert nothing; the caller classifies them with ``stored_events``.
    """
    ordered = sorted(events, key=lambda e: e.id)
    rows = await conn.fetch(
        queries.INSERT_EVENTS,
        [e.id for e in ordered],
        [e.occurred_at for e in ordered],
        [e.job_id for e in ordered],
        [e.agent for e in ordered],
        [e.provider for e in ordered],
        [e.model for e in ordered],
        [e.input_tokens for e in ordered],
        [e.cached_input_tokens for e in ordered],
        [e.cache_write_tokens for e in ordered],
        [e.output_tokens for e in ordered],
        [e.reasoning_tokens for e in ordered],
        # Decimal text: exact, and cheaper for asyncpg than binary NUMERIC (see the query).
        [None if e.provider_cost_usd is None else str(e.provider_cost_usd) for e in ordered],
        [e.status for e in ordered],
        [e.attributes for e in ordered],
    )
    return {r["event_id"] for r in rows}


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
            input_tokens=r["input_tokens"],
            cached_input_tokens=r["cached_input_tokens"],
            cache_write_tokens=r["cache_write_tokens"],
            output_tokens=r["output_tokens"],
            reasoning_tokens=r["reasoning_tokens"],
            provider_cost_usd=r["provider_cost_usd"],
            status=r["status"],
            attributes=r["attributes"],
        )
        for r in rows
    }
