"""A value PostgreSQL refuses sinks only its own event (SPEC §2: nothing else is lost).

Validation is meant to refuse every value PostgreSQL cannot store; these tests check the
path behind it, for a value that gets through anyway. The failure is injected: a CHECK
constraint added to the test database refuses events of the job ``job-poison``, as
PostgreSQL would refuse a numeric it cannot hold. Innocent events that share the
transaction (a group commit of single events from other requests, or the same batch) are
recorded all the same; the poisoned one is rejected with PostgreSQL's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from service.app import create_app
from service.db import connect
from service.locks import REPRICING_LOCK_KEY
from tests.support.events import wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.settings import settings_for

POISON = "job-poison"
INNOCENT = "job-innocent"
REFUSE_POISON = (
    f"ALTER TABLE ledger_entries ADD CONSTRAINT test_refuses_poison CHECK (job_id <> '{POISON}')"
)


# gemini-3.0-flash: 1000 × $0.10/M + 500 × $0.40/M = $0.0003.
event = partial(wire_event, model="gemini-3.0-flash")


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's ASGI lifespan (pool, group-commit writer) in this event loop."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    # Litestar types the scope and messages as its own TypedDicts (its scope has an "app"
    # key); ASGI's plain dicts are what a server passes, and what this one passes.
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)  # type: ignore[arg-type]
    )
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


@pytest.fixture
def app(database_url: str) -> Litestar:
    """One group-commit writer, so that every event queued behind a commit joins one group."""
    return create_app(settings_for(database_url, LUC_INGEST_WRITERS="1"))


@pytest.fixture
async def api(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in this event loop, so that requests really run side by side
    (Litestar's test client serves one request at a time)."""
    async with running(app):
        # httpx types an ASGI app over plain dicts, Litestar its own over TypedDicts.
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://luc") as client:
            yield client


async def wait_until(condition: Callable[[], Any], what: str, seconds: float = 15) -> None:
    """Poll ``condition`` (sync or async) until it holds; fail after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def test_a_refused_event_in_a_group_commit_fails_only_its_own_request(
    app: Litestar, api: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute(REFUSE_POISON)
    writer = app.state.luc.group_writer
    # Holding the re-pricing lock makes the writer's first commit wait (ingest takes it
    # shared), so the single events sent meanwhile queue up and form the next group.
    holder = await connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", REPRICING_LOCK_KEY)
        first = asyncio.create_task(api.post("/v1/events", json=event("single-0", job_id=INNOCENT)))

        async def writer_waits_for_the_lock() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
            )

        await wait_until(writer_waits_for_the_lock, "the first commit waits for the lock")
        bodies = [event(f"single-{n}", job_id=INNOCENT) for n in range(1, 21)]
        bodies.insert(10, event("single-poison", job_id=POISON))
        rest = [asyncio.create_task(api.post("/v1/events", json=b)) for b in bodies]
        await wait_until(lambda: writer.waiting == 21, "21 events wait for the next group")
        await holder.execute("SELECT pg_advisory_unlock($1)", REPRICING_LOCK_KEY)
        answers = await asyncio.gather(first, *rest)
    finally:
        await holder.close()

    by_id = {a.json()["id"]: (a.status_code, a.json()) for a in answers}
    poisoned = by_id.pop("single-poison")
    assert poisoned[0] == 422, poisoned
    assert poisoned[1]["status"] == "rejected"
    assert "test_refuses_poison" in poisoned[1]["reason"], poisoned
    assert by_id == {
        f"single-{n}": (201, {"id": f"single-{n}", "status": "accepted"}) for n in range(21)
    }

    # 21 innocent events of $0.0003 each: $0.0063; the poisoned one left no trace.
    job = (await api.get(f"/v1/jobs/{INNOCENT}")).json()
    assert (Decimal(job["cost_usd"]), job["events"]) == (Decimal("0.0063"), 21)
    assert (await api.get(f"/v1/jobs/{POISON}")).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 21
    await assert_rollups_equal_ledger(db)


async def test_a_refused_event_in_a_batch_is_rejected_and_its_neighbours_recorded(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await db.execute(REFUSE_POISON)
    events = [
        event("batch-1", job_id=INNOCENT),
        event("batch-2", job_id=INNOCENT),
        event("batch-poison", job_id=POISON),
        event("batch-3", job_id=INNOCENT),
        event("batch-1", job_id=INNOCENT),  # a repeat: still a duplicate, counted once
    ]
    response = await api.post("/v1/events/batch", json={"events": events})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (3, 1, 1)
    statuses = [(r["id"], r["status"]) for r in answer["results"]]
    assert statuses == [
        ("batch-1", "accepted"),
        ("batch-2", "accepted"),
        ("batch-poison", "rejected"),
        ("batch-3", "accepted"),
        ("batch-1", "duplicate"),
    ]
    assert "test_refuses_poison" in answer["results"][2]["reason"]
    job = (await api.get(f"/v1/jobs/{INNOCENT}")).json()
    assert (Decimal(job["cost_usd"]), job["events"]) == (Decimal("0.0009"), 3)
    await assert_rollups_equal_ledger(db)
