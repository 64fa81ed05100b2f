"""Single events sent concurrently to a real server: grouped into shared commits, each
answered after its own commit, totals exact."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.events import wire_event

pytestmark = pytest.mark.slow

CLIENTS = 32
PER_CLIENT = 15


@pytest.mark.parametrize("writers", [1, 2])
async def test_concurrent_single_events_are_grouped_and_each_counted_once(
    server_factory: Any, db: asyncpg.Connection, writers: int
) -> None:
    # No rate limit: its counts are PostgreSQL transactions too, and this test counts
    # the ingest ones.
    server = server_factory(LUC_INGEST_WRITERS=str(writers), LUC_RATE_LIMIT_PER_SECOND="0")
    commits_before = await db.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )

    async def send(client: int, http: httpx.AsyncClient) -> list[tuple[int, str]]:
        answers = []
        for n in range(PER_CLIENT):
            body = wire_event(f"single-{client}-{n}", job_id=f"job-{client % 4}")
            r = await http.post("/v1/events", json=body)
            answers.append((r.status_code, r.json()["status"]))
            # every fifth event is sent again at once: a duplicate, answered 200
            if n % 5 == 0:
                again = await http.post("/v1/events", json=body)
                answers.append((again.status_code, again.json()["status"]))
        return answers

    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        results = await asyncio.gather(*(send(c, http) for c in range(CLIENTS)))

    flat = [a for answers in results for a in answers]
    accepted = [a for a in flat if a == (201, "accepted")]
    duplicates = [a for a in flat if a == (200, "duplicate")]
    assert len(accepted) == CLIENTS * PER_CLIENT
    assert len(duplicates) == CLIENTS * 3
    assert len(flat) == len(accepted) + len(duplicates)

    # 480 events at 1000 × $0.10/M + 500 × $0.40/M = $0.0003 each → $0.144
    total = await db.fetchval("SELECT sum(cost_usd) FROM rollup_jobs")
    assert total == Decimal("0.0003") * CLIENTS * PER_CLIENT
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == CLIENTS * PER_CLIENT
    commits = (
        await db.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        - commits_before
    )
    # One commit per event would be 576 ingest transactions (plus reads); grouping needs
    # far fewer. The bound is loose: the machine decides how many wait together. With one
    # writer every request that arrives while a commit is in flight joins the next group;
    # two writers commit side by side, so they group less and the bound does not hold.
    if writers == 1:
        assert commits < len(flat), commits
