"""A hard budget created, or made hard, while calls of its scope hold reservations holds
them too (SPEC §6: a hard budget refuses what spent + reserved + the estimate would pass).

Four calls for job-1 by ACHEEVY are admitted under a hard agent budget, 0.10 each at list
price. A hard job budget of 0.25 made afterwards saw none of them and admitted its whole
limit on top: 0.175 spent against 0.10 (found by a hostile review). Now it holds the four
at once: 0.40 reserved, 0.25 − 0.40 = −0.15 left, the next call refused, and each
reservation still frees its hold in every budget when it is released.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.budgets import reservations
from service.budgets.service import create_budget
from tests.scenarios.test_customer_prices import make_customer, make_plan
from tests.support.budgets import hard_lifetime_budget
from tests.support.clock import clear_of_end
from tests.support.databases import connected
from tests.support.waiting import wait_until

CALL = {"job_id": "job-1", "agent": "ACHEEVY", "model": "gemini-3.0-flash"}


@pytest.fixture(autouse=True)
async def clear_of_month_end() -> AsyncIterator[None]:
    """Month budgets: their reservations and the checks that read them share a month."""
    await clear_of_end("month")
    yield


async def budget(client: AsyncTestClient[Any], **fields: Any) -> int:
    body = {"period": "month", "thresholds": [1.0], "hard": True, **fields}
    response = await client.post("/v1/budgets", json=body)
    assert response.status_code == 201, response.text
    budget_id: int = response.json()["id"]
    return budget_id


async def reserve(client: AsyncTestClient[Any], estimate: str) -> Any:
    return await client.post(
        "/v1/budgets/reservations", json={**CALL, "estimated_cost_usd": estimate}
    )


async def four_running_calls(client: AsyncTestClient[Any]) -> list[str]:
    """Four calls of 0.10 admitted under a hard agent budget of 10; their reservation ids."""
    await budget(client, scope="agent", scope_id="ACHEEVY", limit_usd="10")
    held = [await reserve(client, "0.10") for _ in range(4)]
    assert [r.status_code for r in held] == [201] * 4, held[0].text
    return [r.json()["reservation_id"] for r in held]


async def standing(client: AsyncTestClient[Any], budget_id: int) -> tuple[str, str]:
    check = await client.get("/v1/budgets/check", params={"job_id": "job-1"})
    [mine] = [b for b in check.json()["budgets"] if b["id"] == budget_id]
    return mine["reserved_usd"], mine["remaining_usd"]


async def test_a_hard_budget_created_holds_the_calls_its_scope_has_running(
    client: AsyncTestClient[Any],
) -> None:
    running = await four_running_calls(client)
    job = await budget(client, scope="job", scope_id="job-1", limit_usd="0.25")
    assert await standing(client, job) == ("0.4", "-0.15")
    refused = await reserve(client, "0.01")
    assert refused.status_code == 402, refused.text
    assert f"budget {job} (job job-1, month) has -0.15 USD left of 0.25" in refused.text
    # A released call frees its hold in the new budget as in the one it was admitted under.
    released = await client.delete(f"/v1/budgets/reservations/{running[0]}")
    assert released.status_code == 204, released.text
    assert await standing(client, job) == ("0.3", "-0.05")


async def test_a_budget_made_hard_holds_the_calls_its_scope_has_running(
    client: AsyncTestClient[Any],
) -> None:
    job = await budget(client, scope="job", scope_id="job-1", limit_usd="0.25", hard=False)
    await four_running_calls(client)
    assert await standing(client, job) == ("0", "0.25")  # a soft budget holds nothing
    made_hard = await client.patch(f"/v1/budgets/{job}", json={"hard": True})
    assert made_hard.status_code == 200, made_hard.text
    assert await standing(client, job) == ("0.4", "-0.15")
    assert (await reserve(client, "0.01")).status_code == 402
    # Made soft and hard again, it holds each call once.
    for hard in (False, True):
        patched = await client.patch(f"/v1/budgets/{job}", json={"hard": hard})
        assert patched.status_code == 200, patched.text
    assert await standing(client, job) == ("0.4", "-0.15")


async def test_a_new_price_budget_holds_running_calls_at_the_customer_s_price(
    client: AsyncTestClient[Any],
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    assert (await client.patch("/v1/jobs/job-1", json={"customer_id": "acme"})).status_code == 200
    await four_running_calls(client)
    price = await budget(
        client, scope="customer", scope_id="acme", limit_usd="0.60", measure="price"
    )
    # 0.10 at list price is 0.125 at acme's (markup 25 %): four hold 0.50 of 0.60.
    assert await standing(client, price) == ("0.5", "0.1")
    # 0.09 at list price is 0.1125 at acme's: more than the 0.10 left.
    assert (await reserve(client, "0.09")).status_code == 402
    assert (await reserve(client, "0.08")).status_code == 201  # 0.10 at acme's: fits


async def test_a_call_being_admitted_as_the_budget_is_made_is_held_or_judged_by_it(
    db: asyncpg.Connection, database_url: str
) -> None:
    """Six calls wait for the agent budget's lock (as a call being admitted holds it) while
    a hard job budget of 0.25 is created: whichever goes first, the job budget ends up
    holding exactly the calls admitted, and admits no more than its limit."""
    agent = await create_budget(db, hard_lifetime_budget("agent", "ACHEEVY", "10"))
    conns = [await asyncpg.connect(database_url) for _ in range(7)]
    try:
        async with connected(database_url) as holder:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("SELECT id FROM budgets WHERE id = $1 FOR UPDATE", agent.id)
            calls = [
                asyncio.create_task(
                    reservations.reserve(
                        c,
                        job_id="job-1",
                        agent="ACHEEVY",
                        model="anthropic/claude-opus-4.6",
                        estimated_cost_usd=Decimal("0.10"),
                        now=datetime.now(UTC),
                        reservation_seconds=300,
                    )
                )
                for c in conns[:6]
            ]
            making = asyncio.create_task(
                create_budget(conns[6], hard_lifetime_budget("job", "job-1", "0.25"))
            )
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) = 7 FROM pg_stat_activity "
                    "WHERE pid = ANY($1::int[]) AND wait_event_type = 'Lock'",
                    [c.get_server_pid() for c in conns],
                ),
                10,
                "the calls and the new budget to wait for the agent budget",
            )
            await hold.commit()
            results = await asyncio.wait_for(asyncio.gather(*calls), 30)
            job = await asyncio.wait_for(making, 30)
    finally:
        for c in conns:
            await c.close()
    admitted = sum(r.allowed for r in results)
    held = await db.fetchval(
        "SELECT COALESCE(sum(amount_usd), 0) FROM budget_reservations WHERE budget_id = $1",
        job.id,
    )
    assert held == Decimal("0.10") * admitted
    # Those admitted before it are held, however many; those after are judged by it, and
    # fit while 0.25 has room for 0.10: at least two in all, never more once it is full.
    assert 2 <= admitted <= 6, admitted
