"""The metering proxy in-process (no provider key: the stub answers): attribution
headers, the budget check, and OpenAI-shaped errors."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from tests.support.fake_openrouter import FakeOpenRouter, Reply, failure, usage
from tests.support.ledger_truth import ledger
from tests.support.settings import settings_for
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Hello there"}]}
ATTRIBUTION = {"X-LUC-Job": "job-p", "X-LUC-Agent": "ACHEEVY"}


async def test_a_call_without_attribution_headers_is_refused_with_a_clear_message(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=BODY, headers={"X-LUC-Agent": "ACHEEVY"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "missing X-LUC-Job header" in error["message"]
    assert await ledger(db) == []


@pytest.mark.slow
async def test_an_attribution_header_sent_twice_is_an_openai_shaped_400(
    server_factory: Callable[..., Any], db: asyncpg.Connection
) -> None:
    # A real server: the test client's transport joins repeated headers into one value.
    # Before, the first of the two was billed, silently.
    server = server_factory(LUC_AUTH="off")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for name in ("X-LUC-Job", "X-LUC-Agent", "X-LUC-Customer"):
            once = [(k, v) for k, v in ATTRIBUTION.items() if k != name]
            headers = [*once, (name, "a"), (name, "b")]
            response = await http.post("/v1/chat/completions", json=BODY, headers=headers)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["message"] == (
                f"{name}: sent 2 times; send it once (a call is metered to one job, agent "
                "and customer)"
            )
    assert await ledger(db) == []


async def test_attribution_headers_in_utf8_are_recorded_as_sent(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # What an HTTP client sends for the text "équipe-7" and "Agent-Ω": its UTF-8 bytes.
    headers = {b"X-LUC-Job": "équipe-7".encode(), b"X-LUC-Agent": "Agent-Ω".encode()}
    response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
    assert response.status_code == 200, response.text
    await proxied_usage_recorded(client.app)
    [entry] = await ledger(db)
    assert (entry["job_id"], entry["agent"]) == ("équipe-7", "Agent-Ω")
    # The length is counted in characters, as the ledger counts it: 64 of "Ω" (128 bytes).
    agent = ("Ω" * 64).encode()
    response = await client.post(
        "/v1/chat/completions", json=BODY, headers={b"X-LUC-Job": b"j", b"X-LUC-Agent": agent}
    )
    assert response.status_code == 200, response.text


@pytest.mark.slow
async def test_an_attribution_header_that_is_not_utf8_is_an_openai_shaped_400(
    server_factory: Callable[..., Any], db: asyncpg.Connection
) -> None:
    # A real server: the test client's transport re-encodes header values as UTF-8.
    server = server_factory(LUC_AUTH="off")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for header in ("X-LUC-Job", "X-LUC-Agent", "X-LUC-Customer"):
            # "job-é" in latin-1: the byte E9 begins no UTF-8 character here.
            headers: dict[str, Any] = {**ATTRIBUTION, header: b"job-\xe9"}
            response = await http.post("/v1/chat/completions", json=BODY, headers=headers)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["message"] == (
                f"{header}: not valid UTF-8 (byte 5 of the value): send the header's text "
                "encoded as UTF-8"
            )
    assert await ledger(db) == []


async def test_a_body_nested_too_deeply_is_an_openai_shaped_400_and_nothing_is_called(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # 5,000 levels in 10 KB: the decoder ran out of stack, and the RecursionError was a
    # 500 "internal error" that an OpenAI SDK retries.
    nested = b'{"model": "x", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await client.post(
        "/v1/chat/completions",
        content=nested,
        headers={**ATTRIBUTION, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "body is not valid JSON: it nests too deeply"
    assert await ledger(db) == []


async def test_a_body_with_a_lone_surrogate_escape_is_an_openai_shaped_400_that_names_it(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # It said msgspec's "Input data was truncated": the body was whole.
    body = b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}'
    response = await client.post(
        "/v1/chat/completions",
        content=body,
        headers={**ATTRIBUTION, "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == (
        "body is not valid JSON: it holds a string escape for a lone UTF-16 surrogate "
        "(\\ud800–\\udfff without its pair), which is not Unicode text"
    )
    assert await ledger(db) == []


async def test_a_stream_flag_that_is_no_boolean_is_an_openai_shaped_400(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # "yes" was read as false: the caller asked for a stream and got one JSON answer.
    for flag in ("yes", 1, "true"):
        response = await client.post(
            "/v1/chat/completions", json={**BODY, "stream": flag}, headers=ATTRIBUTION
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["message"]) == (
            "invalid_request_error",
            "stream: must be a boolean (or null)",
        )
    assert await ledger(db) == []
    answered = await client.post(
        "/v1/chat/completions", json={**BODY, "stream": None}, headers=ATTRIBUTION
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["object"] == "chat.completion"


async def test_an_output_bound_or_choice_count_that_is_no_whole_number_is_a_400(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # A hard budget's estimate counted only whole numbers: n: 4.0, or a bound of 2000000.0
    # beside max_tokens: 100, went upstream outside the reservation.
    for name, value in (
        ("n", 4.0),
        ("n", 0),
        ("max_completion_tokens", 2_000_000.0),
        ("max_completion_tokens", "2000000"),
        ("max_tokens", True),
        ("max_tokens", -1),
        # Past the ledger's bound on a count (10^12): a 422 naming estimated_cost_usd.
        ("max_tokens", 99_999_999_999_999_999_999_999_999),
        ("max_completion_tokens", 10**12 + 1),
        ("n", 129),  # OpenAI's bound
    ):
        response = await client.post(
            "/v1/chat/completions",
            json={**BODY, "max_tokens": 100, name: value},
            headers=ATTRIBUTION,
        )
        assert response.status_code == 400, (name, value, response.text)
        error = response.json()["error"]
        assert (error["type"], error["message"]) == (
            "invalid_request_error",
            f"{name}: must be a whole number from 1 to {128 if name == 'n' else 10**12} (or null)",
        )
    assert await ledger(db) == []
    answered = await client.post(
        "/v1/chat/completions",
        json={**BODY, "max_tokens": 100, "max_completion_tokens": None, "n": 1},
        headers=ATTRIBUTION,
    )
    assert answered.status_code == 200, answered.text


async def test_a_call_without_a_key_gets_an_openai_shaped_401(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=BODY, headers={**ATTRIBUTION, "Authorization": ""}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_a_stub_answer_says_so_and_is_recorded_at_zero_never_billed(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    response = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"].startswith("[stub reply")
    assert response.headers["x-luc-provider"] == "stub"
    assert response.headers["x-luc-stub"] == "true"
    # 3 input tokens (11 chars), 17 output (65 chars): the catalog would say 3·0.10 +
    # 17·0.40 = 7.1 per 1M, but no LLM was called, so nothing is owed.
    assert response.headers["x-luc-cost-usd"] == "0"
    await proxied_usage_recorded(client.app)
    [entry] = await ledger(db)
    assert (entry["job_id"], entry["agent"], entry["provider"]) == ("job-p", "ACHEEVY", "stub")
    assert (entry["input_tokens"], entry["output_tokens"]) == (3, 17)
    assert entry["event_id"] == answer["id"] == response.headers["x-luc-event-id"]
    assert entry["cost_usd"] == Decimal(0)
    entries = (await client.get("/v1/jobs/job-p/entries")).json()["items"]
    assert [e["reason"] for e in entries] == [
        "not billed: stub answer (heuristic mode, no LLM was called)"
    ]
    job = (await client.get("/v1/jobs/job-p")).json()
    assert (job["cost_usd"], job["events"], job["unpriced_events"]) == ("0", 1, 0)


async def test_an_exhausted_hard_budget_answers_402_before_any_call(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    budget = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-broke",
            "period": "lifetime",
            "limit_usd": "0.0001",
            "hard": True,
        },
    )
    assert budget.status_code == 201, budget.text
    # Estimate: 3 prompt tokens + max_tokens 1000 at 0.40 per 1M = 0.0004003 > 0.0001
    response = await client.post(
        "/v1/chat/completions",
        json={**BODY, "max_tokens": 1000},
        headers={"X-LUC-Job": "job-broke", "X-LUC-Agent": "ACHEEVY"},
    )
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["message"].startswith("budget exhausted: budget")
    assert await ledger(db) == []
    # Another job is not held by that budget.
    other = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
    assert other.status_code == 200


async def test_a_streamed_stub_answer_ends_with_usage_and_done(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={**BODY, "stream": True}, headers=ATTRIBUTION
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert '"usage"' in events[-2]
    await proxied_usage_recorded(client.app)
    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["output_tokens"]) == (3, 17)


async def test_a_streamed_stub_answer_carries_the_stub_header(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={**BODY, "stream": True}, headers=ATTRIBUTION
    )
    assert response.status_code == 200
    assert (response.headers["x-luc-provider"], response.headers["x-luc-stub"]) == (
        "stub",
        "true",
    )
    # What a client of a stream is told; no length (it is sent as it comes). Beside it, the
    # rate limit's headers and the request's id, which every answer carries.
    assert len(response.headers["x-request-id"]) == 32
    told = {
        k: v
        for k, v in response.headers.items()
        if not k.startswith("ratelimit") and k != "x-request-id"
    }
    assert told == {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
        "x-luc-provider": "stub",
        "x-luc-stub": "true",
    }


def _samples(text: str, name: str) -> dict[str, float]:
    return {
        str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_stub_mode_is_named_by_readyz_and_metrics_and_each_stub_answer_counted(
    client: AsyncTestClient[Any],
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    gateway = ready.json()["gateway"]
    assert (gateway["mode"], gateway["chain"]) == ("stub", ["stub"])
    assert "never billed" in gateway["detail"]

    for stream in (False, True, False):
        answer = await client.post(
            "/v1/chat/completions", json={**BODY, "stream": stream}, headers=ATTRIBUTION
        )
        assert answer.status_code == 200
    metrics = (await client.get("/metrics")).text
    assert _samples(metrics, "luc_gateway_stub_mode") == {"[]": 1.0}
    assert _samples(metrics, "luc_gateway_stub_answers_total") == {
        "[('cause', 'fallback')]": 0.0,
        "[('cause', 'stub_mode')]": 3.0,
    }


async def test_with_a_provider_answers_are_not_stub_and_a_stub_fallback_is_counted_as_such(
    database_url: str, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    settings = settings_for(
        database_url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter,stub",
        LUC_GATEWAY_MAX_RETRIES="0",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        ready = (await client.get("/readyz")).json()["gateway"]
        assert (ready["mode"], ready["chain"]) == ("providers", ["openrouter", "stub"])
        assert ready["detail"] == (
            "chat completions go to openrouter; the stub answers only when they all fail"
        )
        fake_openrouter.push(Reply(text="Hi.", usage=usage(10, 2, cost="0.0000018")), failure(503))
        real = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
        assert (real.headers["x-luc-provider"], real.headers["x-luc-stub"]) == (
            "openrouter",
            "false",
        )
        # Flash: 10·0.10 + 2·0.40 = 1.8 per 1M
        assert real.headers["x-luc-cost-usd"] == "0.0000018"
        # OpenRouter is down (503): the stub answers in its place, and says so.
        fallback = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
        assert (fallback.headers["x-luc-provider"], fallback.headers["x-luc-stub"]) == (
            "stub",
            "true",
        )
        assert fallback.headers["x-luc-cost-usd"] == "0"
        metrics = (await client.get("/metrics")).text
    assert _samples(metrics, "luc_gateway_stub_mode") == {"[]": 0.0}
    assert _samples(metrics, "luc_gateway_stub_answers_total") == {
        "[('cause', 'fallback')]": 1.0,
        "[('cause', 'stub_mode')]": 0.0,
    }
    assert [(e["provider"], e["cost_usd"]) for e in await ledger(db)] == [
        ("openrouter", Decimal("0.0000018")),
        ("stub", Decimal(0)),
    ]
