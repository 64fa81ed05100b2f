"""A dry run whose client disconnects is dropped; an applied run is not.

A dry run of ``rerate`` (or ``plans reprice``) reads every event since its instant under
the re-pricing lock, held shared: on a large ledger, minutes. Its client gone (a CLI
interrupted, a proxy's timeout), it ran on, and a catalog version or an applied run waited
behind it all that time. Here the lock is held exclusively by the test, so that the run
waits for it: a request the server has not dropped stays queued on the lock in
PostgreSQL, which the test sees in ``pg_locks``. A real ``luc serve``, since only a real
server tells a handler that its client left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from service.locks import REPRICING_LOCK_KEY
from tests.support.events import wire_event
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_until

WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid <> $1"
"""Backends other than the test's own queued on an advisory lock: the run, waiting."""


async def _none_waiting(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval(WAITING, db.get_server_pid()) == 0)


async def _sent_then_dropped(
    db: asyncpg.Connection, http: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    """Send ``body``, wait until the server's run queues on the lock, then leave."""
    request = asyncio.ensure_future(http.post(path, json=body))
    await wait_until(
        lambda: db.fetchval(WAITING, db.get_server_pid()), 20, f"{path} to wait for the lock"
    )
    request.cancel()  # httpx closes the connection: the client is gone
    with contextlib.suppress(asyncio.CancelledError):
        await request


async def test_a_dry_run_is_dropped_when_its_client_leaves_and_an_applied_run_goes_on(
    server_factory: Callable[..., ServerProcess], db: asyncpg.Connection
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        recorded = await http.post(
            "/v1/events", json=wire_event("gone-1", occurred_at="2026-10-10T09:00:00Z")
        )
        assert recorded.status_code == 201, recorded.text
        # A correction of the event's model, effective before it: an applied run books it.
        catalog = (await http.get("/v1/catalog")).json()
        (flash,) = [m for m in catalog["models"] if m["id"] == "google/gemini-3.0-flash"]
        corrected = await http.post(
            "/v1/catalog/versions",
            json={
                "effective_from": "2026-10-01T00:00:00Z",
                "label": "flash corrected",
                "parent": catalog["id"],
                "models": [{**flash, "input": "0.20"}],
            },
        )
        assert corrected.status_code == 201, corrected.text

        plan = await http.post(
            "/v1/plans",
            json={
                "id": "standard",
                "name": "Standard",
                "effective_from": "2026-01-01T00:00:00Z",
                "basis": "catalog",
                "markup": "0.25",
            },
        )
        assert plan.status_code == 201, plan.text

        await db.execute(f"SELECT pg_advisory_lock({REPRICING_LOCK_KEY})")
        try:
            since = {"since": "2026-10-01T00:00:00Z"}
            await _sent_then_dropped(db, http, "/v1/catalog/rerate", {**since, "dry_run": True})
            await wait_until(
                lambda: _none_waiting(db),
                10,
                "the abandoned dry run to leave the lock's queue",
            )
            await _sent_then_dropped(
                db, http, "/v1/plans/standard/reprice", {**since, "dry_run": True}
            )
            await wait_until(
                lambda: _none_waiting(db),
                10,
                "the abandoned plan dry run to leave the lock's queue",
            )

            await _sent_then_dropped(db, http, "/v1/catalog/rerate", since)
            await asyncio.sleep(1)  # time enough to be dropped, were it a dry run
            assert await db.fetchval(WAITING, db.get_server_pid()) == 1
        finally:
            await db.execute(f"SELECT pg_advisory_unlock({REPRICING_LOCK_KEY})")

        # The applied run, its client gone, booked the correction: 1,000 input tokens at
        # 0.20 instead of 0.10 per 1M, 0.0001 more than the event's 0.0003.
        async def rerated() -> Any:
            job = (await http.get("/v1/jobs/job-1")).json()
            return job["cost_usd"] if job["cost_usd"] != "0.0003" else None

        assert await wait_until(rerated, 20, "the applied run to book its adjustment") == "0.0004"
