"""Calls that do not end on their own: a provider whose stream goes on for ever (keep-alives
only, or a trickle of tokens), and LUC shutting down while calls still run. A call the
provider answered (2xx) is paid for: either way it leaves one usage event, status
``error``, with the provider's usage or LUC's estimate, and that event settles its budget
reservation; the client of a stream is told with an SSE error event.

The upstream is a scripted HTTP server on loopback (OpenRouter's protocol, bytes as
given), the ledger is the test's PostgreSQL. Estimates by hand: the prompt "Tell me a
story" is 15 characters, so 4 tokens; output is one token per 4 characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db import connect
from service.errors import AnswerDeadlineError, UpstreamUnavailableError
from service.gateway.metering import SHUTDOWN_ADVICE, Gateway
from service.gateway.models import CallContext, StreamHandle
from service.gateway.openrouter import OpenRouterProvider
from service.locks import LOCK_REPRICING
from service.settings import load_settings
from tests.support.budgets import hard_budget
from tests.support.fake_openrouter import FAST_RETRY, openrouter_at
from tests.support.ledger_truth import STORED_EVENT, assert_rollups_equal_ledger, ledger
from tests.support.scripted_http import (
    Forever,
    Scripted,
    ok,
    scripted_server,
    scripted_server_thread,
)
from tests.support.settings import settings_for
from tests.support.waiting import proxied_usage_recorded, wait_until

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
STORY = [{"role": "user", "content": "Tell me a story"}]
BODY = {"model": FLASH, "messages": STORY, "max_tokens": 1000}
ATTRIBUTION = {"X-LUC-Job": "job-u", "X-LUC-Agent": "ORACLE"}
# The reservation of a call: 4·0.10 + 1000·0.40 = 400.4 per 1M
ESTIMATE = Decimal("0.0004004")

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-generation-id: %s\r\n"
    b"connection: close\r\n\r\n"
)
KEEP_ALIVE = b": OPENROUTER PROCESSING\n\n"
GENERATION = (
    b'{"data":{"id":"gen-keepalive-1","native_tokens_prompt":100,'
    b'"native_tokens_completion":0,"total_cost":0.00001}}'
)


def _chunk(gen: bytes, content: str) -> bytes:
    delta = msgspec.json.encode({"content": content})
    return (
        b'data: {"id":"' + gen + b'","model":"google/gemini-3.0-flash","choices":[{"index":0,'
        b'"delta":' + delta + b',"finish_reason":null}]}\n\n'
    )


RESERVATIONS = """
SELECT amount_usd,
       CASE WHEN settled_at IS NOT NULL THEN 'settled'  -- by the call's usage event
            WHEN expires_at > now() THEN 'holding'
            ELSE 'released' END AS state
