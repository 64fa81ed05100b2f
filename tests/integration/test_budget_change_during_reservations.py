"""A budget deleted, lowered or made soft while reservations wait for it: each waiting
reservation is judged by the budget as it stands once it gets its turn, nothing deadlocks,
and what is held is exactly what the answers say was held.

Six calls of 0.10 against a hard lifetime budget of 1.00 wait on its row (another
transaction holds it), then the change is made and the row let go.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from service.budgets import reservations
from service.budgets.models import CheckResult
from service.budgets.service import BudgetChanges, create_budget, delete_budget, update_budget
from tests.support.budgets import hard_lifetime_budget
from tests.support.databases import connected
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio

CALLS = 6


async def _reserve(conn: asyncpg.Connection) -> CheckResult:
    return await reservations.reserve(
        conn,
        job_id="job-1",
        agent="ACHEEVY",
        model="anthropic/claude-opus-4.6",
        estimated_cost_usd=Decimal("0.10"),
        now=datetime.now(UTC),
        reservation_seconds=300,
    )


@pytest.mark.parametrize("change", ["deleted", "lowered", "made soft"])
async def test_a_budget_changed_while_reservations_wait_is_judged_as_it_stands(
    db: asyncpg.Connection, database_url: str, change: str
) -> None:
    budget = await create_budget(db, hard_lifetime_budget("job", "job-1", "1.00"))
    conns = [await asyncpg.connect(database_url) for _ in range(CALLS + 1)]
    try:
        async with connected(database_url) as holder:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("SELECT id FROM budgets WHERE id = $1 FOR UPDATE", budget.id)
            calls = [asyncio.create_task(_reserve(c)) for c in conns[:CALLS]]
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) = $2 FROM pg_stat_activity "
                    "WHERE pid = ANY($1::int[]) AND wait_event_type = 'Lock'",
                    [c.get_server_pid() for c in conns[:CALLS]],
                    CALLS,
                ),
                10,
                "every reservation to wait for the budget",
            )
            now = datetime.now(UTC)
            changer = conns[CALLS]
            changing: asyncio.Task[object]
            if change == "deleted":
                changing = asyncio.create_task(delete_budget(changer, budget.id))
            elif change == "lowered":
                changing = asyncio.create_task(
                    update_budget(changer, budget.id, BudgetChanges(limit_usd=Decimal("0.25")), now)
                )
            else:
                changing = asyncio.create_task(
                    update_budget(changer, budget.id, BudgetChanges(hard=False), now)
                )
            await hold.commit()
            results = await asyncio.wait_for(asyncio.gather(*calls, changing), 30)
    finally:
        for c in conns:
            await c.close()

    answers: list[CheckResult] = [r for r in results[:CALLS] if isinstance(r, CheckResult)]
    held_ids = {r.reservation_id for r in answers if r.reservation_id is not None}
    rows = await db.fetch(
        "SELECT reservation_id, amount_usd FROM budget_reservations WHERE budget_id = $1",
        budget.id,
    )
    # What is held is what the answers said was held, 0.10 each, never more than fits.
    assert {str(r["reservation_id"]) for r in rows} == held_ids
    assert all(r["amount_usd"] == Decimal("0.10") for r in rows)
    admitted = [r for r in answers if r.allowed]
    if change == "lowered":
        # Those after the change fill 0.25 at most; before it, each of the six fitted 1.00.
        assert 2 <= len(admitted) <= CALLS
        assert len(held_ids) == len(admitted)
        after = await _reserve(db)
        assert after.allowed is False  # 0.20 or more of 0.25 is held
    else:
        # Deleted or soft: every call goes ahead, held only by those judged before it.
        assert len(admitted) == CALLS
        after = await _reserve(db)
        assert (after.allowed, after.reservation_id) == (True, None)
