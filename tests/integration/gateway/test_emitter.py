"""The emitter of a gateway running outside LUC: batches, retries, and a durable spool
that loses nothing while LUC is down and sends nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.auth.keys import create_key
from service.catalog.service import bundled_catalog
from service.client.emitter import Emitter
from service.gateway.chain import Chain
from service.gateway.metering import Gateway
from service.gateway.ports import fixed_catalog
from service.gateway.stub import StubProvider
from tests.support.events import usage_event_in
from tests.support.ports import free_port

pytestmark = pytest.mark.asyncio

HELLO = [{"role": "user", "content": "Hello there"}]


_event = partial(
    usage_event_in,
    occurred_at="2026-01-05T12:00:00Z",
    job_id="job-em",
    agent="ORACLE",
    input_tokens=10,
    output_tokens=5,
)


def _emitter(url: str, key: str, spool: Path) -> Emitter:
    return Emitter(
        url, key, spool, batch_size=50, backoff_base_seconds=0.05, backoff_max_seconds=0.5
    )


@pytest.mark.slow
async def test_luc_killed_while_the_gateway_sends_1000_events_loses_none_and_doubles_none(
    server_factory: Callable[..., Any], db: asyncpg.Connection, tmp_path: Path
) -> None:
    _, key = await create_key(db, "aims-gateway", "ingest")
    server = server_factory(LUC_AUTH="on")
    ids: list[str] = []
    async with _emitter(server.base_url, key, tmp_path / "spool.db") as emitter:
        gateway = Gateway(Chain([StubProvider()]), emitter, fixed_catalog(bundled_catalog()))
        for i in range(1000):
            if i == 300:
                server.kill()  # SIGKILL: batches in flight lose their answers
            if i == 700:
                assert await emitter.pending() >= 400  # spooled while LUC was down
                server.start()
            result = await gateway.chat(messages=HELLO, job_id=f"job-{i % 7}", agent="ACHEEVY")
            ids.append(result.generation_id)
        assert await emitter.flush(timeout_seconds=60)
        assert await emitter.kept_aside() == []

    rows = await db.fetch("SELECT event_id, kind FROM ledger_entries")
    assert len(rows) == 1000
    assert {r["event_id"] for r in rows} == set(ids)
    assert {r["kind"] for r in rows} == {"charge"}
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 1000


async def test_the_spool_outlives_the_gateway_process_and_is_sent_by_the_next_one(
    server_factory: Callable[..., Any], db: asyncpg.Connection, tmp_path: Path
) -> None:
    _, key = await create_key(db, "aims-gateway", "ingest")
    spool = tmp_path / "spool.db"
    nowhere = f"http://127.0.0.1:{free_port()}"  # LUC is not there
    first = _emitter(nowhere, key, spool)
    await first.start()
    for i in range(20):
        await first.emit(_event(f"evt-{i}"))
    await first.aclose(flush_seconds=0.2)

    server = server_factory(LUC_AUTH="on")
    async with _emitter(server.base_url, key, spool) as second:
        assert await second.flush(timeout_seconds=30)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 20


async def test_a_conflicting_event_is_kept_aside_and_not_retried(
    server_factory: Callable[..., Any], db: asyncpg.Connection, tmp_path: Path
) -> None:
    _, key = await create_key(db, "aims-gateway", "ingest")
    server = server_factory(LUC_AUTH="on")
    async with _emitter(server.base_url, key, tmp_path / "spool.db") as emitter:
        await emitter.emit(_event("evt-x", output_tokens=5))
        assert await emitter.flush(timeout_seconds=10)
        await emitter.emit(_event("evt-x", output_tokens=6))  # same id, other content
        await emitter.emit(_event("evt-y"))
        assert await emitter.flush(timeout_seconds=10)
        [aside] = await emitter.kept_aside()
        assert (aside.event_id, aside.status) == ("evt-x", "conflict")
        assert aside.reason is not None and "output_tokens" in aside.reason
        assert await emitter.pending() == 0
    rows = await db.fetch("SELECT event_id, output_tokens FROM ledger_entries ORDER BY id")
    assert [(r["event_id"], r["output_tokens"]) for r in rows] == [("evt-x", 5), ("evt-y", 5)]
