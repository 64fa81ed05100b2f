"""``DatabaseLookup``: admission reads the catalog and whether a hard budget may apply in
one round trip, and stays exact as the two separate look-ups were. What changes in the
database between two calls (a budget, a catalog version, made by another connection as
another worker or replica would) decides the very next call.

By hand, the prompt "What is the capital of France?" (30 characters) is estimated at 8
tokens; with ``max_tokens`` 1000 a call is estimated at 8·0.10 + 1000·0.40 = 400.8 per 1M =
0.0004008 USD on Gemini 3.0 Flash, and at 8·1.25 + 1000·10.00 = 10,010 per 1M = 0.01001
on Gemini 3 Pro (preview).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from service.catalog.service import create_version, derive_version, load_catalog
from service.errors import BudgetExceededError
from service.gateway.metering import Gateway
from service.gateway.openrouter import OpenRouterProvider
from tests.support.budgets import hard_budget
from tests.support.fake_openrouter import FakeOpenRouter, Reply, usage

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
PRO = "google/gemini-3-pro-preview"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


async def _alias(db: asyncpg.Connection, alias: str, target: str) -> None:
    """A new catalog version, in force from a minute ago, where ``alias`` names ``target``."""
    when = datetime.now(UTC) - timedelta(minutes=1)
    parent = (await load_catalog(db)).version_at(when)
    async with db.transaction():
        await create_version(
            db,
            derive_version(
                parent,
                effective_from=when,
                label=f"{alias} is {target}",
                models=[],
                remove=[],
                aliases={alias: target},
                default_model=None,
            ),
        )


def _answer() -> Reply:
    return Reply(text="Paris.", usage=usage(100, 20))


async def test_a_hard_budget_made_elsewhere_refuses_the_very_next_call(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    gateway = make_gateway(openrouter)
    fake_openrouter.push(_answer(), _answer())
    await gateway.chat(model=FLASH, messages=HELLO, job_id="job-l", agent="A", max_tokens=1000)

    # No time passes, no cache expires: the budget is committed, so the next call sees it.
    await hard_budget(db, "job", "job-l", "0.0004")  # below the estimate of 0.0004008
    with pytest.raises(BudgetExceededError, match="budget exhausted"):
        await gateway.chat(model=FLASH, messages=HELLO, job_id="job-l", agent="A", max_tokens=1000)
    assert len(fake_openrouter.chat_calls()) == 1


async def test_an_alias_moved_by_a_new_catalog_version_is_judged_under_its_new_models_budget(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    await _alias(db, "house-model", FLASH)
    # Room for a Flash call's 0.0004008, none for a Pro call's 0.01001.
    await hard_budget(db, "model", PRO, "0.005")
    gateway = make_gateway(openrouter)
    fake_openrouter.push(_answer(), _answer())
    first = await gateway.chat(
        model="house-model", messages=HELLO, job_id="job-a", agent="A", max_tokens=1000
    )
    assert first.model == FLASH  # no hard budget on Flash: nothing was held

    # The gateway's cached catalog still says house-model is Flash; the look-up asks about
    # Flash, learns from the same answer that the catalog changed, and asks again about Pro.
    await _alias(db, "house-model", PRO)
    with pytest.raises(BudgetExceededError, match="budget exhausted"):
        await gateway.chat(
            model="house-model", messages=HELLO, job_id="job-a", agent="A", max_tokens=1000
        )
    assert len(fake_openrouter.chat_calls()) == 1
    # And a Flash call under the same budget's eyes still goes through.
    await gateway.chat(model=FLASH, messages=HELLO, job_id="job-a", agent="A", max_tokens=1000)
    assert len(fake_openrouter.chat_calls()) == 2
