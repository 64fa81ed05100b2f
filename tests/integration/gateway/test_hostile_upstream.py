"""The gateway against an upstream that misbehaves while speaking OpenRouter's protocol
(the fake OpenRouter on loopback): what the client is told and what the ledger keeps."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.auth.keys import create_key
from service.errors import UpstreamUnavailableError
from service.gateway.metering import Gateway
from service.gateway.models import ChatResult
from service.gateway.openrouter import OpenRouterProvider
from tests.support.fake_openrouter import (
    BrokenAnswer,
    Failure,
    FakeOpenRouter,
    Reply,
    openrouter_at,
    usage,
)
from tests.support.ledger_truth import STORED_EVENT, ledger
from tests.support.scripted_http import Scripted, ok, scripted_server
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Tell me a story"}]}
ATTRIBUTION = {"X-LUC-Job": "job-h", "X-LUC-Agent": "ORACLE"}


def _events(text: str) -> list[str]:
    return [event for event in text.split("\n\n") if event]


async def _proxied_once(
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    reply: Reply,
    *,
    stream: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """One call through the proxy that the fake OpenRouter answers with ``reply``: its
    answer (a 200) and, once its usage is recorded, the one ledger entry it made."""
    fake_openrouter.push(reply)
    response = await proxy.post(
        "/v1/chat/completions",
        json={**BODY, "stream": True} if stream else BODY,
        headers=ATTRIBUTION,
    )
    assert response.status_code == 200, response.text
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    return response, entry


async def test_a_stream_that_ends_without_done_is_an_error_to_the_client_and_on_the_ledger(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # The body ends cleanly after "Once upon": no usage, no error event, no [DONE].
    reply = Reply(text="Once upon a time", cut_after=9, usage=usage(100, 20, cost="0.00002"))
    response, entry = await _proxied_once(proxy, fake_openrouter, db, reply, stream=True)

    events = _events(response.text)
    # The client must not be told the answer is whole: no [DONE] the provider never sent.
    assert "data: [DONE]" not in events
    error = msgspec.json.decode(events[-1].removeprefix("data: "))["error"]
    assert error["code"] == 502
    assert "ended without [DONE]" in error["message"]
    # Not "tried the next provider": a stream that has begun never falls through.
    assert "did not send the call to another provider" in error["message"]
    assert "tried the next provider" not in error["message"]
    # From GET /generation: 100·0.10 + 20·0.40 = 18 per 1M
    assert (entry["input_tokens"], entry["output_tokens"]) == (100, 20)
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    status, attributes = row
    assert (status, attributes["usage_source"]) == ("error", "generation")
    assert "ended without [DONE]" in attributes["error"]


async def test_a_stream_answered_2xx_that_ends_before_any_chunk_is_billed_on_its_prompt(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    """The provider answered 200 (the call is paid for), sent its keep-alives and then
    nothing: as a plain call's broken answer, it is billed on its prompt. Before, a stream
    without a chunk was taken for one that spent nothing, and not billed at all, while the
    client was told its tokens were."""
    reply = Reply(text="Once upon a time", cut_after=0, usage=None)
    fake_openrouter.generation_misses = 1_000_000  # nor does /generation know it
    response, entry = await _proxied_once(proxy, fake_openrouter, db, reply, stream=True)
    error = msgspec.json.decode(_events(response.text)[-1].removeprefix("data: "))["error"]
    assert "tokens spent are billed" in error["message"]
    # "Tell me a story": 15 characters, 4 a token → 4 input tokens; 4 × 0.10 per 1M.
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 0)
    assert entry["cost_usd"] == Decimal("0.0000004")
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    assert (row[0], row[1]["usage_source"]) == ("error", "estimate")


@pytest.mark.parametrize("cost", [None, "0.77"], ids=["no cost", "cost"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_usage_whose_counts_are_null_is_billed_as_a_call_without_usage(
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    stream: bool,
    cost: str | None,
) -> None:
    """``"usage": {"prompt_tokens": null, "completion_tokens": null, "cost": null}`` says
    nothing of what the paid call used: read as zeros, it was booked at 0 tokens and 0 USD.
    Billed as a call without usage: the provider's record (here as empty), else an
    estimate from the text; a cost it did report is the call's bill all the same."""
    empty = {"prompt_tokens": None, "completion_tokens": None, "cost": cost}
    reply = Reply(text="Paid for.", usage=empty)
    _, entry = await _proxied_once(proxy, fake_openrouter, db, reply, stream=stream)
    # "Tell me a story": 15 characters → 4 tokens; "Paid for.": 9 → 3. 4 × 0.10 + 3 × 0.40
    # = 1.6 per 1M.
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 3)
    assert (entry["cost_usd"], entry["provider_cost_usd"]) == (
        Decimal("0.0000016"),
        None if cost is None else Decimal(cost),
    )
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    assert row[1]["usage_source"] == "estimate"