FROM budget_reservations WHERE job_id = $1 ORDER BY created_at
"""


async def _reservations(db: asyncpg.Connection, job: str) -> list[tuple[Decimal, str]]:
    return [(r["amount_usd"], r["state"]) for r in await db.fetch(RESERVATIONS, job)]


async def _first_delta(handle: StreamHandle) -> str:
    async for event in handle.events():
        if event.delta:
            return event.delta
    raise AssertionError("the stream ended before any text")


async def _stored(db: asyncpg.Connection, event_id: str) -> tuple[str, dict[str, Any]]:
    row = await db.fetchrow(STORED_EVENT, event_id)
    assert row is not None
    status, attributes = row
    return status, attributes


# The stream's deadline --------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    async with scripted_server() as server:
        yield server


@pytest.fixture
def threaded() -> Iterator[Scripted]:
    """The upstream of an app under AsyncTestClient (which blocks the test's loop)."""
    with scripted_server_thread() as server:
        yield server


@pytest.fixture
async def deadline_proxy(
    database_url: str, threaded: Scripted
) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_for(
        database_url,
        OPENROUTER_API_KEY="sk-or-v1-k",
        LUC_OPENROUTER_BASE_URL=threaded.url + "/api/v1",
        LUC_GATEWAY_CHAIN="openrouter",
        LUC_GATEWAY_STREAM_DEADLINE_SECONDS="0.5",
        LUC_GATEWAY_TIMEOUT_SECONDS="10",
        LUC_GATEWAY_MAX_RETRIES="0",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_a_stream_of_keep_alives_only_is_cut_at_its_deadline_and_billed_as_recorded(
    deadline_proxy: AsyncTestClient[Any], threaded: Scripted, db: asyncpg.Connection
) -> None:
    await hard_budget(db, "job", "job-u", "1.00")
    # Answered 200, then nothing but ": OPENROUTER PROCESSING" (20 s is for ever here: the
    # deadline is 0.5 s; the read timeout, 10 s, is never hit). Then LUC asks for the
    # generation's record, as after any stream that brought no usage.
    threaded.answer(SSE_HEAD % b"gen-keepalive-1", Forever(KEEP_ALIVE, until=20))
    threaded.answer(ok(GENERATION, b"content-type: application/json"))

    response = await deadline_proxy.post(
        "/v1/chat/completions", json={**BODY, "stream": True}, headers=ATTRIBUTION
    )

    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e]
    assert events[0] == ": OPENROUTER PROCESSING"
    assert "data: [DONE]" not in events
    error = msgspec.json.decode(events[-1].removeprefix("data: "))["error"]
    # Cut by LUC's deadline: a gateway timeout, as OpenRouter codes its errors.
    assert error["code"] == 504
    assert "past LUC's deadline of 0.5 s" in error["message"]
    assert AnswerDeadlineError.advice in error["message"]
    assert threaded.seen[1].head.startswith(b"GET /api/v1/generation?id=gen-keepalive-1 ")
    await proxied_usage_recorded(deadline_proxy.app)
    [entry] = await ledger(db)
    assert entry["event_id"] == "gen-keepalive-1"
    # The record's counts: 100 prompt tokens, none out; 100·0.10 per 1M
    assert (entry["input_tokens"], entry["output_tokens"]) == (100, 0)
    assert (entry["cost_usd"], entry["provider_cost_usd"]) == (
        Decimal("0.00001"),
        Decimal("0.00001"),
    )
    status, attributes = await _stored(db, "gen-keepalive-1")
    assert (status, attributes["usage_source"]) == ("error", "generation")
    assert "deadline" in attributes["error"]
    # The event named the call's reservation: settled, not held until it expires.
    assert await _reservations(db, "job-u") == [(ESTIMATE, "settled")]


async def test_a_stream_that_trickles_for_ever_is_cut_at_its_deadline_and_billed_for_its_text(
    make_gateway: Callable[..., Gateway], http: Any, upstream: Scripted, db: asyncpg.Connection
) -> None:
    await hard_budget(db, "job", "job-u", "1.00")
    upstream.answer(
        SSE_HEAD % b"gen-trickle-1", _chunk(b"gen-trickle-1", "Once"), Forever(_chunk(b"", "."))
    )
    gateway = make_gateway(openrouter_at(http, upstream.url))
    gateway.stream_deadline_seconds = 0.5

    pieces: list[str] = []
    with pytest.raises(AnswerDeadlineError) as raised:
        async with asyncio.timeout(30):
            async for piece in gateway.stream(
                model=FLASH, messages=STORY, job_id="job-u", agent="ORACLE", max_tokens=1000
            ):
                assert isinstance(piece, str)  # no ChatResult: the stream failed
                pieces.append(piece)

    assert "past LUC's deadline of 0.5 s" in raised.value.message
    assert raised.value.advice == AnswerDeadlineError.advice
    text = "".join(pieces)
    assert text.startswith("Once.") and set(text[4:]) == {"."}
    [entry] = await ledger(db)
    assert entry["event_id"] == "gen-trickle-1"
    # Every character the caller got is estimated as output: one token per 4 (rounded up).
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, -(-len(text) // 4))
    status, attributes = await _stored(db, "gen-trickle-1")
    assert (status, attributes["usage_source"]) == ("error", "estimate")
    assert await _reservations(db, "job-u") == [(ESTIMATE, "settled")]


async def test_an_answer_that_never_arrives_whole_is_cut_at_the_deadline_and_billed(
    deadline_proxy: AsyncTestClient[Any], threaded: Scripted, db: asyncpg.Connection
) -> None:
    """Not streamed: OpenRouter answers 200 at once and sends blank lines while the model
    works; here the answer never comes. Each read gets its blank line well within the
    timeout (10 s), so only the deadline (0.5 s) ends the call."""
    await hard_budget(db, "job", "job-u", "1.00")
    threaded.answer(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"x-generation-id: gen-slow-1\r\nconnection: close\r\n\r\n",
        Forever(b"\n", until=20),
    )
    threaded.answer(
        ok(GENERATION.replace(b"gen-keepalive-1", b"gen-slow-1"), b"content-type: application/json")
    )

    async with asyncio.timeout(15):
        response = await deadline_proxy.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)

    assert response.status_code == 504
    # Paid for: an OpenAI SDK must not buy it again on its own (it retries any 5xx).
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["code"] == "answer_deadline"
    assert "was still arriving after LUC's deadline of 0.5 s" in error["message"]
    assert AnswerDeadlineError.advice in error["message"]
    # No other provider would be asked (the chain has one); the generation's record is.
    assert threaded.seen[1].head.startswith(b"GET /api/v1/generation?id=gen-slow-1 ")
    await proxied_usage_recorded(deadline_proxy.app)
    [entry] = await ledger(db)
    assert entry["event_id"] == "gen-slow-1"
    # The record's counts: 100 prompt tokens, none out; 100·0.10 per 1M
    assert (entry["input_tokens"], entry["output_tokens"]) == (100, 0)
    assert entry["cost_usd"] == Decimal("0.00001")
    status, attributes = await _stored(db, "gen-slow-1")
    assert (status, attributes["usage_source"]) == ("error", "generation")
    # A failed call frees its hold as it fails (as every billed failure the chain raises
    # does); its spend is the event above.
    assert await _reservations(db, "job-u") == [(ESTIMATE, "released")]


# Shutting down with calls running ---------------------------------------------------------


async def test_a_stream_cancelled_at_shutdown_is_metered_and_settles_its_reservation(
    make_gateway: Callable[..., Gateway], http: Any, upstream: Scripted, db: asyncpg.Connection
) -> None:
    await hard_budget(db, "job", "job-u", "1.00")
    upstream.answer(
        SSE_HEAD % b"gen-shutdown-1",
        _chunk(b"gen-shutdown-1", "Once upon"),
        Forever(KEEP_ALIVE),
    )
    gateway = make_gateway(openrouter_at(http, upstream.url))
    request = gateway.request(messages=STORY, model=FLASH, max_tokens=1000)
    handle = await gateway.open_stream(request, CallContext("job-u", "ORACLE"))
    assert await _first_delta(handle) == "Once upon"

    await gateway.aclose(grace_seconds=0.1)

    with pytest.raises(UpstreamUnavailableError) as raised:
        await handle.result()
    assert "LUC shut down before the stream ended" in raised.value.message
    assert raised.value.advice == SHUTDOWN_ADVICE
    [entry] = await ledger(db)
    # "Once upon" (9 characters) → 3 tokens out; 4·0.10 + 3·0.40 = 1.6 per 1M
    assert (entry["event_id"], entry["input_tokens"], entry["output_tokens"]) == (
        "gen-shutdown-1",
        4,
        3,
    )
    assert entry["cost_usd"] == Decimal("0.0000016")
    status, attributes = await _stored(db, "gen-shutdown-1")
    assert (status, attributes["usage_source"]) == ("error", "estimate")
    assert await _reservations(db, "job-u") == [(ESTIMATE, "settled")]


class _Watched(OpenRouterProvider):
    """OpenRouter, noting when it has an answer's 2xx and reads the body."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading = asyncio.Event()

    async def _read_answer(self, response: httpx.Response) -> None:
        self.reading.set()
        await super()._read_answer(response)


async def test_an_answer_cancelled_at_shutdown_after_its_2xx_is_metered_on_its_prompt(
    make_gateway: Callable[..., Gateway], http: Any, upstream: Scripted, db: asyncpg.Connection
) -> None:
    await hard_budget(db, "job", "job-u", "1.00")
    # OpenRouter's non-stream answer: 200 at once, blank lines while the model works, and
    # then (here) never the answer.
    never = asyncio.Event()
    upstream.answer(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"x-generation-id: gen-shutdown-2\r\ncontent-length: 1000\r\n\r\n\n\n",
        never,
    )
    provider = _Watched(
        http, upstream.url + "/api/v1", "sk-or-v1-k", FAST_RETRY, generation_delays=()
    )
    gateway = make_gateway(provider)
    call = asyncio.create_task(
        gateway.chat(messages=STORY, model=FLASH, job_id="job-u", agent="ORACLE", max_tokens=1000)
    )
    await asyncio.wait_for(provider.reading.wait(), 30)

    await gateway.aclose(grace_seconds=0.1)

    with pytest.raises(asyncio.CancelledError):
        await call
    never.set()  # the scripted server's turn ends
    [entry] = await ledger(db)
    assert (entry["event_id"], entry["input_tokens"], entry["output_tokens"]) == (
        "gen-shutdown-2",
        4,
        0,
    )
    status, attributes = await _stored(db, "gen-shutdown-2")
    assert status == "error"
    assert attributes["error"] == "LUC shut down before the answer was read"
    assert await _reservations(db, "job-u") == [(ESTIMATE, "settled")]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_a_call_cancelled_at_shutdown_after_its_request_went_out_is_metered_on_its_prompt(
    make_gateway: Callable[..., Gateway],
    http: Any,
    upstream: Scripted,
    db: asyncpg.Connection,
    streamed: bool,
) -> None:
    # Still waiting for the provider's first headers when LUC shuts down. A stream was
    # released and nothing metered, though the provider may run it as it would a plain call.
    await hard_budget(db, "job", "job-u", "1.00")
    never = asyncio.Event()
    upstream.answer(never)  # the request arrives; no status ever comes
    gateway = make_gateway(openrouter_at(http, upstream.url))
    request = gateway.request(messages=STORY, model=FLASH, max_tokens=1000)
    context = CallContext("job-u", "ORACLE")
    call = asyncio.create_task(
        gateway.open_stream(request, context) if streamed else gateway.complete(request, context)
    )
    await asyncio.wait_for(upstream.arrived.wait(), 30)

    await gateway.aclose(grace_seconds=0.1)

    with pytest.raises(asyncio.CancelledError):
        await call
    never.set()
    # Sent whole: the provider may be running it (and will bill it), answer or not.
    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 0)
    status, attributes = await _stored(db, entry["event_id"])
    assert (status, attributes["usage_source"], attributes["streamed"]) == (
        "error",
        "estimate",
        streamed,
    )
    assert attributes["error"] == "LUC shut down before the answer was read"
    assert await _reservations(db, "job-u") == [(ESTIMATE, "settled")]


class _Held(OpenRouterProvider):
    """OpenRouter whose request is held before it is sent (its headers never ready)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holding = asyncio.Event()

    async def headers(self) -> dict[str, str]:
        self.holding.set()
        await asyncio.Event().wait()
        raise AssertionError("never")


async def test_a_call_cancelled_at_shutdown_before_its_request_went_out_releases_its_reservation(
    make_gateway: Callable[..., Gateway], http: Any, upstream: Scripted, db: asyncpg.Connection
) -> None:
    await hard_budget(db, "job", "job-u", "1.00")
    provider = _Held(http, upstream.url + "/api/v1", "sk-or-v1-k", FAST_RETRY, generation_delays=())
    gateway = make_gateway(provider)
    call = asyncio.create_task(
        gateway.chat(messages=STORY, model=FLASH, job_id="job-u", agent="ORACLE", max_tokens=1000)
    )
    await asyncio.wait_for(provider.holding.wait(), 30)

    await gateway.aclose(grace_seconds=0.1)

    with pytest.raises(asyncio.CancelledError):
        await call
    # Never sent: no sign the provider spent anything, and the hold is freed now.
    assert upstream.seen == []
    assert await ledger(db) == []
    assert await _reservations(db, "job-u") == [(ESTIMATE, "released")]


@pytest.mark.parametrize("ledger_busy", [False, True], ids=["recorded_at_close", "replayed"])
async def test_a_stream_luc_cancels_at_shutdown_is_on_the_ledger_once_after_a_restart(
    ledger_busy: bool,
    database_url: str,
    threaded: Scripted,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    await hard_budget(db, "job", "job-u", "1.00")
    threaded.answer(
        SSE_HEAD % b"gen-restart-1", _chunk(b"gen-restart-1", "Once upon"), Forever(KEEP_ALIVE)
    )
    env = {
        "LUC_DATABASE_URL": database_url,
        "LUC_AUTH": "off",
        "LUC_DATA_DIR": str(tmp_path / "data"),
        "OPENROUTER_API_KEY": "sk-or-v1-k",
        "LUC_OPENROUTER_BASE_URL": threaded.url + "/api/v1",
        "LUC_GATEWAY_CHAIN": "openrouter",
        # The grace period at shutdown (keep-alives come far faster than this).
        "LUC_GATEWAY_TIMEOUT_SECONDS": "0.5",
        "LUC_GATEWAY_RECORD_TIMEOUT_SECONDS": "0.3",
    }
    first: AsyncTestClient[Any] = AsyncTestClient(app=create_app(load_settings(env)))
    await first.__aenter__()
    gateway = first.app.state.luc.gateway

    async def opened() -> tuple[StreamHandle, str]:  # on the app's loop, as a request is
        request = gateway.request(messages=STORY, model=FLASH, max_tokens=1000)
        handle = await gateway.open_stream(request, CallContext("job-u", "ORACLE"))
        return handle, await _first_delta(handle)

    handle, delta = first.blocking_portal.call(opened)
    assert delta == "Once upon"

    repricing = await connect(database_url)
    transaction = repricing.transaction()
    if ledger_busy:
        # The ledger cannot take the usage while LUC shuts down: it stays in the journal.
        await transaction.start()
        await repricing.execute(LOCK_REPRICING)
    try:
        await first.__aexit__(None, None, None)
        assert handle.error is not None
        assert handle.error.advice == SHUTDOWN_ADVICE
        if ledger_busy:
            assert await ledger(db) == []
            assert await _reservations(db, "job-u") == [(ESTIMATE, "holding")]
        else:  # the process that cut the call recorded it as it closed
            assert [e["event_id"] for e in await ledger(db)] == ["gen-restart-1"]
    finally:
        if ledger_busy:
            await transaction.rollback()
        await repricing.close()

    # The next process replays what the journal kept; what was recorded is not again.
    async with AsyncTestClient(app=create_app(load_settings(env))) as second:

        async def recorded() -> bool:
            return len(await ledger(db)) == 1

        await wait_until(recorded, 30, "the cancelled call's usage on the ledger")
        await proxied_usage_recorded(second.app)
    [entry] = await ledger(db)
    assert (entry["event_id"], entry["input_tokens"], entry["output_tokens"]) == (
        "gen-restart-1",
        4,
        3,
    )
    status, _ = await _stored(db, "gen-restart-1")
    assert status == "error"
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 1
    assert await _reservations(db, "job-u") == [(ESTIMATE, "settled")]
    await assert_rollups_equal_ledger(db)
