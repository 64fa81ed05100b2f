"""A server killed (SIGKILL) in the middle of a stream loses nothing and counts nothing twice.

The gateway's contract is at-least-once: whatever it did not see acknowledged, and here even
what it did, it sends again after the restart. The totals must come out exact anyway.
"""

from __future__ import annotations

import asyncio
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

BATCHES = 30
BATCH_SIZE = 200
KILL_AFTER = 8  # acknowledged batches before the kill: well inside the stream


def _batches() -> list[list[dict[str, Any]]]:
    events = make_events(
        "dur",
        BATCHES * BATCH_SIZE,
        jobs=[f"job-{n}" for n in range(6)],
        seed=20261124,
        start=datetime(2026, 11, 20, 21, 0, tzinfo=UTC),
    )
    return [events[i : i + BATCH_SIZE] for i in range(0, len(events), BATCH_SIZE)]


async def _stream(
    base_url: str, batches: list[list[dict[str, Any]]], acked: list[Any], kill_now: asyncio.Event
) -> None:
    """Send the batches one after another until the server goes away."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for batch in batches:
            response = await http.post("/v1/events/batch", json={"events": batch})
            assert response.status_code == 200, response.text
            acked.append(response.json())
            if len(acked) == KILL_AFTER:
                kill_now.set()  # the next batch is on its way when the kill comes


async def test_sigkill_mid_stream_then_resending_everything_gives_exact_totals(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    batches = _batches()
    server = server_factory()

    acked: list[Any] = []
    kill_now = asyncio.Event()
    sender = asyncio.create_task(_stream(server.base_url, batches, acked, kill_now))
    waiter = asyncio.create_task(kill_now.wait())
    await asyncio.wait({sender, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert kill_now.is_set(), sender.exception() if sender.done() else "stream stalled"
    server.kill()
    with pytest.raises(httpx.TransportError):
        await sender  # the request in flight dies with the process
    assert KILL_AFTER <= len(acked) < BATCHES, "the kill must land inside the stream"
    for answer in acked:
        assert answer["accepted"] == BATCH_SIZE

    await asyncio.to_thread(server.start)  # same port, same database
    answers = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for batch in batches:
            response = await http.post("/v1/events/batch", json={"events": batch})
            assert response.status_code == 200, response.text
            answers.append(response.json())

    for index, answer in enumerate(answers):
        assert answer["conflicts"] == answer["rejected"] == 0
        assert answer["accepted"] + answer["duplicates"] == BATCH_SIZE
        if index < len(acked):
            assert answer["duplicates"] == BATCH_SIZE, "an acknowledged batch was durable"
        else:
            # A batch commits whole or not at all, even the one the kill interrupted.
            assert answer["accepted"] in (0, BATCH_SIZE)
    # Only the batch in flight at the kill may have committed without an answer.
    after_kill = [a["accepted"] for a in answers[len(acked) :]]
    assert after_kill[1:] == [BATCH_SIZE] * (len(after_kill) - 1)

    every_event = [event for batch in batches for event in batch]
    await asyncio.to_thread(assert_jobs_match, server.base_url, every_event)
    await assert_ledger_holds_each_event_once(db, every_event)