async def test_a_token_count_too_large_to_write_is_parked_and_the_answer_still_delivered(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # A count of 5,001 digits: beyond what Python writes as text (4,300 digits), so the
    # event as reported could not even be encoded for the spool.
    absurd = usage(12, 3)
    absurd["prompt_tokens"] = Decimal("1E+5000")
    fake_openrouter.push(Reply(text="Paid for.", usage=absurd))

    answer = await proxy.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)

    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Paid for."
    await proxied_usage_recorded(proxy.app)
    assert await ledger(db) == []
    _, reader = await create_key(db, "ops", "read")
    listing = await proxy.get("/v1/usage/parked", headers={"Authorization": f"Bearer {reader}"})
    [parked] = listing.json()["items"]
    assert (parked["event_id"], parked["status"]) == (answer.json()["id"], "rejected")
    assert parked["reason"].startswith("input_tokens: ")
    # Kept as the largest count LUC writes, 10^18: out of the ledger's range (10^12) too.
    assert parked["event"]["input_tokens"] == 10**18
    assert parked["event"]["output_tokens"] == 3


async def test_an_answering_model_name_of_any_length_never_keeps_the_usage_off_the_ledger(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # Recorded as attributes.upstream_model: attributes hold at most 4 KiB.
    other = "vendor/" + "m" * 5000
    reply = Reply(text="Hi", usage=usage(10, 2), model=other)
    _, entry = await _proxied_once(proxy, fake_openrouter, db, reply)
    # Billed under the model asked for (LUC cannot price the other): 10·0.10 + 2·0.40
    assert (entry["model"], entry["cost_usd"]) == (FLASH, Decimal("0.0000018"))
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    _, attributes = row
    kept = attributes["upstream_model"]
    assert kept.startswith("vendor/mmm") and kept.endswith("…") and len(kept) <= 400


@pytest.mark.parametrize(
    ("cost", "kept"),
    [
        ("0.0000036", Decimal("0.0000036")),  # a decimal string, as some relays write it
        ("1e-7", None),  # strings are taken only as plain decimals, as LUC writes money
        ("-0.5", None),
        ("free", None),
        (["0.1"], None),
    ],
)
async def test_a_cost_sent_as_text_is_kept_when_it_is_a_plain_decimal(
    cost: object,
    kept: Decimal | None,
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    reported = usage(10, 2)
    reported["cost"] = cost
    fake_openrouter.push(Reply(text="Hi", usage=reported))

    result = await make_gateway(openrouter).chat(
        model=FLASH, messages=BODY["messages"], job_id="job-c", agent="ORACLE"
    )

    assert result.cost.provider_usd == kept
    [entry] = await ledger(db)
    assert entry["provider_cost_usd"] == kept
    assert entry["cost_usd"] == Decimal("0.0000018")  # LUC's price either way: 10·0.10 + 2·0.40


@pytest.mark.parametrize(
    ("cost", "kept"),
    [
        # 54 decimal places: more than the ledger keeps (30), rounded to them, half even.
        (
            "0.000003600000000000000000000000000000000000000000000001",
            Decimal("0.0000036"),
        ),
        ("0.0000000000000000000000000000015", Decimal("0.000000000000000000000000000002")),
        ("1E-400", Decimal(0)),
        ("1E-7", Decimal("0.0000001")),
    ],
)
async def test_a_cost_finer_than_the_ledger_keeps_is_rounded_not_parked(
    cost: str,
    kept: Decimal,
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    reported = usage(10, 2)
    reported["cost"] = Decimal(cost)  # written as a JSON number with exactly these digits
    _, entry = await _proxied_once(proxy, fake_openrouter, db, Reply(text="Hi", usage=reported))
    assert entry["provider_cost_usd"] == kept
    assert entry["cost_usd"] == Decimal("0.0000018")  # 10·0.10 + 2·0.40 per 1M


async def test_nul_characters_in_a_provider_s_model_or_error_never_park_the_usage(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # PostgreSQL text cannot hold U+0000: the ledger refuses any event that carries one.
    reply = Reply(
        text="Once upon a time",
        model="vendor/odd\x00model",
        error_after=4,
        error_message="upstream said \x00 and stopped",
        usage=usage(30, 4),
        usage_with_error=True,
    )
    _, entry = await _proxied_once(proxy, fake_openrouter, db, reply, stream=True)
    assert (entry["input_tokens"], entry["output_tokens"]) == (30, 4)
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    status, attributes = row
    assert status == "error"
    assert attributes["upstream_model"] == "vendor/odd\ufffdmodel"
    assert attributes["error"] == "upstream said \ufffd and stopped (code 502)"


async def test_a_stream_s_error_is_relayed_without_luc_s_key_and_its_later_usage_is_booked(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # The provider's error event names the key LUC sent (SPEC §10: LUC's keys never leave
    # the server); its usage comes in a chunk after it, and its /generation record is not
    # there (read to the error only, the call was billed on a tiny estimate).
    fake_openrouter.generation_misses = 1_000
    reply = Reply(
        text="Once upon a time",
        error_after=4,
        error_message=f"upstream refused key {fake_openrouter.api_key}",
        usage=usage(3_000, 400, cost="0.0005"),
        usage_after_error=True,
    )
    response, entry = await _proxied_once(proxy, fake_openrouter, db, reply, stream=True)
    assert fake_openrouter.api_key not in response.text
    assert "upstream refused key [LUC's key, redacted]" in response.text
    assert '"prompt_tokens":3000' in response.text  # the chunk after the error, relayed
    # 3,000 × 0.10 + 400 × 0.40 = 460 per 1M; the provider's own figure beside it.
    assert (entry["input_tokens"], entry["output_tokens"]) == (3_000, 400)
    assert entry["cost_usd"] == Decimal("0.00046")
    assert entry["provider_cost_usd"] == Decimal("0.0005")


async def test_a_2xx_answer_whose_choice_error_names_luc_s_key_is_relayed_without_it(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    key = fake_openrouter.api_key
    body = (
        b'{"id":"gen-ce","model":"google/gemini-3.0-flash","choices":[{"index":0,'
        b'"finish_reason":"error","message":{"role":"assistant","content":"Hel"},'
        b'"error":{"code":502,"message":"bad key ' + key.encode() + b'"}}],'
        b'"usage":{"prompt_tokens":40,"completion_tokens":8,"total_tokens":48}}'
    )
    fake_openrouter.push(BrokenAnswer(body=body))
    response = await proxy.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
    assert response.status_code == 200, response.text
    assert key not in response.text
    assert response.json()["choices"][0]["error"]["message"] == "bad key [LUC's key, redacted]"


async def _chat_answered_with(
    body: bytes, make_gateway: Callable[..., Gateway], http: Any, *, job_id: str
) -> Any:
    """A gateway call (not streamed) that OpenRouter answers with ``body``, as JSON."""
    async with scripted_server() as upstream:
        upstream.answer(ok(body, b"content-type: application/json"))
        return await make_gateway(openrouter_at(http, upstream.url)).chat(
            model=FLASH, messages=BODY["messages"], job_id=job_id, agent="ORACLE"
        )


async def test_a_generation_id_the_ledger_cannot_keep_becomes_a_stable_one_of_luc_s(
    make_gateway: Callable[..., Gateway], http: Any, db: asyncpg.Connection
) -> None:
    # Vertex-style: no X-Generation-Id header, the id only in the body, here with a U+0000.
    body = (
        b'{"id":"fb2gafiLBIK9\\u0000odAP1tGMmQc","object":"chat.completion",'
        b'"model":"google/gemini-3.0-flash","choices":[{"index":0,"finish_reason":"stop",'
        b'"message":{"role":"assistant","content":"Hi"}}],'
        b'"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}'
    )
    first = await _chat_answered_with(body, make_gateway, http, job_id="job-n")

    [entry] = await ledger(db)
    # luc- and the SHA-256 of the id as sent: the same id again is the same event.
    digest = hashlib.sha256(b"fb2gafiLBIK9\x00odAP1tGMmQc").hexdigest()
    assert entry["event_id"] == first.generation_id == f"luc-{digest}"
    assert (entry["input_tokens"], entry["output_tokens"]) == (10, 2)


async def test_a_model_and_error_text_of_escaped_characters_stay_within_the_attributes_limit(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # Control characters are written \\u0001 in JSON: six bytes each. The attributes' limit
    # (4 KiB) counts the bytes of their JSON.
    reply = Reply(
        text="Once upon a time",
        model="vendor/" + "\x01" * 400,
        error_after=4,
        error_message="\x02" * 600,
        usage=usage(30, 4),
        usage_with_error=True,
    )
    _, entry = await _proxied_once(proxy, fake_openrouter, db, reply, stream=True)
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    _, attributes = row
    assert len(msgspec.json.encode(attributes)) <= 4096
    assert attributes["upstream_model"].startswith("vendor/\x01")
    assert attributes["upstream_model"].endswith("…")
    assert attributes["error"].startswith("\x02") and attributes["error"].endswith("…")


async def test_a_stream_without_usage_estimates_its_output_from_tool_calls_and_reasoning_too(
    make_gateway: Callable[..., Gateway], http: Any, db: asyncpg.Connection
) -> None:
    # A tool call streamed with reasoning first, no content at all, and no usage (Vertex,
    # so no /generation to ask): the estimate is all LUC has of what was generated.
    def chunk(delta: bytes) -> bytes:
        return (
            b'data: {"id":"tool-1","model":"google/gemini-3.0-flash","choices":[{"index":0,'
            b'"delta":' + delta + b',"finish_reason":null}]}\n\n'
        )

    body = (
        chunk(b'{"role":"assistant","reasoning":"Let me check."}')
        + chunk(
            b'{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
            b'"function":{"name":"get_weather","arguments":"{\\"city\\":"}}]}'
        )
        + chunk(b'{"tool_calls":[{"index":0,"function":{"arguments":" \\"Paris\\"}"}}]}')
        + b"data: [DONE]\n\n"
    )
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n"
    async with scripted_server() as upstream:
        upstream.answer(head % len(body) + body)
        pieces = [
            item
            async for item in make_gateway(openrouter_at(http, upstream.url)).stream(
                model=FLASH, messages=BODY["messages"], job_id="job-t", agent="ORACLE"
            )
        ]

    *texts, result = pieces
    assert isinstance(result, ChatResult)
    assert texts == [] and result.text == ""  # no content: the caller's text stays empty
    [entry] = await ledger(db)
    # "Tell me a story" 15 chars → 4 tokens in; "Let me check." (13) + "get_weather" (11)
    # + '{"city": "Paris"}' (17) = 41 chars → 11 tokens out
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 11)
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    _, attributes = row
    assert attributes["usage_source"] == "estimate"


async def test_an_answer_without_usage_estimates_its_output_from_its_tool_calls_too(
    make_gateway: Callable[..., Gateway], http: Any, db: asyncpg.Connection
) -> None:
    body = (
        b'{"id":"tool-2","object":"chat.completion","model":"google/gemini-3.0-flash",'
        b'"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",'
        b'"content":null,"tool_calls":[{"id":"call_1","type":"function","function":'
        b'{"name":"get_weather","arguments":"{\\"city\\": \\"Paris\\"}"}}]}}]}'
    )
    result = await _chat_answered_with(body, make_gateway, http, job_id="job-t")

    assert result.text == ""
    [entry] = await ledger(db)
    # 15 chars → 4 tokens in; "get_weather" (11) + '{"city": "Paris"}' (17) = 28 → 7 out
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 7)


async def test_token_counts_sent_as_digit_strings_are_counted_not_zeroed(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    reported = usage(10, 2)
    reported["prompt_tokens"] = "1000"
    reported["completion_tokens"] = "200"
    reported["completion_tokens_details"]["reasoning_tokens"] = "50"
    reported["prompt_tokens_details"]["cached_tokens"] = "twelve"  # no count: 0
    fake_openrouter.push(Reply(text="Hi", usage=reported))

    result = await make_gateway(openrouter).chat(
        model=FLASH, messages=BODY["messages"], job_id="job-s", agent="ORACLE"
    )

    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["output_tokens"], entry["reasoning_tokens"]) == (
        1000,
        200,
        50,
    )
    assert entry["cached_input_tokens"] == 0
    # 1000·0.10 + 200·0.40 = 180 per 1M
    assert entry["cost_usd"] == result.cost.usd == Decimal("0.00018")


@pytest.mark.parametrize("retry_after", ["inf", "nan", "1e400", "-5"])
async def test_a_429_with_a_retry_after_that_is_no_duration_still_answers_429(
    retry_after: str, proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter
) -> None:
    fake_openrouter.push(*[Failure(429, "Rate limit exceeded", {"Retry-After": retry_after})] * 3)

    answer = await proxy.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)

    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["type"] == "rate_limit_error"
    # No duration known: no Retry-After (the SDK backs off its own way); else 1 s at least.
    assert int(answer.headers.get("Retry-After", "1")) >= 1


# A provider that answers a stream with one JSON body ----------------------------------------

WHOLE_ANSWER = (
    b'{"id":"gen-json-1","object":"chat.completion","model":"google/gemini-3.0-flash",'
    b'"provider":"Google","choices":[{"index":0,"finish_reason":"stop",'
    b'"message":{"role":"assistant","content":"Once upon a time."}}],'
    b'"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,'
    b'"cost":0.0000183}}'
)
JSON_HEAD = b"content-type: application/json; charset=utf-8"


async def test_a_stream_answered_with_one_json_body_is_metered_and_streamed_to_the_client(
    relayed: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection
) -> None:
    # The provider (a relay) ignores "stream": true and sends its whole answer at once.
    upstream, proxy = relayed
    upstream.answer(ok(WHOLE_ANSWER, JSON_HEAD))

    response = await proxy.post(
        "/v1/chat/completions", json={**BODY, "stream": True}, headers=ATTRIBUTION
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    # What the client asked for: a stream, of one chunk holding the whole answer.
    first, done = _events(response.text)
    assert done == "data: [DONE]"
    chunk = msgspec.json.decode(first.removeprefix("data: "))
    assert (chunk["id"], chunk["object"]) == ("gen-json-1", "chat.completion.chunk")
    assert chunk["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "delta": {"role": "assistant", "content": "Once upon a time."},
        }
    ]
    assert chunk["usage"]["prompt_tokens"] == 100
    # The cost goes on as the provider wrote it: a number with all its digits.
    assert b'"cost":0.0000183}' in first.encode()
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    assert entry["event_id"] == "gen-json-1"
    # Metered from the body's usage: 100·0.10 + 20·0.40 = 18 per 1M
    assert (entry["input_tokens"], entry["output_tokens"]) == (100, 20)
    assert entry["cost_usd"] == Decimal("0.000018")
    assert entry["provider_cost_usd"] == Decimal("0.0000183")
    row = await db.fetchrow(STORED_EVENT, "gen-json-1")
    assert row is not None
    status, attributes = row
    assert (status, attributes["usage_source"], attributes["streamed"]) == ("ok", "response", True)


async def test_a_streamed_call_answered_with_a_json_error_object_is_an_error_and_metered(
    make_gateway: Callable[..., Gateway], http: Any, db: asyncpg.Connection
) -> None:
    # A 200 whose JSON body is an error, with the usage the provider spent before it.
    body = (
        b'{"id":"gen-json-2","error":{"code":502,"message":"Upstream overloaded"},'
        b'"usage":{"prompt_tokens":100,"completion_tokens":0,"total_tokens":100}}'
    )
    async with scripted_server() as upstream:
        upstream.answer(ok(body, JSON_HEAD))
        pieces: list[Any] = []
        with pytest.raises(UpstreamUnavailableError, match="Upstream overloaded"):
            async for piece in make_gateway(openrouter_at(http, upstream.url)).stream(
                model=FLASH, messages=BODY["messages"], job_id="job-j", agent="ORACLE"
            ):
                pieces.append(piece)

    assert pieces == []
    [entry] = await ledger(db)
    assert (entry["event_id"], entry["input_tokens"], entry["output_tokens"]) == (
        "gen-json-2",
        100,
        0,
    )
    row = await db.fetchrow(STORED_EVENT, "gen-json-2")
    assert row is not None
    status, attributes = row
    assert (status, attributes["usage_source"]) == ("error", "response")
    assert attributes["error"] == "Upstream overloaded (code 502)"
