"""A proxied call is paid for from the provider's 2xx on (SPEC §8: its usage is never
lost, whatever fails). When LUC's process is killed (SIGKILL: an OOM kill, a crash) in
the middle of the answer, before the call's usage is known, the next process books the
call from the journal, under the generation id the call's own usage would have had, with
``status`` ``error`` and ``attributes.outcome`` ``process_ended``; once, however often it
restarts. It books the provider's own record of the call (OpenRouter's ``/generation``)
when it finds one, else the prompt, estimated. Before, nothing was written until the
answer ended, and such a call was never billed.

``luc serve`` is a real process, killed and started again on the same data folder; the
upstream is the fake OpenRouter on loopback, which keeps each generation it served and
answers ``/generation`` with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.recording.journal import read_records
from tests.support.fake_openrouter import BrokenAnswer, FakeOpenRouter, Reply, failure
from tests.support.ledger_truth import STORED_EVENTS, assert_rollups_equal_ledger, ledger
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
SONNET = "anthropic/claude-sonnet-4.5"  # 3 in, 15 out per 1M
# The estimate: "Capital of France?", 18 characters, 4 a token → 5 input tokens; no output
# is known when the process dies: 5 × 0.10 / 1M = 0.0000005.
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Capital of France?"}]}
HEADERS = {"X-LUC-Job": "job-killed", "X-LUC-Agent": "ORACLE"}


@pytest.fixture
def server(
    server_factory: Callable[..., ServerProcess], fake_openrouter: FakeOpenRouter
) -> ServerProcess:
    return server_factory(
        LUC_WORKERS="1",
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
    )


def _holds(server: ServerProcess) -> list[str]:
    """The event ids of the calls the server's journal holds (sent whole, or answered 2xx),
    as the next process would find them."""
    spool = Path(server.env["LUC_DATA_DIR"]) / "spool"
    files = [p.read_bytes() for p in sorted(spool.glob("*.journal-*"))]
    return [r.event_id for r in read_records(files) if r.held]


async def _booked_once_after_restarts(
    server: ServerProcess,
    db: asyncpg.Connection,
    generation_id: str,
    *,
    tokens: tuple[int, int],
    source: str,
    cost: Decimal,
) -> None:
    """Started again, the server books the killed call once: ``tokens`` (input, output)
    from ``source``, ``cost`` on the ledger."""
    server.start()  # the same data folder: the dead process's journal is there

    async def booked() -> bool:
        return len(await ledger(db)) == 1

    await wait_until(booked, 60, "the killed call on the ledger")
    [event] = await db.fetch(
        f"""SELECT event_id, status, attributes, input_tokens, output_tokens
            FROM {STORED_EVENTS}"""
    )
    assert (event["event_id"], event["status"]) == (generation_id, "error")
    assert (event["input_tokens"], event["output_tokens"]) == tokens
    attributes = event["attributes"]
    assert attributes["outcome"] == "process_ended"
    assert attributes["usage_source"] == source
    [entry] = await ledger(db)
    assert (entry["job_id"], entry["cost_usd"]) == ("job-killed", cost)
    # A call booked on its prompt alone is counted, for finance to compare with the bill.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        scraped = (await http.get("/metrics")).text
    [estimated] = [
        s.value
        for f in text_string_to_metric_families(scraped)
        for s in f.samples
        if s.name == "luc_gateway_calls_estimated_total"
    ]
    assert estimated == (1.0 if source == "estimate" else 0.0)

    # Started again: nothing more is booked for it.
    server.stop()
    server.start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", json=BODY, headers=HEADERS)
    assert answer.status_code == 200, answer.text

    async def both() -> bool:
        return len(await ledger(db)) == 2

    await wait_until(both, 60, "the new call on the ledger")
    ids = [e["event_id"] for e in await ledger(db)]
    assert ids.count(generation_id) == 1
    await assert_rollups_equal_ledger(db)


async def test_a_stream_whose_process_is_killed_mid_answer_is_booked_from_the_providers_record(
    server: ServerProcess, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # Sixty characters three at a time, a fifth of a second apart: four seconds of answer,
    # from another model than the one asked for (an OpenRouter fallback).
    fake_openrouter.push(Reply(text="Paris " * 10, chunk_chars=3, delay=0.2, model=SONNET))
    # Its record is written late: found by the fifth look-up, 15 s after the restart (a
    # caller waiting on a call looks four times, over 7.5 s).
    fake_openrouter.generation_misses = 4
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json={**BODY, "stream": True}, headers=HEADERS
        ) as answer,
    ):
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line.startswith("data: {"):
                generation_id = msgspec.json.decode(line.removeprefix("data: "))["id"]
                break
        await wait_until(lambda: _holds(server) == [generation_id], 10, "the hold at 2xx")
        server.kill()  # mid-answer: the usage chunk has not come
    assert len(fake_openrouter.chat_calls()) == 1  # one paid generation
    assert await ledger(db) == []
    # The fake's record of it (Reply's usage): 12 prompt and 3 completion tokens, cost
    # 0.0000036 as OpenRouter charged, by Sonnet; on the ledger at Sonnet's catalog prices,
    # 12 × 3 / 1M + 3 × 15 / 1M = 0.000036 + 0.000045 (at Flash's it was 0.0000024).
    await _booked_once_after_restarts(
        server, db, generation_id, tokens=(12, 3), source="generation", cost=Decimal("0.000081")
    )
    [entry] = [e for e in await ledger(db) if e["event_id"] == generation_id]
    assert entry["model"] == SONNET
    [reported] = await db.fetch(
        f"SELECT provider_cost_usd, attributes FROM {STORED_EVENTS} WHERE event_id = $1",
        generation_id,
    )
    assert reported["provider_cost_usd"] == Decimal("0.0000036")
    assert "provider's record" in reported["attributes"]["error"]
    assert reported["attributes"]["upstream_model"] == SONNET


async def test_a_plain_call_whose_process_is_killed_mid_answer_is_booked_on_its_prompt(
    server: ServerProcess, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # HTTP 200, part of the body, then nothing: the answer is being read when LUC dies.
    fake_openrouter.push(BrokenAnswer(id="gen-1767225600-KilledMidAnswer00001", stall=True))
    fake_openrouter.generation_misses = 1_000_000  # its record is never found
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        call = asyncio.create_task(http.post("/v1/chat/completions", json=BODY, headers=HEADERS))

        async def answering() -> bool:
            return len(fake_openrouter.chat_calls()) == 1

        await wait_until(answering, 30, "the provider to answer")
        # Held under the generation id at the 2xx (in place of the hold made at sending).
        await wait_until(
            lambda: _holds(server) == ["gen-1767225600-KilledMidAnswer00001"],
            30,
            "LUC to hold the answered call",
        )
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await call
    assert await ledger(db) == []
    await _booked_once_after_restarts(
        server,
        db,
        "gen-1767225600-KilledMidAnswer00001",
        tokens=(5, 0),
        source="estimate",
        cost=Decimal("0.0000005"),
    )


async def test_a_call_whose_process_is_killed_while_the_provider_thinks_is_booked_on_its_prompt(
    server: ServerProcess, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    """The request went out whole; the provider runs it (and will bill it) but has not
    answered when LUC dies: no generation id is known yet, so the call is booked under the
    id LUC fixed when it sent the request, on its prompt, as a timeout would be. Before,
    nothing was noted until the provider's 2xx, and such a call was never billed."""
    fake_openrouter.push(Reply(think=60))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=90) as http:
        call = asyncio.create_task(http.post("/v1/chat/completions", json=BODY, headers=HEADERS))

        async def sent() -> bool:
            return len(fake_openrouter.chat_calls()) == 1

        await wait_until(sent, 30, "the request to reach the provider")
        await wait_until(lambda: bool(_holds(server)), 30, "LUC to hold the call sent whole")
        [event_id] = _holds(server)
        assert event_id.startswith("luc-")
        server.kill()
        with pytest.raises(httpx.HTTPError):
            await call
    assert await ledger(db) == []
    await _booked_once_after_restarts(
        server, db, event_id, tokens=(5, 0), source="estimate", cost=Decimal("0.0000005")
    )


