"""A call under a hard budget is admitted by a reservation of its estimate, its usage event
carries the reservation id, and recording that event settles exactly that reservation:
in-process (``Gateway`` + ``DatabaseBudgets``), through the proxy, and from a gateway
running elsewhere (``RemoteBudgets`` + ``Emitter`` against ``luc serve``), each calling the
fake OpenRouter over HTTP.

Estimates and costs by hand, Gemini 3.0 Flash at 0.10 USD in and 0.40 USD out per 1M: the
prompt "What is the capital of France?" (30 characters) is estimated at 8 tokens, so with
``max_tokens`` 1000 a call is estimated at 8·0.10 + 1000·0.40 = 400.8 per 1M = 0.0004008;
an answer of 100 prompt and 20 completion tokens costs 10 + 8 = 18 per 1M = 0.000018.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.auth.keys import create_key
from service.catalog.service import bundled_catalog
from service.client.budgets import RemoteBudgets
from service.client.emitter import Emitter
from service.errors import BudgetExceededError, UpstreamRejectedError
from service.gateway.chain import Chain
from service.gateway.metering import Gateway
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.ports import fixed_catalog
from tests.support.budgets import OPUS, hard_budget
from tests.support.fake_openrouter import FakeOpenRouter, Reply, failure, usage
from tests.support.ledger_truth import STORED_EVENTS
from tests.support.settings import proxy_settings, settings_for
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
ESTIMATE = Decimal("0.0004008")
COST = Decimal("0.000018")

RESERVATIONS = f"""
SELECT r.reservation_id::text AS reservation_id, r.amount_usd, r.settled_at IS NOT NULL AS settled,
       stored_events.event_id
