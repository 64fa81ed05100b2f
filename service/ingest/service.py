"""Storing validated events once, and telling a replay from a conflicting reuse of an id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.db import Connection, from_row
from service.ingest import queries
from service.ingest.models import UsageEvent


async def stored_events(conn: Connection, ids: Sequence[str]) -> dict[str, UsageEvent]:
    """The stored events with these ids."""
    if not ids:
        return {}  # the usual case (every event new): spare the round trip
    rows = await conn.fetch(queries.SELECT_EVENTS_BY_ID, list(ids))
    return {r["event_id"]: event_from_row(r) for r in rows}


def event_from_row(r: Any) -> UsageEvent:
    """An event as stored, from a row holding ``queries.event_fields``: its id
    (``event_id``) and its content fields (re-rating's bookings read it too). Who sent it
    is not kept (``reservation_key``): a stored event settles nothing again."""
    return from_row(UsageEvent, r, id=r["event_id"], reservation_key=None)