async def test_a_call_refused_by_its_provider_leaves_nothing_held(
    server: ServerProcess, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    """A request sent whole that the provider refuses (no 2xx: nothing generated) drops
    the hold made when it was sent: a process dying afterwards leaves nothing to book."""
    fake_openrouter.push(failure(400))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        refused = await http.post("/v1/chat/completions", json=BODY, headers=HEADERS)
        assert refused.status_code == 400, refused.text
        answered = await http.post("/v1/chat/completions", json=BODY, headers=HEADERS)
        assert answered.status_code == 200, answered.text

    async def booked() -> bool:
        return len(await ledger(db)) == 1

    await wait_until(booked, 30, "the answered call on the ledger")
    # The journal as a process started now would find it: nothing held, nothing to book.
    assert _holds(server) == []
    [entry] = await ledger(db)
    assert entry["event_id"] == answered.json()["id"]


async def test_a_clean_stop_lets_a_proxied_call_finish_and_bills_it_once(
    server: ServerProcess, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    """SIGTERM while the provider thinks for 12 s: the call runs to its answer (a clean
    stop waits as long as an upstream may take), its usage is recorded, once. Before, the
    server cut it at 10 s with its bare 500 (no OpenAI shape, no x-should-retry: false),
    which an OpenAI SDK retries: a second paid call for one already billed."""
    fake_openrouter.push(Reply(text="Paris.", think=12))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        call = asyncio.create_task(http.post("/v1/chat/completions", json=BODY, headers=HEADERS))

        async def sent() -> bool:
            return len(fake_openrouter.chat_calls()) == 1

        await wait_until(sent, 30, "the request to reach the provider")
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        answer = await call
        await stopping
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Paris."
    [entry] = await ledger(db)  # recorded before the process ended
    assert entry["event_id"] == answer.json()["id"]
    # The fake's usage for it: 12 in, 3 out at Flash's prices = 0.0000024.
    assert (entry["input_tokens"], entry["output_tokens"], entry["cost_usd"]) == (
        12,
        3,
        Decimal("0.0000024"),
    )
