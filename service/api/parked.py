"""Parked usage: proxied calls the ledger refused (``conflict``, ``rejected``), kept in the
local spool for an operator to look at, then replay (once the cause is fixed) or discard.

Usage that merely could not be recorded yet (PostgreSQL away, a lock, a timeout) is not
parked: it waits in the same spool and is replayed on its own; ``pending`` counts it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.deps import Resources, provide_resources
from service.api.params import decode_cursor, encode_cursor, page_size
from service.api.schemas import EventResult, timestamp
from service.auth.guard import ADMIN, READ
from service.client.spool import Parked
from service.errors import InvalidRequestError, NotFoundError


class ParkedUsageOut(msgspec.Struct):
    id: int
    """The spool's number for it: what replay and discard take."""
    event_id: str
    status: str
    """``conflict`` or ``rejected``: the ledger's answer."""
    reason: str | None
    parked_at: str
    event: Any
    """The usage event as the gateway built it (its JSON text if it is no JSON)."""


class ParkedUsagePage(msgspec.Struct):
    items: list[ParkedUsageOut]
    next_cursor: str | None
    parked: int
    """Everything parked in this process's spool."""
    pending: int
    """Usage waiting in the spool to be recorded (replayed on its own, not parked)."""


def parked_out(item: Parked) -> ParkedUsageOut:
    try:
        event: Any = msgspec.json.decode(item.body)
    except msgspec.DecodeError:
        event = item.body.decode(errors="replace")
    return ParkedUsageOut(
        id=item.id,
        event_id=item.event_id,
        status=item.status,
        reason=item.reason,
        parked_at=timestamp(datetime.fromtimestamp(item.parked_at, UTC)) or "",
        event=event,
    )


def _after(cursor: str | None) -> int:
    position = decode_cursor(cursor)
    if not position:
        return 0
    if not position.isdigit():
        raise InvalidRequestError("cursor is not one this API issued", status_code=400)
    return int(position)


class ParkedUsageController(Controller):
    path = "/v1/usage/parked"
    tags = ["gateway"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @get(
        "/",
        operation_id="listParkedUsage",
        summary="Proxied calls' usage the ledger refused, kept for an operator",
        description=(
            "Each item is a usage event that the ledger answered conflict or rejected, with "
            "the reason; it stays here until replayed or discarded. pending counts usage "
            "waiting to be recorded (replayed on its own). Per process: the spool is local."
        ),
    )
    async def list_parked(
        self,
        luc: NamedDependency[Resources],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(description="page size, 1–1000 (100)")] = None,
    ) -> ParkedUsagePage:
        size = page_size(limit)
        sink = luc.recording
        if sink is None:
            return ParkedUsagePage(items=[], next_cursor=None, parked=0, pending=0)
        items = await sink.parked(_after(cursor), size + 1)
        pending, parked = await sink.spool_counts()
        more = len(items) > size
        items = items[:size]
        return ParkedUsagePage(
            items=[parked_out(i) for i in items],
            next_cursor=encode_cursor(str(items[-1].id)) if more else None,
            parked=parked,
            pending=pending,
        )

    @post(
        "/{parked_id:int}/replay",
        operation_id="replayParkedUsage",
        summary="Record one parked event again, once the cause of its refusal is fixed",
        description=(
            "accepted or duplicate: it is on the ledger and leaves the list. conflict or "
            "rejected: it stays parked with the new reason. 503 when it cannot be recorded now."
        ),
        status_code=200,
        opt=ADMIN,
    )
    async def replay(
        self, luc: NamedDependency[Resources], parked_id: FromPath[int]
    ) -> EventResult:
        if luc.recording is None:
            raise NotFoundError(f"no parked usage {parked_id}")
        result = await luc.recording.replay_parked(parked_id)
        return EventResult(id=result.id, status=result.status, reason=result.reason)

    @delete(
        "/{parked_id:int}",
        operation_id="discardParkedUsage",
        summary="Drop one parked event for good (its body stays in the log)",
        status_code=204,
        opt=ADMIN,
    )
    async def discard(self, luc: NamedDependency[Resources], parked_id: FromPath[int]) -> None:
        if luc.recording is None:
            raise NotFoundError(f"no parked usage {parked_id}")
        await luc.recording.discard_parked(parked_id)
