"""Two server processes on one database ingest overlapping batches at the same time.

Every event is sent by both servers, in different orders and different batches, from
several client threads each, and every batch touches the same hot job × agent × model
rows. No request may fail (a deadlock would be a 500), each event is accepted exactly once
across all answers, and the totals are exact.
"""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.ledger_truth import (
    assert_jobs_match,
    assert_ledger_holds_each_event_once,
    make_events,
)

pytestmark = pytest.mark.slow

EVENTS = 3000
BATCH_SIZE = 150
THREADS_PER_SERVER = 4
HOT = ("job-hot", "ACHEEVY")


def _plan(events: list[dict[str, Any]], seed: int) -> list[list[dict[str, Any]]]:
    """All events once, shuffled into batches; each batch in its own order."""
    order = events[:]
    random.Random(seed).shuffle(order)
    return [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]


def _send_all(base_urls: list[str], plans: list[list[list[dict[str, Any]]]]) -> list[Any]:
    """Interleave both servers' batches over THREADS_PER_SERVER threads per server, released
    together; return every (status, body) pair."""
    queues = {url: plan[:] for url, plan in zip(base_urls, plans, strict=True)}
    lock = threading.Lock()
    gate = threading.Barrier(THREADS_PER_SERVER * len(base_urls))
    answers: list[Any] = []

    def worker(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            http.get("/readyz")  # connect before the gate opens
            gate.wait()
            while True:
                with lock:
                    if not queues[url]:
                        return
                    batch = queues[url].pop()
                response = http.post("/v1/events/batch", json={"events": batch})
                body = response.json() if response.status_code == 200 else response.text
                with lock:
                    answers.append((response.status_code, len(batch), body))

    with ThreadPoolExecutor(THREADS_PER_SERVER * len(base_urls)) as pool:
        futures = [pool.submit(worker, url) for url in base_urls for _ in range(THREADS_PER_SERVER)]
        for future in futures:
            future.result()
    return answers


async def test_two_servers_ingesting_the_same_events_at_once_count_each_exactly_once(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    events = make_events(
        "conc",
        EVENTS,
        jobs=[f"job-{n}" for n in range(5)],
        seed=7,
        start=datetime(2026, 11, 21, 22, 0, tzinfo=UTC),
        hot=HOT,
        hot_share=0.3,
    )
    plans = [_plan(events, seed=1), _plan(events, seed=2)]
    for plan in plans:
        assert all(any(e["job_id"] == HOT[0] for e in batch) for batch in plan)
    first, second = server_factory(), server_factory()

    answers = await asyncio.to_thread(_send_all, [first.base_url, second.base_url], plans)

    assert len(answers) == sum(len(plan) for plan in plans)
    failed = [(status, body) for status, _, body in answers if status != 200]
    assert failed == [], "no request may fail, and none may deadlock"
    for _, size, body in answers:
        assert body["conflicts"] == body["rejected"] == 0
        assert body["accepted"] + body["duplicates"] == size
    assert sum(body["accepted"] for _, _, body in answers) == EVENTS
    assert sum(body["duplicates"] for _, _, body in answers) == EVENTS  # each sent twice
    accepted_ids = [
        r["id"] for _, _, body in answers for r in body["results"] if r["status"] == "accepted"
    ]
    assert sorted(accepted_ids) == sorted(e["id"] for e in events)

    await asyncio.to_thread(assert_jobs_match, first.base_url, events)
    await asyncio.to_thread(assert_jobs_match, second.base_url, events)
    await assert_ledger_holds_each_event_once(db, events)
    # PostgreSQL's own count: no deadlock was detected (and, say, retried away) either.
    await db.execute("SELECT pg_stat_force_next_flush()")
    deadlocks = await db.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    assert deadlocks == 0


NEW_JOBS_ROUNDS = 4
NEW_JOBS_BATCHES = 40
NEW_JOBS_PER_ROUND = 21


def _new_jobs_batches(round_: int) -> list[list[dict[str, Any]]]:
    """NEW_JOBS_BATCHES batches of 20 events over the same NEW_JOBS_PER_ROUND job ids, none
    of which exists yet: every batch makes some of them while others make the rest."""
    pick = random.Random(round_)
    return [
        [
            {
                "id": f"new-{round_}-{b}-{n}",
                "occurred_at": "2026-11-21T10:00:00Z",
                "job_id": f"new-{round_}-job-{pick.randrange(NEW_JOBS_PER_ROUND)}",
                "agent": "ACHEEVY",
                "provider": "openrouter",
                "model": "google/gemini-3.0-flash",
                "input_tokens": 1000,
                "output_tokens": 500,
            }
            for n in range(20)
        ]
        for b in range(NEW_JOBS_BATCHES)
    ]


async def test_batches_making_the_same_new_jobs_at_once_never_deadlock(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    """A batch made its new jobs' rows, then locked the rows that existed, then (in a
    statement of its own) those another batch had made meanwhile: not in one job order, so
    two batches each held a job the other waited for, and PostgreSQL broke the cycle by
    failing one of them, a 500 for a batch of valid events (seen in 17 of 40 batches with
    two workers)."""
    servers = [server_factory(), server_factory()]
    async with httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as admin:
        # Prepaid credits anywhere send every batch through the opening that locks its jobs
        # in its own statement (the one-trip path leaves such batches to it).
        made = await admin.post("/v1/customers", json={"id": "acme", "name": "Acme"})
        assert made.status_code == 201, made.text
        granted = await admin.post("/v1/customers/acme/credits", json={"amount_usd": "5"})
        assert granted.status_code == 201, granted.text
    await db.execute("SELECT pg_stat_force_next_flush()")
    deadlocks_before = await db.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    answers: list[tuple[int, str]] = []

    async def send(http: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        response = await http.post("/v1/events/batch", json={"events": batch})
        answers.append((response.status_code, response.text))

    clients = [httpx.AsyncClient(base_url=servers[n % 2].base_url, timeout=60) for n in range(10)]
    try:
        for round_ in range(NEW_JOBS_ROUNDS):
            batches = _new_jobs_batches(round_)
            await asyncio.gather(*(send(clients[i % 10], b) for i, b in enumerate(batches)))
    finally:
        for client in clients:
            await client.aclose()

    assert [a for a in answers if a[0] != 200] == []
    stored = await db.fetchval("SELECT count(*) FROM event_keys WHERE event_id LIKE 'new-%'")
    assert stored == NEW_JOBS_ROUNDS * NEW_JOBS_BATCHES * 20
    # Each event 1,000 input tokens at 0.10 and 500 output at 0.40 per 1M: 0.0003.
    total = await db.fetchval("SELECT sum(cost_usd) FROM rollup_jobs WHERE job_id LIKE 'new-%'")
    assert total == Decimal("0.0003") * NEW_JOBS_ROUNDS * NEW_JOBS_BATCHES * 20
    await db.execute("SELECT pg_stat_force_next_flush()")
    deadlocks = await db.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    assert deadlocks == deadlocks_before
