"""A large batch is priced and staged before its jobs are locked (service.recording.early),
so that another batch holding those jobs does not wait for its pricing. The prices stand
only if the job's customer and plan, and the catalog, are still what they were priced
with once the jobs are locked; otherwise the batch is priced again under the locks.

Every event here is ``CALL``: google/gemini-3.0-flash, 1,000 input and 500 output tokens,
0.10 and 0.40 USD per 1M, a cost of 0.0001 + 0.0002 = 0.0003 USD. The plan doubles the
catalog's cost (markup 1): 0.0006 USD for acme's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

import service.recording.service as recording
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.ledger.queries import STAGED_NAMES
from service.ledger.service import INLINE_LIMIT
from service.recording.early import EarlyPricing, price_and_stage, price_early
from service.recording.models import ACCEPTED
from service.recording.service import record_batch
from tests.support.databases import connected
from tests.support.events import customer_on_plan, usage_event, wire_event
from tests.support.waiting import until_waiting_for_transaction

COST = Decimal("0.0003")
ACME_PRICE = Decimal("0.0006")
LARGE = INLINE_LIMIT + 8  # staged with COPY, priced early


@pytest.fixture
async def writers(database_url: str) -> AsyncIterator[tuple[asyncpg.Connection, ...]]:
    async with connected(database_url) as first, connected(database_url) as second:
        yield first, second


@pytest.fixture
async def acme(client: AsyncTestClient[Any]) -> None:
    """Customer acme on a plan that doubles the catalog's cost."""
    plan = {
        "id": "double",
        "name": "Double",
        "effective_from": "2026-11-01T00:00:00Z",
        "basis": "catalog",
        "markup": "1",
    }
    await customer_on_plan(client, "acme", plan)


@pytest.fixture
def early_seen(monkeypatch: pytest.MonkeyPatch) -> list[EarlyPricing | None]:
    """What each batch's early pricing assumed (None: it was not priced early)."""
    seen: list[EarlyPricing | None] = []
    original = price_early  # what service.recording.service calls, replaced below

    async def spy(*args: Any) -> EarlyPricing | None:
        early = await original(*args)
        seen.append(early)
        return early

    monkeypatch.setattr(recording, "price_early", spy)
    return seen


async def _entries(db: asyncpg.Connection, prefix: str) -> set[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT customer_id, cost_usd, price_usd FROM ledger_entries WHERE event_id LIKE $1",
        f"{prefix}%",
    )
    return {tuple(r) for r in rows}


async def test_a_batch_priced_before_its_job_got_a_customer_is_priced_again_for_it(
    acme: None,
    writers: tuple[asyncpg.Connection, asyncpg.Connection],
    db: asyncpg.Connection,
    early_seen: list[EarlyPricing | None],
) -> None:
    first, second = writers
    # The first batch gives job-r its first customer inside a transaction held open: the
    # second batch looks before that commits, prices its events for no customer, then
    # waits for the job's row.
    transaction = first.transaction()
    await transaction.start()
    try:
        claim = await record_batch(
            first,
            CatalogCache(),
            [usage_event("claim", job_id="job-r", customer_id="acme")],
            plan_cache=PlanCache(),
        )
        assert [o.status for o in claim.results] == [ACCEPTED]
        events = [usage_event(f"late-{n:02d}", job_id="job-r") for n in range(LARGE)]
        racing = asyncio.ensure_future(
            record_batch(second, CatalogCache(), events, plan_cache=PlanCache())
        )
        await until_waiting_for_transaction(
            db, second, "the second batch to wait for the first one's claim on the job"
        )
    finally:
        await transaction.commit()
    outcome = await racing
    assert {o.status for o in outcome.results} == {ACCEPTED}
    # It was priced early for the job as it stood: no customer, the catalog's cost ...
    [early] = early_seen  # the first batch ran inside a longer transaction: never early
    assert early is not None
    prices = {row[STAGED_NAMES.index("price_usd")] for row in early.priced.staged}
    assert (early.jobs["job-r"].customer_id, prices) == (None, {str(COST)})
    # ... and what is on the ledger is priced for acme, as the locked row says.
    assert await _entries(db, "late-") == {("acme", COST, ACME_PRICE)}
    assert await _entries(db, "claim") == {("acme", COST, ACME_PRICE)}


async def test_a_batch_whose_job_s_customer_stood_still_keeps_its_early_prices(
    acme: None,
    client: AsyncTestClient[Any],
    db: asyncpg.Connection,
    early_seen: list[EarlyPricing | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patched = await client.patch("/v1/jobs/job-s", json={"customer_id": "acme"})
    assert patched.status_code == 200, patched.text
    priced_again: list[int] = []
    original = price_and_stage  # what service.recording.service calls, replaced below

    async def counting(*args: Any, **kwargs: Any) -> Any:
        priced_again.append(len(args[4]))
        return await original(*args, **kwargs)

    monkeypatch.setattr(recording, "price_and_stage", counting)
    events = [wire_event(f"still-{n:02d}", job_id="job-s") for n in range(LARGE)]
    answer = await client.post("/v1/events/batch", json={"events": events})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == LARGE
    [early] = early_seen
    assert early is not None and early.jobs["job-s"].customer_id == "acme"
    assert priced_again == []  # the early prices were kept
    assert await _entries(db, "still-") == {("acme", COST, ACME_PRICE)}


async def test_a_large_batch_naming_customers_is_judged_under_the_lock(
    acme: None,
    client: AsyncTestClient[Any],
    db: asyncpg.Connection,
    early_seen: list[EarlyPricing | None],
) -> None:
    # Events naming a customer for a job without one (a claim), and for a job that has
    # another (a rejection): neither is decided on a look before the lock.
    patched = await client.patch("/v1/jobs/job-g", json={"customer_id": "acme"})
    assert patched.status_code == 200, patched.text
    claiming = [
        wire_event(f"named-{n:02d}", job_id="job-n", customer_id="acme") for n in range(LARGE)
    ]
    other = [wire_event(f"other-{n}", job_id="job-g", customer_id="globex") for n in range(2)]
    answer = await client.post("/v1/events/batch", json={"events": claiming + other})
    assert answer.status_code == 200, answer.text
    statuses = {r["id"]: r["status"] for r in answer.json()["results"]}
    assert statuses == {e["id"]: "accepted" for e in claiming} | {
        e["id"]: "rejected" for e in other
    }
    assert early_seen == [None]
    assert await _entries(db, "named-") == {("acme", COST, ACME_PRICE)}
    assert await _entries(db, "other-") == set()
