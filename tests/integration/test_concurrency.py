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
