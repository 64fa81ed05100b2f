"""``luc serve --workers 2`` as a real process: two workers behind one port, and LUC as one
service all the same. Both serve; events they write side by side for the same jobs add up
exactly; /metrics sums their process series; a key's rate limit holds across them; every
call they proxy is on the ledger exactly once; and the usage of
a call whose worker is SIGKILLed right after the answer's last byte is in the spool, and
recorded once after the worker is replaced.

The upstream is the fake OpenRouter on loopback; the ledger is the test's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.auth.keys import create_key
from service.locks import LOCK_REPRICING
from service.recording.journal import journal_ids
from tests.support.events import wire_event
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.ledger_truth import assert_rollups_equal_ledger, ledger
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

FLASH = "google/gemini-3.0-flash"
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Capital of France?"}]}
LIMIT = 10  # requests per second and key


@pytest.fixture
def workers(
    server_factory: Callable[..., ServerProcess], fake_openrouter: FakeOpenRouter
) -> Iterator[ServerProcess]:
    yield server_factory(
        LUC_WORKERS="2",
        LUC_AUTH="on",
        LUC_METRICS_PUBLIC="1",
        LUC_RATE_LIMIT_PER_SECOND=str(LIMIT),
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
    )


def _pid(base_url: str) -> int:
    """The pid of the worker that answers a new connection."""
    answer = httpx.get(f"{base_url}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["pid"])


def _both_pids(server: ServerProcess) -> tuple[set[int], Counter[int]]:
    """Both workers' pids, asked on new connections until both have answered; and how many
    /readyz each answered meanwhile."""
    answered: Counter[int] = Counter()

    def both() -> bool:
        answered[_pid(server.base_url)] += 1
        return len(answered) == 2

    wait_for(both, 60, "both workers to answer /readyz")
    return set(answered), answered


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return _samples(answer.text)


def _requests(route: str, method: str, status: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = (("method", method), ("route", route), ("status", status))
    return "luc_http_request_duration_seconds_count", labels


ACCEPTED = ("luc_events_total", (("outcome", "accepted"),))


async def _proxy(server: ServerProcess, key: str, calls: int) -> list[str]:
    """``calls`` chat completions, half streamed, each on a new connection (so both workers
    take some); the event id of each answer."""
    headers = {"Authorization": f"Bearer {key}", "X-LUC-Job": "job-w", "X-LUC-Agent": "ORACLE"}

    async def one(stream: bool) -> str:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            answer = await http.post(
                "/v1/chat/completions", json={**BODY, "stream": stream}, headers=headers
            )
        assert answer.status_code == 200, answer.text
        if not stream:
            return answer.headers["x-luc-event-id"]
        assert answer.text.endswith("data: [DONE]\n\n")
        chunks = [c for c in answer.text.split("\n\n") if c.startswith("data: {")]
        return str(msgspec.json.decode(chunks[0].removeprefix("data: "))["id"])

    return list(await asyncio.gather(*(one(i % 2 == 1) for i in range(calls))))


async def _ingest(server: ServerProcess, key: str) -> int:
    """Batches of events for the same two jobs, sent at once on new connections (so both
    workers write them side by side); how many events."""
    batches = [
        [wire_event(f"w-{b}-{i}", job_id=f"job-{i % 2}") for i in range(50)] for b in range(4)
    ]

    async def send(batch: list[dict[str, object]]) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            answer = await http.post(
                "/v1/events/batch",
                json={"events": batch},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(batch)

    await asyncio.gather(*(send(b) for b in batches))
    return sum(len(b) for b in batches)


async def _pg_second(db: asyncpg.Connection) -> float:
    return float(await db.fetchval("SELECT extract(epoch FROM clock_timestamp())"))


async def test_two_workers_serve_one_port_as_one_luc(
    workers: ServerProcess, db: asyncpg.Connection
) -> None:
    _, key = await create_key(db, "gateway", "ingest")
    _, other_key = await create_key(db, "burst", "ingest")

    # Both serve, each a process of its own; their series are summed at every scrape,
    # whichever of them answers it.
    before = _scrape(workers)
    pids, readyz_answered = _both_pids(workers)
    assert workers.pid not in pids  # the parent supervises, the workers serve
    # Answers go out as soon as they are written: a worker's connections do not wait for
    # the client's delayed ACK (about 40 ms each, when Nagle's algorithm was left on).
    async with httpx.AsyncClient(base_url=workers.base_url, timeout=10) as http:
        took = []
        for _ in range(25):
            started = time.perf_counter()
            assert (await http.get("/healthz")).status_code == 200
            took.append(time.perf_counter() - started)
    assert statistics.median(took) < 0.03, took
    calls = 8  # below the limit, whatever second they fall in
    ids = await _proxy(workers, key, calls)
    events = await _ingest(workers, other_key)

    async def recorded() -> bool:
        return len(await ledger(db)) == calls + events

    await wait_until(recorded, 30, "every proxied call and event on the ledger")
    after = _scrape(workers)
    route = _requests("/readyz", "GET", "200")
    assert after[route] - before.get(route, 0) == sum(readyz_answered.values())
    chat = _requests("/v1/chat/completions", "POST", "200")
    assert after[chat] - before.get(chat, 0) == calls
    assert after[ACCEPTED] - before[ACCEPTED] == calls + events
    assert after[("luc_gateway_stub_mode", ())] == 0  # a gauge that each worker sets alike

    # Every proxied call on the ledger exactly once, and nothing else.
    proxied = [e for e in await ledger(db) if e["job_id"] == "job-w"]
    assert sorted(e["event_id"] for e in proxied) == sorted(ids)
    assert len(set(ids)) == calls
    assert {e["kind"] for e in proxied} == {"charge"}
    # The events both workers wrote for the same jobs, exact: 100 each at 0.0003 USD
    # (1000 × 0.10 + 500 × 0.40 per 1M).
    totals = await db.fetch(
        "SELECT job_id, cost_usd, events FROM rollup_jobs WHERE job_id IN ('job-0', 'job-1') "
        "ORDER BY job_id"
    )
    assert [tuple(r) for r in totals] == [
        ("job-0", Decimal("0.03"), 100),
        ("job-1", Decimal("0.03"), 100),
    ]
    await assert_rollups_equal_ledger(db)

    # One key's rate limit holds across both workers: a burst of 4 × the limit, half on
    # connections to each worker, started just after a second of PostgreSQL's clock (the
    # limiter's) begins.
    connections: dict[int, list[httpx.AsyncClient]] = {pid: [] for pid in pids}
    opened: list[httpx.AsyncClient] = []
    try:
        while min(len(c) for c in connections.values()) < 5:
            http = httpx.AsyncClient(
                base_url=workers.base_url,
                timeout=30,
                headers={"Authorization": f"Bearer {other_key}"},
                limits=httpx.Limits(max_connections=1),
            )
            opened.append(http)
            pid = int((await http.get("/readyz")).json()["pid"])  # not rate-limited
            if len(connections[pid]) < 5:
                connections[pid].append(http)
            assert len(opened) < 200, "the kernel never handed a connection to a worker"
        now = await _pg_second(db)
        # Paced to the limiter's clock: the burst starts as a second begins.
        await asyncio.sleep(math.ceil(now) - now + 0.02)
        started = await _pg_second(db)
        burst = [http for group in connections.values() for http in group]
        answers = await asyncio.gather(
            *(http.get("/v1/models") for http in burst for _ in range(4))
        )
        ended = await _pg_second(db)
    finally:
        for http in opened:
            await http.aclose()
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 429}, statuses
    assert all(a.headers.get("retry-after") == "1" for a in answers if a.status_code == 429)
    seconds = math.floor(ended) - math.floor(started) + 1
    # Never more than the limit in a second; in one second, exactly the limit (two
    # workers counting apart would have let up to twice as many through).
    assert statuses[200] <= LIMIT * seconds, (statuses, seconds)
    if seconds == 1:
        assert statuses[200] == LIMIT, statuses
    remaining = sorted(
        int(a.headers["ratelimit-remaining"]) for a in answers if a.status_code == 200
    )
    if seconds == 1:
        assert remaining == list(range(LIMIT))  # each slot of the second given once


def _spooled_ids(data_dir: Path) -> list[str]:
    """The usage on local disk, not on the ledger: in the spool, or in a journal."""
    folder = data_dir / "spool"
    ids: list[str] = []
    for path in folder.glob("*.sqlite"):
        with sqlite3.connect(path) as conn:
            ids += [r[0] for r in conn.execute("SELECT event_id FROM pending")]
    for spool in {folder / p.name.split(".journal-")[0] for p in folder.glob("*.journal-*")}:
        ids += journal_ids(spool)
    return ids


async def test_a_workers_usage_survives_its_sigkill_right_after_the_answer_and_counts_once(
    workers: ServerProcess, db: asyncpg.Connection, database_url: str
) -> None:
    _, key = await create_key(db, "gateway", "ingest")
    pids, _ = _both_pids(workers)
    # A re-pricing holds the lock: no usage can reach the ledger, so what the call leaves
    # behind when its worker dies is what it made durable before answering.
    repricing = await asyncpg.connect(database_url)
    transaction = repricing.transaction()
    await transaction.start()
    await repricing.execute(LOCK_REPRICING)
    try:
        [event_id] = await _proxy(workers, key, 1)
        for pid in pids:  # whichever answered: right after the answer's last byte
            os.kill(pid, signal.SIGKILL)
        data_dir = Path(workers.env["LUC_DATA_DIR"])
        assert _spooled_ids(data_dir) == [event_id]
        assert await ledger(db) == []
    finally:
        await transaction.rollback()
        await repricing.close()

    # uvicorn's supervisor replaces the workers; one of them replays the spool.
    def replaced() -> bool:
        try:
            return _pid(workers.base_url) not in pids
        except httpx.HTTPError:
            return False

    wait_for(replaced, 60, "a new worker to serve")

    async def recorded_once() -> bool:
        return len(await ledger(db)) == 1 and not _spooled_ids(data_dir)

    await wait_until(recorded_once, 60, "the spooled usage on the ledger, the spool empty")
    [entry] = await ledger(db)
    assert entry["event_id"] == event_id
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 1
    await assert_rollups_equal_ledger(db)
