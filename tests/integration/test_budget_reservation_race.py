"""Reservations against a hard budget that appears while they wait for their locks.

A reservation locks the hard budgets it found, then reads their standing. A hard budget
created (or made hard) after that first look but before the read is still in the standing,
so the reservation holds its estimate against it; unless it locked that budget too, two
such reservations read the same standing side by side and together promise more than its
limit (SPEC §6: hard budgets admit only what fits; reservations are how they do it).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from service.budgets import reservations
from service.budgets.models import Budget, CheckResult
from service.budgets.service import BudgetChanges, create_budget, update_budget
from tests.support.budgets import hard_lifetime_budget
from tests.support.databases import connected
from tests.support.waiting import wait_until


@pytest.mark.parametrize("appears", ["created", "made hard"])
async def test_a_hard_budget_appearing_while_reservations_wait_is_never_promised_twice(
    db: asyncpg.Connection, database_url: str, appears: str
) -> None:
    # Two calls of one job by two agents, each agent with a hard budget of ample room:
    # their reservations lock different budgets, so nothing else makes them take turns.
    first = await create_budget(db, hard_lifetime_budget("agent", "agent-1", "10"))
    second = await create_budget(db, hard_lifetime_budget("agent", "agent-2", "10"))
    if appears == "made hard":
        soft = await create_budget(
            db, replace(hard_lifetime_budget("job", "job-1", "0.01"), hard=False)
        )
    async with (
        connected(database_url) as holder,
        connected(database_url) as one,
        connected(database_url) as two,
    ):
        # Hold both agent budgets, so that both reservations wait at their lock, after
        # their first look at which budgets apply.
        hold = holder.transaction()
        await hold.start()
        await holder.execute(
            "SELECT id FROM budgets WHERE id = ANY($1::bigint[]) FOR UPDATE",
            [first.id, second.id],
        )

        def reserve(conn: asyncpg.Connection, agent: str) -> asyncio.Task[CheckResult]:
            return asyncio.create_task(
                reservations.reserve(
                    conn,
                    job_id="job-1",
                    agent=agent,
                    model="anthropic/claude-opus-4.6",
                    estimated_cost_usd=Decimal("0.008"),
                    now=datetime.now(UTC),
                    reservation_seconds=300,
                )
            )

        calls = [reserve(one, "agent-1"), reserve(two, "agent-2")]
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) = 2 FROM pg_stat_activity "
                "WHERE pid = ANY($1::int[]) AND wait_event_type = 'Lock'",
                [one.get_server_pid(), two.get_server_pid()],
            ),
            10,
            "both reservations to wait for their agent budget",
        )

        # The job's hard budget: room for one of the two calls (0.008 + 0.008 > 0.01). It
        # joins the calls already admitted in its scope (``budgets.holds``), so it waits for
        # those being admitted: it cannot appear between their look and their lock here.
        async def appearing() -> Budget:
            if appears == "created":
                return await create_budget(db, hard_lifetime_budget("job", "job-1", "0.01"))
            made_hard = BudgetChanges(hard=True)
            return (await update_budget(db, soft.id, made_hard, datetime.now(UTC)))[0]

        made = asyncio.create_task(appearing())
        await hold.commit()
        results = await asyncio.wait_for(asyncio.gather(*calls), 10)
        job = await asyncio.wait_for(made, 10)

    # Either each call was admitted before the budget and is held by it, or one was judged
    # by it after the other: it holds exactly what was admitted, never a call unheld.
    admitted = [r for r in results if r.allowed]
    held = await db.fetchval(
        "SELECT sum(amount_usd) FROM budget_reservations WHERE budget_id = $1", job.id
    )
    assert held == Decimal("0.008") * len(admitted)
    assert len(admitted) >= 1
