"""Large batches (priced before their jobs are locked) race with changes of their jobs'
customers: whatever the interleaving, each job's entries must end priced for the customer
the job ends with (a change re-prices what was recorded before it, SPEC §11), and every
rollup must equal the ledger. Each job changes customer once, while batches are in flight,
so that no later change re-prices what a batch got wrong. (Which interleavings happen is up
to the scheduler: ``test_batch_priced_before_locks`` holds the one that needs the check.)

Every event is ``CALL``: a catalog cost of 0.0003 USD. acme's plan doubles it (0.0006),
globex's triples it (0.0009).
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.ledger.service import INLINE_LIMIT
from tests.support.events import customer_on_plan, wire_event
from tests.support.ledger_truth import rollup_differences

COST = Decimal("0.0003")
PRICE = {"globex": COST * 3}
JOBS = [f"job-{n}" for n in range(4)]
BATCH, SENDERS, SENDS = 5 * INLINE_LIMIT, 4, 5


def _plan(plan_id: str, markup: str) -> dict[str, Any]:
    return {
        "id": plan_id,
        "name": plan_id.title(),
        "effective_from": "2026-11-01T00:00:00Z",
        "basis": "catalog",
        "markup": markup,
    }


async def test_each_job_ends_priced_for_its_last_customer(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await customer_on_plan(client, "acme", _plan("double", "1"))
    await customer_on_plan(client, "globex", _plan("triple", "2"))
    for job_id in JOBS:
        patched = await client.patch(f"/v1/jobs/{job_id}", json={"customer_id": "acme"})
        assert patched.status_code == 200, patched.text
    numbers = itertools.count()

    sent = 0
    recorded = asyncio.Condition()

    async def sender(batches: int) -> None:
        nonlocal sent
        for _ in range(batches):
            events = [
                wire_event(f"e-{next(numbers):05d}", job_id=JOBS[n % len(JOBS)])
                for n in range(BATCH)
            ]
            answer = await client.post("/v1/events/batch", json={"events": events})
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(events), answer.text
            async with recorded:
                sent += 1
                recorded.notify_all()

    async def switcher() -> None:
        # One job after another goes to globex, each once batches have been recorded.
        for n, job_id in enumerate(JOBS):
            due = 2 + 3 * n

            def reached(due: int = due) -> bool:
                return sent >= due

            async with recorded:
                await recorded.wait_for(reached)
            patched = await client.patch(f"/v1/jobs/{job_id}", json={"customer_id": "globex"})
            assert patched.status_code == 200, patched.text

    await asyncio.gather(*(sender(SENDS) for _ in range(SENDERS)), switcher())

    rows = await db.fetch(
        """
        SELECT j.job_id, j.customer_id, sum(l.price_usd) AS price, sum(l.event_count) AS events
        FROM jobs AS j JOIN ledger_entries AS l USING (job_id)
        GROUP BY j.job_id, j.customer_id ORDER BY j.job_id
        """
    )
    assert sum(r["events"] for r in rows) == BATCH * SENDERS * SENDS
    assert {r["customer_id"] for r in rows} == {"globex"}
    for r in rows:
        assert r["price"] == r["events"] * PRICE[r["customer_id"]], dict(r)
    assert await rollup_differences(db) == {}
