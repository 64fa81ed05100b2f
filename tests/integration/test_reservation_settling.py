"""Who may settle a reservation. A usage event naming a ``reservation_id`` settles it only
when sent with the key that reserved (or an admin key, or by LUC's own gateway, whose
events carry no key): another ingest key naming it would free the headroom its owner holds
by sending a tiny event. Such an event, and one naming an id LUC never issued, one of
another job, one expired, released or settled already, is recorded all the same (the call
was paid for), and its answer says, in ``warning``, why it settled nothing. Every ingest
path: ``POST /v1/events`` (the group commit), ``/v1/events/batch``, one transaction holding
calls of several keys, and the proxy's spool replayed by a later process.

Costs by hand: Claude Opus 4.6 input tokens at 5.00 USD per 1M (``opus_event``); 0.05 USD
is 10,000 input tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import prune_reservations
from service.auth.keys import create_key
from service.budgets.reservations import prune, reserve
from service.catalog.service import CatalogCache
from service.client.spool import Spool
from service.db import create_pool
from service.recording.service import record_batch
from service.recording.sink import RecordingSink
from service.settings import load_settings
from tests.integration.gateway.test_recording_spool import SwitchedLedger
from tests.support.budgets import OPUS, hard_budget, opus_event
from tests.support.events import usage_event, usage_event_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio

AT = "2026-11-20T12:00:00Z"
NEVER = "00000000-0000-0000-0000-000000000000"


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _reserve(client: Any, job: str, estimate: str, key: str | None = None) -> str:
    body = {"job_id": job, "agent": "ACHEEVY", "model": OPUS, "estimated_cost_usd": estimate}
    made = await client.post(
        "/v1/budgets/reservations", json=body, headers=_as(key) if key else None
    )
    assert made.status_code == 201, made.text
    return str(made.json()["reservation_id"])


async def _held(db: asyncpg.Connection, budget: int) -> tuple[Decimal, Decimal]:
    """(spent, reserved and still holding) of a lifetime budget."""
    row = await db.fetchrow(
        """
        SELECT (SELECT COALESCE(sum(spent_usd), 0) FROM budget_spend WHERE budget_id = $1),
               (SELECT COALESCE(sum(amount_usd), 0) FROM budget_reservations
                WHERE budget_id = $1 AND settled_at IS NULL AND expires_at > now())
        """,
        budget,
    )
    assert row is not None
    return Decimal(row[0]), Decimal(row[1])


def _call(event_id: str, usd: str, job: str, reservation_id: str) -> dict[str, Any]:
    return opus_event(event_id, usd, occurred_at=AT, job_id=job) | {
        "reservation_id": reservation_id
    }


async def _single(client: Any, event: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    answer = await client.post("/v1/events", json=event, headers=_as(key) if key else None)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "accepted"
    return dict(answer.json())


async def _batch(client: Any, event: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    answer = await client.post(
        "/v1/events/batch", json={"events": [event]}, headers=_as(key) if key else None
    )
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["results"]
    assert result["status"] == "accepted", result
    return dict(result)


@pytest.mark.parametrize("send", [_single, _batch], ids=["single", "batch"])
async def test_another_ingest_keys_event_naming_a_reservation_is_recorded_and_settles_nothing(
    client: AsyncTestClient[Any], db: asyncpg.Connection, send: Any
) -> None:
    budget = await hard_budget(db, "job", "job-k", "1.00")
    _, owner = await create_key(db, "gateway", "ingest")
    _, hostile = await create_key(db, "other gateway", "ingest")
    held = await _reserve(client, "job-k", "0.40", owner)

    # A tiny event with the other key: recorded (its spend counts), the hold untouched.
    stolen = await send(client, _call("steal", "0.05", "job-k", held), hostile)
    assert await _held(db, budget) == (Decimal("0.05"), Decimal("0.40"))
    never = await send(client, _call("never", "0.05", "job-k", NEVER), hostile)
    # The answer says why, and tells another key's reservation from no reservation at all
    # no more than DELETE /v1/budgets/reservations/{id} does.
    assert stolen["warning"] == (
        f"reservation_id: {held!r} is no reservation among this key's reservations "
        "(POST /v1/budgets/reservations issues them); the usage is recorded and no "
        "reservation was settled"
    )
    assert stolen["warning"].replace(held, "X") == never["warning"].replace(NEVER, "X")
    assert await _held(db, budget) == (Decimal("0.10"), Decimal("0.40"))

    # The key that reserved settles it, and its answer carries no warning.
    settled = await send(client, _call("own", "0.30", "job-k", held), owner)
    assert "warning" not in settled
    assert await _held(db, budget) == (Decimal("0.40"), Decimal(0))

    # An admin key (the client's) settles any: an operator recording a call by hand.
    again = await _reserve(client, "job-k", "0.20", owner)
    assert "warning" not in await send(client, _call("by-admin", "0.10", "job-k", again))
    assert await _held(db, budget) == (Decimal("0.50"), Decimal(0))


@pytest.mark.parametrize("send", [_single, _batch], ids=["single", "batch"])
async def test_a_hold_an_admin_key_made_is_settled_by_the_calls_usage_whatever_its_key(
    client: AsyncTestClient[Any], db: asyncpg.Connection, send: Any
) -> None:
    # An operator reserves with the admin key, the gateway reports the call with its ingest
    # key: the hold belongs to no gateway, so the call's usage settles it; the ingest key
    # still cannot release it (only the admin key that may release any).
    budget = await hard_budget(db, "job", "job-a", "1.00")
    _, gateway = await create_key(db, "gateway", "ingest")
    held = await _reserve(client, "job-a", "0.40")  # the client's admin key
    released = await client.delete(f"/v1/budgets/reservations/{held}", headers=_as(gateway))
    assert released.status_code == 404, released.text
    assert await _held(db, budget) == (Decimal(0), Decimal("0.40"))

    settled = await send(client, _call("reported", "0.25", "job-a", held), gateway)
    assert "warning" not in settled
    assert await _held(db, budget) == (Decimal("0.25"), Decimal(0))


async def test_an_event_naming_what_it_cannot_settle_is_recorded_with_the_reason(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    budget = await hard_budget(db, "job", "job-w", "1.00")
    other = await hard_budget(db, "job", "job-x", "1.00")
    settles = await _reserve(client, "job-w", "0.10")
    released = await _reserve(client, "job-w", "0.10")
    elsewhere = await _reserve(client, "job-x", "0.10")
    assert (await client.delete(f"/v1/budgets/reservations/{released}")).status_code == 204

    answer = await client.post(
        "/v1/events/batch",
        json={
            "events": [
                _call("w-1", "0.05", "job-w", settles),
                _call("w-2", "0.05", "job-w", settles),  # the same reservation again
                _call("w-3", "0.05", "job-w", released),
                _call("w-4", "0.05", "job-w", elsewhere),  # another job's
                _call("w-5", "0.05", "job-w", "not-a-uuid"),
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 5
    tail = "the usage is recorded and no reservation was settled"
    assert [r.get("warning") for r in results] == [
        None,
        f"reservation_id: reservation {settles} was settled already by another usage event; "
        "this one's spend is counted besides it and settles nothing",
        f"reservation_id: reservation {released} no longer holds anything (it expired, or "
        f"was released); {tail}",
        f"reservation_id: reservation {elsewhere} was made for job 'job-x', not this "
        f"event's job; {tail}",
        "reservation_id: 'not-a-uuid' is no reservation (POST /v1/budgets/reservations "
        f"issues them); {tail}",
    ]
    assert await _held(db, budget) == (Decimal("0.25"), Decimal(0))
    assert await _held(db, other) == (Decimal(0), Decimal("0.10"))

    # The same event again is a duplicate: it settled its reservation when first recorded.
    again = await client.post("/v1/events", json=_call("w-1", "0.05", "job-w", settles))
    assert again.status_code == 200, again.text
    assert again.json() == {"id": "w-1", "status": "duplicate"}
    assert await _held(db, budget) == (Decimal("0.25"), Decimal(0))


async def test_in_one_transaction_the_owners_call_settles_even_after_anothers_naming_it(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # The group commit records the single events of several requests, of several keys, in
    # one transaction: the hostile call first must neither settle the reservation nor keep
    # the owner's call from settling it.
    budget = await hard_budget(db, "job", "job-g", "1.00")
    owner, owner_key = await create_key(db, "gateway", "ingest")
    hostile, _ = await create_key(db, "other gateway", "ingest")
    held = await _reserve(client, "job-g", "0.40", owner_key)
    tokens = {"model": OPUS, "input_tokens": 10_000, "output_tokens": 0, "job_id": "job-g"}
    events = [
        usage_event("g-hostile", **tokens, reservation_id=held, reservation_key=hostile.id),
        usage_event("g-owner", **tokens, reservation_id=held, reservation_key=owner.id),
    ]
    outcome = await record_batch(db, CatalogCache(), events, one_event_per_request=True)
    assert [(r.status, r.warning is None) for r in outcome.results] == [
        ("accepted", False),
        ("accepted", True),
    ]
    assert await _held(db, budget) == (Decimal("0.10"), Decimal(0))


async def test_the_proxys_spooled_usage_replayed_by_a_later_process_settles_its_reservation(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # LUC's own gateway reserves in-process (no key) and its usage carries no key either:
    # the event spooled while PostgreSQL was away still settles the hold once replayed.
    budget = await hard_budget(db, "job", "job-s", "1.00")
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    try:
        async with pool.acquire() as conn:
            made = await reserve(
                conn,
                job_id="job-s",
                agent="ACHEEVY",
                model=OPUS,
                estimated_cost_usd=Decimal("0.40"),
                now=await conn.fetchval("SELECT now()"),
                reservation_seconds=300,
            )
        assert made.reservation_id is not None
        spool = Spool(tmp_path / "spool.sqlite")
        down = SwitchedLedger(pool, cache)
        first = RecordingSink(pool, cache, settings.ingest, record=down, spool=spool)
        event = usage_event_in(
            "s-1",
            job_id="job-s",
            agent="ACHEEVY",
            model=OPUS,
            input_tokens=10_000,
            output_tokens=0,
            reservation_id=made.reservation_id,
        )
        await first.emit(event)
        await first.idle()
        assert await spool.count() == 1
        assert await _held(db, budget) == (Decimal(0), Decimal("0.40"))

        later = RecordingSink(pool, cache, settings.ingest, spool=spool, replay_after_seconds=0.0)
        assert await later.replay_spooled() == 1
        assert await _held(db, budget) == (Decimal("0.05"), Decimal(0))
        await spool.close()
    finally:
        await pool.close()


async def test_pruning_forgets_only_reservations_that_stopped_holding_past_the_retention(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # Settled, expired and released reservations piled up for ever. Pruning (luc serve,
    # every LUC_PARTITION_CHECK_SECONDS) deletes those that stopped holding more than
    # LUC_BUDGET_RESERVATION_RETENTION_SECONDS ago (here 7 days): never one still holding,
    # however old, and nothing a late event could still settle.
    budget = await hard_budget(db, "job", "job-p", "1.00")
    old_open = await _reserve(client, "job-p", "0.10")
    old_settled = await _reserve(client, "job-p", "0.10")
    new_settled = await _reserve(client, "job-p", "0.10")
    old_released = await _reserve(client, "job-p", "0.10")
    new_expired = await _reserve(client, "job-p", "0.10")
    await _batch(client, _call("p-1", "0.05", "job-p", old_settled))
    await _batch(client, _call("p-2", "0.05", "job-p", new_settled))
    assert (await client.delete(f"/v1/budgets/reservations/{old_released}")).status_code == 204
    ago = "UPDATE budget_reservations SET {} WHERE reservation_id = $1::uuid"
    # Made 30 days ago and holding for one more hour (a long hold): it still holds.
    await db.execute(
        ago.format("created_at = now() - interval '30 days', expires_at = now() + interval '1h'"),
        old_open,
    )
    await db.execute(ago.format("settled_at = now() - interval '8 days'"), old_settled)
    await db.execute(ago.format("settled_at = now() - interval '6 days'"), new_settled)
    await db.execute(ago.format("expires_at = now() - interval '8 days'"), old_released)
    await db.execute(ago.format("expires_at = now() - interval '6 days'"), new_expired)
    before = await _held(db, budget)
    assert before == (Decimal("0.10"), Decimal("0.10"))

    assert await prune(db, 7 * 86_400, round_rows=1) == 2  # two rounds, and an empty one
    left = await db.fetch("SELECT reservation_id::text FROM budget_reservations")
    assert sorted(r[0] for r in left) == sorted([old_open, new_settled, new_expired])
    assert await _held(db, budget) == before
    assert await prune(db, 7 * 86_400) == 0

    # The event that settled a pruned reservation, sent again: a duplicate, as before.
    again = await client.post("/v1/events", json=_call("p-1", "0.05", "job-p", old_settled))
    assert again.json() == {"id": "p-1", "status": "duplicate"}
    # A late new event naming it: recorded, settling nothing, as when it was only settled.
    late = await _batch(client, _call("p-3", "0.05", "job-p", old_settled))
    assert late["warning"].startswith(f"reservation_id: {old_settled!r} is no reservation")
    assert await _held(db, budget) == (Decimal("0.15"), Decimal("0.10"))


@pytest.mark.parametrize("path", ["/v1/budgets/reservations", "/v1/budgets/check"])
async def test_an_estimate_with_too_many_places_is_refused_quoting_it_as_sent(
    client: AsyncTestClient[Any], path: str
) -> None:
    # The refusal quoted 0.000…1 (31 places) as 1E-31, an exponent the wire forbids.
    tiny = "0." + "0" * 30 + "1"
    query = {"job_id": "job-t", "agent": "ACHEEVY", "model": OPUS, "estimated_cost_usd": tiny}
    if path.endswith("check"):
        answer = await client.get(path, params=query)
    else:
        answer = await client.post(path, json=query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        f"estimated_cost_usd: {tiny} is out of range (below 10^18 USD, at most 30 decimal places)"
    )


async def test_luc_serves_pruning_task_prunes_each_round(
    client: AsyncTestClient[Any], db: asyncpg.Connection, database_url: str
) -> None:
    # The task luc serve runs every LUC_PARTITION_CHECK_SECONDS, here with no retention.
    await hard_budget(db, "job", "job-l", "1.00")
    released = await _reserve(client, "job-l", "0.10")
    holding = await _reserve(client, "job-l", "0.10")
    assert (await client.delete(f"/v1/budgets/reservations/{released}")).status_code == 204
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    task = asyncio.create_task(prune_reservations(pool, 0, 0.05))
    try:

        async def pruned() -> bool:
            return bool(await db.fetchval("SELECT count(*) = 1 FROM budget_reservations"))

        await wait_until(pruned, 30, "the released reservation pruned")
        left = await db.fetchval("SELECT reservation_id::text FROM budget_reservations")
        assert left == holding
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