FROM budget_reservations AS r
LEFT JOIN {STORED_EVENTS} ON stored_events.reservation_id = r.reservation_id::text
WHERE r.job_id = $1
ORDER BY r.created_at
"""


async def _reservations(db: asyncpg.Connection, job: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(RESERVATIONS, job)]


async def _spent(db: asyncpg.Connection, budget: int) -> Decimal:
    return Decimal(
        await db.fetchval(
            "SELECT COALESCE(sum(spent_usd), 0) FROM budget_spend WHERE budget_id = $1", budget
        )
    )


def _answer() -> Reply:
    return Reply(text="Paris.", usage=usage(100, 20, cost="0.000018"))


async def test_the_gateway_reserves_and_its_calls_usage_settles_the_reservation(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    budget = await hard_budget(db, "job", "job-g", "1.00")
    gateway = make_gateway(openrouter)
    fake_openrouter.push(_answer(), _answer())

    chat = await gateway.chat(
        model=FLASH, messages=HELLO, job_id="job-g", agent="ACHEEVY", max_tokens=1000
    )
    pieces = [
        p
        async for p in gateway.stream(
            model=FLASH, messages=HELLO, job_id="job-g", agent="ACHEEVY", max_tokens=1000
        )
    ]
    streamed = pieces[-1]
    assert not isinstance(streamed, str)

    # Two reservations of the estimate, each named by its own call's event and settled.
    held = await _reservations(db, "job-g")
    assert [(r["amount_usd"], r["settled"], r["event_id"]) for r in held] == [
        (ESTIMATE, True, chat.generation_id),
        (ESTIMATE, True, streamed.generation_id),
    ]
    assert held[0]["reservation_id"] != held[1]["reservation_id"]
    assert await _spent(db, budget) == 2 * COST


async def test_the_gateway_refuses_a_call_the_budget_has_no_room_for_before_any_upstream_call(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    await hard_budget(db, "job", "job-tight", "0.0004")  # below the estimate of 0.0004008
    with pytest.raises(BudgetExceededError, match="budget exhausted"):
        await make_gateway(openrouter).chat(
            model=FLASH, messages=HELLO, job_id="job-tight", agent="ACHEEVY", max_tokens=1000
        )
    assert fake_openrouter.chat_calls() == []
    assert await _reservations(db, "job-tight") == []


async def test_the_proxy_reserves_and_the_calls_usage_settles_the_reservation(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    budget = await hard_budget(db, "job", "job-p", "1.00")
    fake_openrouter.push(_answer(), _answer())
    headers = {"X-LUC-Job": "job-p", "X-LUC-Agent": "ACHEEVY"}
    body = {"model": FLASH, "messages": HELLO, "max_tokens": 1000}

    answer = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    streamed = await proxy.post(
        "/v1/chat/completions", json=body | {"stream": True}, headers=headers
    )
    assert streamed.status_code == 200
    assert streamed.text.endswith("data: [DONE]\n\n")

    # The stream is metered by the gateway's own task once the last chunk is read: wait
    # for its event rather than for a fixed time.
    deadline = time.monotonic() + 10
    while sum(r["settled"] for r in await _reservations(db, "job-p")) < 2:
        assert time.monotonic() < deadline, await _reservations(db, "job-p")
        await asyncio.sleep(0.05)
    held = await _reservations(db, "job-p")
    assert [(r["amount_usd"], r["settled"]) for r in held] == [(ESTIMATE, True)] * 2
    assert held[0]["event_id"] == answer.headers["x-luc-event-id"]
    assert held[1]["event_id"] is not None
    assert await _spent(db, budget) == 2 * COST

    # 1.00 − 0.000036 spent cannot hold a call of max_tokens 2,500,000 (1.0000008).
    refused = await proxy.post(
        "/v1/chat/completions", json=body | {"max_tokens": 2_500_000}, headers=headers
    )
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert len(await _reservations(db, "job-p")) == 2
    assert len(fake_openrouter.chat_calls()) == 2


async def test_a_model_budget_judges_and_holds_a_call_that_names_its_model_as_a_fallback(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # The call asks for Flash, and lets OpenRouter answer with Opus 4.6 (5.00 in, 25.00 out
    # per 1M): it is estimated at the dearer, 8·5 + 1000·25 = 25,040 per 1M = 0.02504.
    tight = await hard_budget(db, "model", OPUS, "0.025")
    headers = {"X-LUC-Job": "job-fb", "X-LUC-Agent": "ACHEEVY"}
    body = {"model": FLASH, "models": [FLASH, OPUS], "messages": HELLO, "max_tokens": 1000}
    refused = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert fake_openrouter.chat_calls() == []
    assert await _reservations(db, "job-fb") == []

    # With room, the one reservation holds the estimate against the Opus budget, and the
    # answer Opus gave (100 in, 20 out: 500 + 500 = 1,000 per 1M) settles it as spent there.
    await db.execute("UPDATE budgets SET limit_usd = 1 WHERE id = $1", tight)
    fake_openrouter.push(Reply(text="Paris.", usage=usage(100, 20, cost="0.001"), model=OPUS))
    answer = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    held = await db.fetch(
        "SELECT budget_id, amount_usd FROM budget_reservations WHERE job_id = 'job-fb'"
    )
    assert [(r["budget_id"], r["amount_usd"]) for r in held] == [(tight, Decimal("0.02504"))]
    await proxied_usage_recorded(proxy.app)
    assert [r["settled"] for r in await _reservations(db, "job-fb")] == [True]
    assert await _spent(db, tight) == Decimal("0.001")


async def test_a_callers_next_call_is_judged_on_what_the_last_one_spent(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # 0.0007 holds one estimate (0.0004008) but not two: each call is admitted only once
    # the one before has settled its reservation with what it spent (0.000018), which the
    # proxy records just after its answer.
    budget = await hard_budget(db, "job", "job-seq", "0.0007")
    fake_openrouter.push(_answer(), _answer(), _answer())
    headers = {"X-LUC-Job": "job-seq", "X-LUC-Agent": "ACHEEVY"}
    body = {"model": FLASH, "messages": HELLO, "max_tokens": 1000}
    for _ in range(3):
        answer = await proxy.post("/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    await proxied_usage_recorded(proxy.app)
    assert await _spent(db, budget) == 3 * COST
    assert [r["settled"] for r in await _reservations(db, "job-seq")] == [True] * 3


@pytest.mark.slow
async def test_a_remote_gateway_reserves_over_rest_and_its_spooled_usage_settles_it(
    server_factory: Callable[..., Any],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # Room for a call of max_tokens 1000 (0.0004008), not of 5000 (0.0020008).
    budget = await hard_budget(db, "job", "job-r", "0.0006")
    _, key = await create_key(db, "aims-gateway", "ingest")
    server = server_factory(LUC_AUTH="on")
    fake_openrouter.push(_answer())
    async with (
        httpx.AsyncClient(timeout=10) as http,
        Emitter(server.base_url, key, tmp_path / "spool.db", linger_seconds=0) as emitter,
    ):
        gateway = Gateway(
            Chain([openrouter]),
            emitter,
            fixed_catalog(bundled_catalog()),
            budgets=RemoteBudgets(server.base_url, key, http),
        )
        result = await gateway.chat(
            model=FLASH, messages=HELLO, job_id="job-r", agent="ACHEEVY", max_tokens=1000
        )
        # A call the budget has no room for is refused by LUC's 402 before going upstream.
        with pytest.raises(BudgetExceededError, match="budget exhausted: budget"):
            await gateway.chat(
                model=FLASH, messages=HELLO, job_id="job-r", agent="ACHEEVY", max_tokens=5000
            )
        assert await emitter.flush(timeout_seconds=30)
        assert await emitter.kept_aside() == []

        [held] = await _reservations(db, "job-r")
        assert (held["amount_usd"], held["settled"], held["event_id"]) == (
            ESTIMATE,
            True,
            result.generation_id,
        )
        assert await _spent(db, budget) == COST
        assert len(fake_openrouter.chat_calls()) == 1


# Without max_tokens a call is estimated at LUC_GATEWAY_DEFAULT_MAX_TOKENS (4096) output
# tokens: 8·0.10 + 4096·0.40 = 1639.2 per 1M = 0.0016392.
UNBOUNDED_ESTIMATE = Decimal("0.0016392")


def _huge_answer() -> Reply:
    """An answer of 1M completion tokens: 0.40 USD, whatever was asked."""
    return Reply(text="Paris. " * 10, usage=usage(8, 1_000_000, cost="0.4000008"))


async def test_calls_without_max_tokens_cannot_overspend_a_hard_budget(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    budget = await hard_budget(db, "job", "job-unbounded", "0.001")  # below one estimate
    gateway = make_gateway(openrouter)
    fake_openrouter.push(*[_huge_answer() for _ in range(5)])

    outcomes = await asyncio.gather(
        *[
            gateway.chat(model=FLASH, messages=HELLO, job_id="job-unbounded", agent="ACHEEVY")
            for _ in range(5)
        ],
        return_exceptions=True,
    )
    # Each would have been estimated at 0 output tokens and admitted; now none fits.
    assert all(isinstance(o, BudgetExceededError) for o in outcomes), outcomes
    assert fake_openrouter.chat_calls() == []
    assert await _spent(db, budget) == 0


async def test_a_call_without_max_tokens_goes_upstream_capped_at_its_estimate(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    await hard_budget(db, "job", "job-cap", "1.00")
    gateway = make_gateway(openrouter)
    fake_openrouter.push(_answer(), _answer())

    await gateway.chat(model=FLASH, messages=HELLO, job_id="job-cap", agent="ACHEEVY")
    await gateway.chat(
        model=FLASH, messages=HELLO, job_id="job-cap", agent="ACHEEVY", max_tokens=1000
    )
    sent = [c.body.get("max_tokens") for c in fake_openrouter.chat_calls()]
    assert sent == [4096, 1000]  # the default where the caller set none; theirs otherwise
    assert [r["amount_usd"] for r in await _reservations(db, "job-cap")] == [
        UNBOUNDED_ESTIMATE,
        ESTIMATE,
    ]


async def test_without_a_hard_budget_a_call_goes_upstream_as_asked(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.push(_answer())
    await make_gateway(openrouter).chat(
        model=FLASH, messages=HELLO, job_id="job-free", agent="ACHEEVY"
    )
    [call] = fake_openrouter.chat_calls()
    assert "max_tokens" not in call.body  # nothing reserved, nothing to cap


HOLDING = """
SELECT count(*) FROM budget_reservations
WHERE job_id = $1 AND settled_at IS NULL AND expires_at > now()
"""


async def test_a_call_that_spends_nothing_releases_its_reservation_at_once(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    # Room for one call of max_tokens 1000 (0.0004008) at a time.
    await hard_budget(db, "job", "job-fail", "0.0006")
    gateway = make_gateway(openrouter)
    # Refused upstream before any token: a chat, then a stream (no retries of a 400).
    fake_openrouter.push(
        failure(400, "Invalid value for temperature"),
        failure(400, "Invalid value for temperature"),
        _answer(),
    )
    call: dict[str, Any] = {
        "model": FLASH,
        "messages": HELLO,
        "job_id": "job-fail",
        "agent": "ACHEEVY",
    }
    with pytest.raises(UpstreamRejectedError):
        await gateway.chat(**call, max_tokens=1000)
    assert await db.fetchval(HOLDING, "job-fail") == 0
    with pytest.raises(UpstreamRejectedError):
        async for _ in gateway.stream(**call, max_tokens=1000):
            pass
    assert await db.fetchval(HOLDING, "job-fail") == 0

    # The headroom is free again at once (not in 300 s): the next call is admitted.
    result = await gateway.chat(**call, max_tokens=1000)
    assert result.text == "Paris."
    held = await _reservations(db, "job-fail")
    assert [(r["settled"], r["event_id"]) for r in held] == [
        (False, None),
        (False, None),
        (True, result.generation_id),
    ]


async def test_the_proxy_forwards_the_configured_default_and_holds_past_the_longest_call(
    database_url: str, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    settings = settings_for(
        database_url,
        LUC_AUTH="off",
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
        LUC_GATEWAY_DEFAULT_MAX_TOKENS="1000",
        LUC_BUDGET_RESERVATION_SECONDS="60",
        LUC_GATEWAY_TIMEOUT_SECONDS="100",
        LUC_GATEWAY_MAX_RETRIES="2",
        LUC_GATEWAY_MAX_RETRY_AFTER_SECONDS="30",
    )
    await hard_budget(db, "job", "job-px", "1.00")
    fake_openrouter.push(_answer())
    async with AsyncTestClient(app=create_app(settings)) as proxy:
        answer = await proxy.post(
            "/v1/chat/completions",
            json={"model": FLASH, "messages": HELLO},
            headers={"X-LUC-Job": "job-px", "X-LUC-Agent": "ACHEEVY"},
        )
    assert answer.status_code == 200, answer.text
    [call] = fake_openrouter.chat_calls()
    assert call.body["max_tokens"] == 1000
    [held] = await db.fetch(
        "SELECT amount_usd, extract(epoch FROM expires_at - created_at) AS seconds"
        " FROM budget_reservations WHERE job_id = 'job-px'"
    )
    assert held["amount_usd"] == ESTIMATE
    # Not 60 s: one provider, 3 attempts of up to 100 s and 2 waits of up to 30 s, then a
    # stream read up to its deadline (600 s by default): 3·100 + 2·30 + 600 = 960 s.
    assert round(held["seconds"]) == 960


async def test_a_callers_next_call_on_another_worker_is_judged_on_what_the_last_one_spent(
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    """As above, each call answered before the next is sent, but alternating between two
    processes (``luc serve --workers 2`` puts a caller's calls on either): the one that
    answers a call has nothing of the last one in flight to wait for, and refused it (402)
    while the last call's reservation still held its whole estimate, its usage moments
    from the ledger."""
    budget = await hard_budget(db, "job", "job-two", "0.0007")
    fake_openrouter.push(*(_answer() for _ in range(6)))
    headers = {"X-LUC-Job": "job-two", "X-LUC-Agent": "ACHEEVY"}
    body = {"model": FLASH, "messages": HELLO, "max_tokens": 1000}
    async with AsyncTestClient(
        app=create_app(proxy_settings(database_url, fake_openrouter))
    ) as other:
        other.headers["Authorization"] = proxy.headers["Authorization"]
        statuses = []
        for n in range(6):
            answer = await (proxy, other)[n % 2].post(
                "/v1/chat/completions", json=body, headers=headers
            )
            statuses.append(answer.status_code)
        await proxied_usage_recorded(other.app)
    await proxied_usage_recorded(proxy.app)
    assert statuses == [200] * 6
    assert await _spent(db, budget) == 6 * COST
    assert [r["settled"] for r in await _reservations(db, "job-two")] == [True] * 6
