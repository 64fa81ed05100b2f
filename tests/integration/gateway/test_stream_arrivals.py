"""A stream is passed on as it arrives: the events the provider sent together go on
together (one write downstream, not one each), nothing waits for what has not come yet,
and the stream's end comes only once the call's usage is recorded (SPEC §8: durable before
the answer's last byte)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import httpx
import msgspec
import pytest

from service.gateway.metering import Gateway
from service.gateway.models import CallContext, StreamEvent
from service.gateway.openrouter import OpenRouterProvider
from tests.support.fake_openrouter import FAST_RETRY
from tests.support.scripted_http import scripted_server

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"


def _event(gen_id: str, **fields: object) -> bytes:
    body = {"id": gen_id, "object": "chat.completion.chunk", "model": FLASH, **fields}
    return b"data: " + msgspec.json.encode(body) + b"\n\n"


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


def _text(events: list[StreamEvent]) -> str:
    return "".join(e.delta for e in events)


async def test_what_arrives_together_goes_on_together_and_the_end_waits_for_the_usage(
    make_gateway: Callable[..., Gateway], http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gen = "gen-arrivals-1"
    rest = asyncio.Event()
    async with scripted_server() as upstream:
        upstream.answer(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n",
            # Three events in one write...
            _chunked(
                b": OPENROUTER PROCESSING\n\n"
                + _event(gen, choices=[{"index": 0, "delta": {"content": "Pa"}}])
                + _event(gen, choices=[{"index": 0, "delta": {"content": "ris"}}])
            ),
            rest,  # ...and the rest only once the first three reached the caller
            _chunked(
                _event(gen, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
                + _event(gen, choices=[], usage={"prompt_tokens": 12, "completion_tokens": 3})
                + b"data: [DONE]\n\n"
            ),
            b"0\r\n\r\n",
        )
        provider = OpenRouterProvider(http, upstream.url, "key", FAST_RETRY)
        gateway = make_gateway(provider)
        handle = await gateway.open_stream(
            gateway.request(messages=[{"role": "user", "content": "Capital of France?"}]),
            CallContext("job-arrivals", "ACHEEVY"),
        )
        arrivals = handle.arrivals()
        async with asyncio.timeout(10):  # fails, rather than hangs, if anything waited
            first, ended = await anext(arrivals)
            assert ([e.comment for e in first], _text(first), ended) == (
                [True, False, False],
                "Paris",
                False,
            )
            rest.set()
            later = [await anext(arrivals)]
            while not later[-1][1]:
                later.append(await anext(arrivals))
    # The finish and usage chunks at once; the end alone, after the usage was recorded
    # (this gateway's sink records before it returns: it has no spool).
    assert [(len(events), ended) for events, ended in later] == [(2, False), (0, True)]
    stored = await db.fetchrow(
        "SELECT input_tokens, output_tokens FROM ledger_entries"
        " WHERE event_id = $1 AND kind = 'charge'",
        gen,
    )
    assert stored is not None and (stored["input_tokens"], stored["output_tokens"]) == (12, 3)
