"""A call is admitted at one instant: the one its usage event is dated with is the one its
budgets are judged and held at. Read twice (the gateway's clock for the event, the
reservation's own clock a few round trips later), a call admitted in the last moment of a
UTC day was judged against the next day's empty budget, and spent in the day it had
already exhausted.

The gateway's clock is pinned to the last millisecond of yesterday (UTC); the reservation's
reading, a moment later in the test, is today: the two readings of a midnight, far apart.

By hand (Gemini 3.0 Flash, 0.10 / 0.40 USD per 1M): the prompt "What is the capital of
France?" is estimated at 8 tokens, and with ``max_tokens`` 1000 a call at 8·0.10 +
1000·0.40 = 400.8 per 1M = 0.0004008; the day's earlier call (1,000 in, 500 out) cost
100 + 200 = 300 per 1M = 0.0003. Against a hard day limit of 0.0005: 0.0003 + 0.0004008 =
0.0007008 is over it (refused); today's 0 + 0.0004008 is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from service.budgets.service import create_budget
from service.catalog.service import CatalogCache
from service.errors import BudgetExceededError
from service.gateway.metering import Gateway
from service.gateway.openrouter import OpenRouterProvider
from service.recording.service import record_batch
from tests.support.budgets import hard_lifetime_budget
from tests.support.clock import clear_of_end, day_start
from tests.support.events import usage_event
from tests.support.fake_openrouter import FakeOpenRouter, Reply, usage

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


async def test_a_call_admitted_in_a_day_s_last_moment_is_judged_and_held_in_that_day(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    today = day_start(await clear_of_end("day"))  # "yesterday" stays yesterday throughout
    last_moment = today - timedelta(milliseconds=1)
    day = replace(hard_lifetime_budget("job", "job-n", "0.0005"), period="day")
    budget_id = (await create_budget(db, day)).id
    earlier = last_moment - timedelta(hours=12)
    await record_batch(
        db, CatalogCache(), [usage_event("n-0", job_id="job-n", occurred_at=earlier)]
    )
    fake_openrouter.push(Reply(text="Paris.", usage=usage(100, 20)))
    gateway = make_gateway(openrouter)
    gateway.clock = lambda: last_moment

    with pytest.raises(BudgetExceededError, match="budget exhausted"):
        await gateway.chat(model=FLASH, messages=HELLO, job_id="job-n", agent="A", max_tokens=1000)

    assert fake_openrouter.chat_calls() == []  # never went upstream
    spent = await db.fetch(
        "SELECT period_start, spent_usd FROM budget_spend WHERE budget_id = $1 ORDER BY 1",
        budget_id,
    )
    assert [(r["period_start"], str(r["spent_usd"])) for r in spent] == [
        (day_start(last_moment), "0.0003")
    ]
    held = await db.fetchval("SELECT count(*) FROM budget_reservations")
    assert held == 0
