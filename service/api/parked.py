"""Parked usage: proxied calls the ledger refused (``conflict``, ``rejected``), kept in the
local spool for an operator to look at, then replay (once the cause is fixed) or discard.

Usage that merely could not be recorded yet (PostgreSQL away, a lock, a timeout) is not
parked: it waits in the same spool and is replayed on its own; ``pending`` counts it.
"""

from __future__ import annotations

from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from service.api.deps import LucController, Resources
from service.api.params import Limit, decode_number_cursor, page, page_size
from service.api.schemas.events import EventResult
from service.api.schemas.parked import ParkedUsagePage, parked_out
from service.auth.guard import ADMIN, READ
from service.errors import NotFoundError


class ParkedUsageController(LucController):
    path = "/v1/usage/parked"
    tags = ["gateway"]
    opt = READ

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
        limit: Limit = None,
    ) -> ParkedUsagePage:
        size = page_size(limit)
        sink = luc.recording
        if sink is None:
            return ParkedUsagePage(items=[], next_cursor=None, parked=0, pending=0)
        rows = await sink.parked(decode_number_cursor(cursor), size + 1)
        pending, parked = await sink.spool_counts()
        items, next_cursor = page(rows, size, lambda i: str(i.id))
        return ParkedUsagePage(
            items=[parked_out(i) for i in items],
            next_cursor=next_cursor,
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
