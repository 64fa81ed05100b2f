"""A job belongs to at most one customer: the first event naming one sets it (registered
or not: a paid call is never lost), a PATCH changes it (recorded), and an event naming
another customer than its job's is rejected alone with a reason naming both. Two
concurrent batches naming different customers for a new job cannot give it two."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.catalog.service import CatalogCache
from service.recording import service as recording_service
from service.recording.models import ACCEPTED, REJECTED
from service.recording.service import record_batch
from tests.support.databases import connected
from tests.support.events import usage_event, wire_event
from tests.support.ledger_truth import STORED_EVENTS
from tests.support.waiting import until_waiting_for_transaction


def mismatch(job_id: str, owner: str, named: str) -> str:
    return (
        f"customer_id: job {job_id!r} belongs to customer {owner!r}, and this event names "
        f"customer {named!r}; a job has one customer (send its own, or change it with "
        f"PATCH /v1/jobs/{job_id} first)"
    )


async def _batch(client: AsyncTestClient[Any], *events: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/events/batch", json={"events": list(events)})
    assert response.status_code == 200, response.text
    return {r["id"]: (r["status"], r.get("reason")) for r in response.json()["results"]}


async def _job_customer(db: asyncpg.Connection, job_id: str) -> str | None:
    customer: str | None = await db.fetchval(
        "SELECT customer_id FROM jobs WHERE job_id = $1", job_id
    )
    return customer


async def test_the_first_event_naming_a_customer_sets_the_job_s_customer(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # Not registered: the call was paid for, so the event is kept and the job assigned.
    assert await _batch(
        client, wire_event("e-1"), wire_event("e-2", customer_id="acme"), wire_event("e-3")
    ) == {"e-1": ("accepted", None), "e-2": ("accepted", None), "e-3": ("accepted", None)}
    assert await _job_customer(db, "job-1") == "acme"
    assert (await client.get("/v1/jobs/job-1")).json()["customer_id"] == "acme"
    # Later events name it again, or nothing: both belong to acme.
    assert await _batch(client, wire_event("e-4", customer_id="acme"), wire_event("e-5")) == {
        "e-4": ("accepted", None),
        "e-5": ("accepted", None),
    }


async def test_an_event_naming_another_customer_is_rejected_alone_naming_both(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # In one batch: the first naming wins, the second is rejected, the rest recorded.
    assert await _batch(
        client,
        wire_event("e-1", customer_id="acme"),
        wire_event("e-2", customer_id="globex"),
        wire_event("e-3"),
        wire_event("e-4", job_id="job-2", customer_id="globex"),
    ) == {
        "e-1": ("accepted", None),
        "e-2": ("rejected", mismatch("job-1", "acme", "globex")),
        "e-3": ("accepted", None),
        "e-4": ("accepted", None),
    }
    # In a later request, a single event: 422 with the same reason.
    single = await client.post("/v1/events", json=wire_event("e-5", customer_id="globex"))
    assert single.status_code == 422
    assert single.json()["reason"] == mismatch("job-1", "acme", "globex")
    stored = await db.fetch("SELECT event_id FROM event_keys ORDER BY event_id")
    assert [r["event_id"] for r in stored] == ["e-1", "e-3", "e-4"]
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 3
    assert (await _job_customer(db, "job-1"), await _job_customer(db, "job-2")) == (
        "acme",
        "globex",
    )


async def test_an_event_sent_again_after_one_rejected_for_its_customer_is_judged_on_its_own(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    assert await _batch(client, wire_event("own", customer_id="acme")) == {
        "own": ("accepted", None)
    }
    # The first x-1 names another customer and stores nothing; the next x-1s in the same
    # batch are judged as if it had never been sent: one naming globex again is rejected
    # for it, the first of the others is recorded (naming no customer, or acme), and a later
    # different one conflicts with it. They were all rejected with the first one's reason
    # ("names customer 'globex'").
    response = await client.post(
        "/v1/events/batch",
        json={
            "events": [
                wire_event("x-1", customer_id="globex"),
                wire_event("x-1"),
                wire_event("x-1", customer_id="globex"),
                wire_event("x-1", input_tokens=7),
                wire_event("x-2", customer_id="globex"),
                wire_event("x-2", customer_id="acme"),
            ]
        },
    )
    assert response.status_code == 200, response.text
    results = [(r["id"], r["status"]) for r in response.json()["results"]]
    assert results == [
        ("x-1", "rejected"),
        ("x-1", "accepted"),
        ("x-1", "rejected"),
        ("x-1", "conflict"),
        ("x-2", "rejected"),
        ("x-2", "accepted"),
    ]
    reasons = [r.get("reason") for r in response.json()["results"]]
    assert reasons[0] == reasons[2] == reasons[4] == mismatch("job-1", "acme", "globex")
    stored = await db.fetch("SELECT event_id FROM event_keys ORDER BY event_id")
    assert [r["event_id"] for r in stored] == ["own", "x-1", "x-2"]
    entries = await db.fetch(
        "SELECT event_id, input_tokens FROM ledger_entries WHERE event_id LIKE 'x-%' "
        "ORDER BY event_id"
    )
    default_input = wire_event("x-1")["input_tokens"]
    assert [tuple(r) for r in entries] == [("x-1", default_input), ("x-2", default_input)]


async def test_a_patch_sets_and_changes_a_job_s_customer_and_each_change_is_recorded(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    for customer_id in ("acme", "globex"):
        created = await client.post("/v1/customers", json={"id": customer_id, "name": "X"})
        assert created.status_code == 201
    # A job may be given its customer before any usage.
    first = await client.patch("/v1/jobs/job-1", json={"customer_id": "acme"})
    assert first.status_code == 200, first.text
    assert (first.json()["customer_id"], first.json()["customer"]) == ("acme", None)
    assert await _batch(client, wire_event("e-1", customer_id="acme")) == {
        "e-1": ("accepted", None)
    }
    changed = await client.patch(
        "/v1/jobs/job-1", json={"customer_id": "globex", "customer": "Globex Ltd"}
    )
    assert (changed.json()["customer_id"], changed.json()["customer"]) == ("globex", "Globex Ltd")
    # From now on the job is globex's: acme's events are refused, a replay of the event
    # recorded under acme is still a duplicate (it was judged when it came).
    assert await _batch(
        client,
        wire_event("e-1", customer_id="acme"),
        wire_event("e-2", customer_id="acme"),
        wire_event("e-3", customer_id="globex"),
    ) == {
        "e-1": ("duplicate", None),
        "e-2": ("rejected", mismatch("job-1", "globex", "acme")),
        "e-3": ("accepted", None),
    }
    # The same customer again changes nothing and records nothing; null clears it.
    assert (await client.patch("/v1/jobs/job-1", json={"customer_id": "globex"})).status_code == 200
    cleared = await client.patch("/v1/jobs/job-1", json={"customer_id": None})
    assert cleared.json()["customer_id"] is None
    changes = await db.fetch(
        "SELECT customer_before, customer_after FROM job_customer_changes "
        "WHERE job_id = 'job-1' ORDER BY id"
    )
    assert [tuple(r) for r in changes] == [(None, "acme"), ("acme", "globex"), ("globex", None)]
    # Without a customer, the next event naming one sets it again.
    assert await _batch(client, wire_event("e-4", customer_id="acme")) == {
        "e-4": ("accepted", None)
    }
    assert await _job_customer(db, "job-1") == "acme"


async def test_a_patch_naming_a_customer_that_does_not_exist_is_refused(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _batch(client, wire_event("e-1", customer_id="acme"))
    response = await client.patch("/v1/jobs/job-1", json={"customer_id": "initech", "title": "T"})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "customer_id: customer 'initech' does not exist (register it with POST /v1/customers first)"
    )
    # Nothing of the patch is applied.
    row = await db.fetchrow("SELECT customer_id, title FROM jobs WHERE job_id = 'job-1'")
    assert row is not None
    assert tuple(row) == ("acme", None)
    assert await db.fetchval("SELECT count(*) FROM job_customer_changes") == 0


async def test_the_invoice_s_customer_text_and_the_job_s_customer_are_apart(
    client: AsyncTestClient[Any],
) -> None:
    await _batch(client, wire_event("e-1", customer_id="acme"))
    named = await client.patch("/v1/jobs/job-1", json={"customer": "ACME Corporation, Dept. 7"})
    assert (named.json()["customer"], named.json()["customer_id"]) == (
        "ACME Corporation, Dept. 7",
        "acme",
    )
    preview = (await client.get("/v1/jobs/job-1/invoice")).json()
    # acme is not registered: the invoice is addressed by the job's free text, to acme.
    assert preview["customer"] == {
        "id": "acme",
        "name": "ACME Corporation, Dept. 7",
        "address": None,
        "tax_id": None,
    }


# Concurrency ----------------------------------------------------------------------------------


@pytest.fixture
async def writers(database_url: str) -> AsyncIterator[tuple[asyncpg.Connection, ...]]:
    async with connected(database_url) as first, connected(database_url) as second:
        yield first, second


async def test_a_batch_naming_another_customer_waits_for_the_first_and_is_refused(
    writers: tuple[asyncpg.Connection, asyncpg.Connection], db: asyncpg.Connection
) -> None:
    first, second = writers
    cache = CatalogCache()
    acme = [
        usage_event("a-1", job_id="job-new", customer_id="acme"),
        usage_event("a-2", job_id="job-new"),
    ]
    globex = [
        usage_event("g-1", job_id="job-new", customer_id="globex"),
        usage_event("g-2", job_id="job-other", customer_id="globex"),
    ]
    # The first batch is recorded inside a transaction held open: its claim on job-new is
    # not committed yet when the second batch arrives.
    transaction = first.transaction()
    await transaction.start()
    try:
        outcome = await record_batch(
            first, cache, [*acme[:1], usage_event("a-2", job_id="job-new")]
        )
        assert [o.status for o in outcome.results] == [ACCEPTED, ACCEPTED]
        racing = asyncio.ensure_future(record_batch(second, CatalogCache(), globex))
        await until_waiting_for_transaction(
            db, second, "the second batch to wait for the first one's claim on the job"
        )
        assert not racing.done()
    finally:
        await transaction.commit()
    outcome = await racing
    assert [(o.id, o.status, o.reason) for o in outcome.results] == [
        ("g-1", REJECTED, mismatch("job-new", "acme", "globex")),
        ("g-2", ACCEPTED, None),
    ]
    assert await _job_customer(db, "job-new") == "acme"
    stored = await db.fetch("SELECT event_id FROM event_keys ORDER BY event_id")
    assert [r["event_id"] for r in stored] == ["a-1", "a-2", "g-2"]


async def test_concurrent_batches_for_a_new_job_give_it_one_customer(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    customers = ["acme", "globex", "initech", "umbrella"]

    async def send(customer: str) -> dict[str, Any]:
        events = [
            wire_event(f"{customer}-{n}", job_id="job-race", customer_id=customer)
            for n in range(20)
        ]
        return await _batch(client, *events)

    answers = await asyncio.gather(*(send(c) for c in customers))
    owner = await _job_customer(db, "job-race")
    assert owner in customers
    for customer, answer in zip(customers, answers, strict=True):
        expected = (
            ("accepted", None)
            if customer == owner
            else (
                "rejected",
                mismatch("job-race", owner, customer),
            )
        )
        assert set(answer.values()) == {expected}
    stored = await db.fetchval(
        f"SELECT count(*) FROM {STORED_EVENTS} WHERE job_id = 'job-race' AND customer_id = $1",
        owner,
    )
    assert (stored, await db.fetchval("SELECT count(*) FROM event_keys")) == (20, 20)


async def test_two_requests_with_one_id_in_a_group_commit_are_judged_apart(
    writers: tuple[asyncpg.Connection, asyncpg.Connection], db: asyncpg.Connection
) -> None:
    # A group commit records the single events of several requests together: the request
    # naming the job's customer was refused with the other one's reason (a 422, which a
    # gateway does not retry: its paid call lost).
    conn, _ = writers
    cache = CatalogCache()
    owned = await record_batch(conn, cache, [usage_event("own", customer_id="acme")])
    assert [o.status for o in owned.results] == [ACCEPTED]
    outcome = await record_batch(
        conn,
        cache,
        [usage_event("x", customer_id="globex"), usage_event("x", customer_id="acme")],
        one_event_per_request=True,
    )
    assert [(o.status, o.reason) for o in outcome.results] == [
        (REJECTED, mismatch("job-1", "acme", "globex")),
        (ACCEPTED, None),
    ]
    assert await db.fetchval("SELECT count(*) FROM event_keys WHERE event_id = 'x'") == 1


async def test_one_id_sent_many_times_naming_another_customer_takes_one_more_round(
    writers: tuple[asyncpg.Connection, asyncpg.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each copy was recorded again in a round (a transaction) of its own, over the copies
    # left: 5,000 copies took 40 s. Copies naming the job's other customer again are
    # rejected at once; the rest (here the one naming none) take one more round.
    conn, _ = writers
    cache = CatalogCache()
    await record_batch(conn, cache, [usage_event("own", customer_id="acme")])
    rounds = 0
    record = recording_service.record_batch

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal rounds
        rounds += 1
        return await record(*args, **kwargs)

    monkeypatch.setattr(recording_service, "record_batch", counted)
    copies = [usage_event("x", customer_id="globex", input_tokens=n) for n in range(1, 501)]
    outcome = await record(conn, cache, [*copies, usage_event("x")])
    assert [o.status for o in outcome.results] == [REJECTED] * 500 + [ACCEPTED]
    assert {o.reason for o in outcome.results[:500]} == {mismatch("job-1", "acme", "globex")}
    assert rounds == 1
