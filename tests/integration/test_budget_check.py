"""Admission under budgets. ``GET /v1/budgets/check`` only looks; ``POST
/v1/budgets/reservations`` holds a call's estimate against its hard budgets, atomically,
so parallel calls cannot overshoot. A reservation ends when a usage event naming its
``reservation_id`` arrives, or when it expires: usage without a reservation id never
releases headroom that another call holds. Soft budgets only report.

Costs by hand: Claude Opus 4.6 input tokens at 5.00 USD per 1M (``opus_event``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.auth.keys import create_key
from tests.support.budgets import OPUS, opus_event
from tests.support.events import wire_event
from tests.support.ledger_truth import STORED_EVENTS
from tests.support.settings import settings_for

AT = "2026-11-20T12:00:00Z"


async def _hard_budget(client: Any, job: str, limit: str) -> int:
    response = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": job,
            "period": "lifetime",
            "limit_usd": limit,
            "hard": True,
        },
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _check(client: Any, job: str, estimate: str | None = None) -> dict[str, Any]:
    params = {"job_id": job, "agent": "ACHEEVY", "model": OPUS}
    if estimate is not None:
        params["estimated_cost_usd"] = estimate
    response = await client.get("/v1/budgets/check", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _reserve(
    client: Any, job: str, estimate: str, expect: int = 201, model: str = OPUS
) -> dict[str, Any]:
    body = {"job_id": job, "agent": "ACHEEVY", "model": model, "estimated_cost_usd": estimate}
    response = await client.post("/v1/budgets/reservations", json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def _held(client: Any, job: str) -> tuple[Decimal, Decimal]:
    """(spent, reserved) of the job's one budget."""
    [standing] = (await _check(client, job))["budgets"]
    return Decimal(standing["spent_usd"]), Decimal(standing["reserved_usd"])


async def _record(client: Any, event: dict[str, Any], status: str = "accepted") -> None:
    response = await client.post("/v1/events/batch", json={"events": [event]})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] == status, result


def _call(event_id: str, usd: str, job: str, reservation_id: str | None) -> dict[str, Any]:
    """A usage event of ``usd`` on ``job``, naming ``reservation_id`` when given."""
    event = opus_event(event_id, usd, occurred_at=AT, job_id=job)
    if reservation_id is not None:
        event["reservation_id"] = reservation_id
    return event


@pytest.mark.slow
def test_twenty_concurrent_reservations_against_room_for_five_calls_admit_exactly_five(
    server_factory: Any,
) -> None:
    server = server_factory()
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        budget = http.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-hard",
                "period": "day",
                "limit_usd": "1.00",
                "hard": True,
            },
        ).json()
    body = {
        "job_id": "job-hard",
        "agent": "ACHEEVY",
        "model": OPUS,
        "estimated_cost_usd": "0.20",
    }
    gate = threading.Barrier(20)

    def reserve(_: int) -> tuple[int, dict[str, Any]]:
        with httpx.Client(base_url=server.base_url, timeout=60) as own:
            own.get("/readyz")  # connected before the gate opens
            gate.wait()
            response = own.post("/v1/budgets/reservations", json=body)
            return response.status_code, dict(response.json())

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(reserve, range(20)))

    admitted = [a for status, a in answers if status == 201]
    refused = [a for status, a in answers if status == 402]
    # 1.00 / 0.20 = 5 calls fit.
    assert (len(admitted), len(refused)) == (5, 15)
    assert len({a["reservation_id"] for a in admitted}) == 5
    for a in admitted:
        assert a["allowed"] is True
        assert a["reason"] is None
    # Each admitted call saw the reservations of those before it: what remained after its
    # own was 0.80, 0.60, 0.40, 0.20 and 0, once each.
    assert sorted(Decimal(a["remaining_usd"]) for a in admitted) == [
        Decimal("0"),
        Decimal("0.20"),
        Decimal("0.40"),
        Decimal("0.60"),
        Decimal("0.80"),
    ]
    for a in refused:
        assert a["allowed"] is False
        assert a["reservation_id"] is None
        assert Decimal(a["remaining_usd"]) == 0
        assert f"budget {budget['id']}" in a["reason"]

    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        after = http.get("/v1/budgets/check", params={"job_id": "job-hard"}).json()
    assert after["allowed"] is False  # everything is promised
    [standing] = after["budgets"]
    assert Decimal(standing["reserved_usd"]) == Decimal("1.00")
    assert Decimal(standing["spent_usd"]) == 0
    assert Decimal(standing["remaining_usd"]) == 0


async def test_a_check_only_looks_and_reserves_nothing(client: AsyncTestClient[Any]) -> None:
    await _hard_budget(client, "job-look", "0.50")
    for _ in range(5):
        looked = await _check(client, "job-look", "0.40")
        assert looked["allowed"] is True
        assert Decimal(looked["remaining_usd"]) == Decimal("0.50")
        assert "reservation_id" not in looked
    assert await _held(client, "job-look") == (Decimal(0), Decimal(0))
    # A reservation holds; the look then sees it and holds nothing more.
    await _reserve(client, "job-look", "0.40")
    refused = await _check(client, "job-look", "0.40")
    assert refused["allowed"] is False
    assert await _held(client, "job-look") == (Decimal(0), Decimal("0.40"))


async def test_unreserved_usage_never_frees_headroom_another_call_holds(
    client: AsyncTestClient[Any],
) -> None:
    limit = Decimal("1.00")
    await _hard_budget(client, "job-o", "1.00")

    async def promised() -> Decimal:
        spent, reserved = await _held(client, "job-o")
        assert spent + reserved <= limit, (spent, reserved)
        return spent + reserved

    held = [(await _reserve(client, "job-o", "0.25"))["reservation_id"] for _ in range(3)]
    assert await promised() == Decimal("0.75")
    # Four tiny calls arrive that reserved nothing: they add spend, and release nothing.
    for n in range(4):
        await _record(client, _call(f"tiny-{n}", "0.01", "job-o", None))
        await promised()
    assert await _held(client, "job-o") == (Decimal("0.04"), Decimal("0.75"))
    # 1.00 − 0.04 − 0.75 = 0.21 left: 0.25 is refused, 0.21 fits exactly, then nothing does.
    refused = await _reserve(client, "job-o", "0.25", expect=402)
    assert Decimal(refused["remaining_usd"]) == Decimal("0.21")
    held.append((await _reserve(client, "job-o", "0.21"))["reservation_id"])
    assert await promised() == limit
    await _reserve(client, "job-o", "0.01", expect=402)

    # The admitted calls arrive, each naming its reservation and costing its estimate:
    # the spend ends exactly at the limit.
    for n, (reservation, usd) in enumerate(
        zip(held, ["0.25", "0.25", "0.25", "0.21"], strict=True)
    ):
        await _record(client, _call(f"call-{n}", usd, "job-o", reservation))
        await promised()
    assert await _held(client, "job-o") == (limit, Decimal(0))


async def test_the_reviewed_overshoot_stops_at_the_unreserved_usage(
    client: AsyncTestClient[Any],
) -> None:
    # The review's story: a 1.00 hard budget, four reservations of 0.25, four unreserved
    # tiny calls, then three more reservations. They used to be admitted (the tiny calls
    # settled the four reservations) and the budget ended at 2.00; now they are refused.
    await _hard_budget(client, "job-r", "1.00")
    held = [(await _reserve(client, "job-r", "0.25"))["reservation_id"] for _ in range(4)]
    for n in range(4):
        await _record(client, _call(f"tiny-{n}", "0.01", "job-r", None))
    assert await _held(client, "job-r") == (Decimal("0.04"), Decimal("1.00"))
    for _ in range(3):
        await _reserve(client, "job-r", "0.25", expect=402)
    for n, reservation in enumerate(held):
        await _record(client, _call(f"call-{n}", "0.25", "job-r", reservation))
    # What no gate can stop (usage that never asked) is all it went over by.
    assert await _held(client, "job-r") == (Decimal("1.04"), Decimal(0))


async def test_a_usage_event_settles_exactly_the_reservation_it_names(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _hard_budget(client, "job-s", "1.00")
    first = (await _reserve(client, "job-s", "0.20"))["reservation_id"]
    second = (await _reserve(client, "job-s", "0.30"))["reservation_id"]
    assert await _held(client, "job-s") == (Decimal(0), Decimal("0.50"))

    # Another job's call naming the first reservation releases nothing of job-s.
    await _record(client, _call("other-1", "0.05", "job-other", first))
    # Nor does a call of job-s without a reservation (the old rule: the oldest was taken).
    await _record(client, _call("bare-1", "0.05", "job-s", None))
    assert await _held(client, "job-s") == (Decimal("0.05"), Decimal("0.50"))

    # The second call arrives, costing 0.10: its 0.30 gives way to 0.10 spent; the first
    # reservation, older, still holds.
    await _record(client, _call("s-2", "0.10", "job-s", second))
    assert await _held(client, "job-s") == (Decimal("0.15"), Decimal("0.20"))
    settled = await db.fetch(
        "SELECT reservation_id::text AS id, settled_at IS NOT NULL AS settled"
        " FROM budget_reservations ORDER BY created_at"
    )
    assert [(r["id"], r["settled"]) for r in settled] == [(first, False), (second, True)]
    stored = await db.fetchval(f"SELECT reservation_id FROM {STORED_EVENTS} WHERE event_id = 's-2'")
    assert stored == second

    # Replayed as it was: a duplicate, settling nothing more. Replayed naming another
    # reservation: a conflict that names the field, and the first reservation still holds.
    await _record(client, _call("s-2", "0.10", "job-s", second), "duplicate")
    response = await client.post(
        "/v1/events/batch", json={"events": [_call("s-2", "0.10", "job-s", first)]}
    )
    [result] = response.json()["results"]
    assert result["status"] == "conflict"
    assert "reservation_id" in result["reason"]
    assert await _held(client, "job-s") == (Decimal("0.15"), Decimal("0.20"))

    # A call naming the first, a second time: the second event settles nothing more.
    await _record(client, _call("s-1", "0.20", "job-s", first))
    await _record(client, _call("s-1b", "0.01", "job-s", first))
    assert await _held(client, "job-s") == (Decimal("0.36"), Decimal(0))


async def test_a_reservation_id_luc_does_not_hold_settles_nothing_and_the_usage_is_kept(
    client: AsyncTestClient[Any],
) -> None:
    await _hard_budget(client, "job-u", "1.00")
    await _reserve(client, "job-u", "0.40")
    for n, unknown in enumerate(["not-a-uuid", "00000000-0000-4000-8000-000000000000", "x" * 128]):
        await _record(client, _call(f"u-{n}", "0.10", "job-u", unknown))
    assert await _held(client, "job-u") == (Decimal("0.30"), Decimal("0.40"))
    # Malformed like any other field: empty, over 128 characters, not a string.
    for bad in ("", "x" * 129, 42):
        event = _call("u-bad", "0.10", "job-u", None) | {"reservation_id": bad}
        await _record(client, event, "rejected")


async def test_a_reservation_made_with_a_model_alias_is_settled_by_its_call(
    client: AsyncTestClient[Any],
) -> None:
    await _hard_budget(client, "job-alias", "1.00")
    # gemini-3.0-flash is an alias of google/gemini-3.0-flash.
    made = await _reserve(client, "job-alias", "0.20", model="gemini-3.0-flash")
    # 1,000,000 input tokens of Gemini 3.0 Flash at 0.10 USD per 1M = 0.10 USD.
    event = wire_event(
        "alias-1",
        occurred_at=AT,
        job_id="job-alias",
        model="gemini-3.0-flash",
        input_tokens=1_000_000,
        output_tokens=0,
        reservation_id=made["reservation_id"],
    )
    await _record(client, event)
    assert await _held(client, "job-alias") == (Decimal("0.10"), Decimal(0))


@pytest.fixture
async def short_reservations(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_for(database_url, LUC_BUDGET_RESERVATION_SECONDS="1")
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


async def test_reservations_expire(short_reservations: AsyncTestClient[Any]) -> None:
    client = short_reservations
    await _hard_budget(client, "job-x", "0.50")
    made = await _reserve(client, "job-x", "0.40")
    # Held: 0.10 left, so another 0.40 is refused...
    refused = await _reserve(client, "job-x", "0.40", expect=402)
    assert Decimal(refused["remaining_usd"]) == Decimal("0.10")

    # ...until the reservation (1 s) runs out unclaimed.
    deadline = time.monotonic() + 10
    while (await _held(client, "job-x"))[1] != 0:
        assert time.monotonic() < deadline, "the reservation never expired"
        await asyncio.sleep(0.05)
    freed = await _check(client, "job-x")
    assert Decimal(freed["remaining_usd"]) == Decimal("0.50")
    # Its call, arriving late, is recorded and settles nothing (it holds nothing now).
    await _record(client, _call("late-1", "0.30", "job-x", made["reservation_id"]))
    assert await _held(client, "job-x") == (Decimal("0.30"), Decimal(0))
    await _reserve(client, "job-x", "0.20")


async def test_remaining_is_that_of_the_hard_budgets_when_any_applies(
    client: AsyncTestClient[Any],
) -> None:
    """A soft budget spent past its limit beside a hard one with room: the check answered
    the soft one's -0.10 beside "allowed": true, which a gateway comparing its estimate
    with remaining_usd read as a refusal. The hard budget decides, and its 0.90 is what is
    left; each budget's own standing still says the soft one is past its limit."""
    for body in (
        {"scope": "job", "scope_id": "job-mix", "period": "lifetime", "limit_usd": "0.50"},
        {"scope": "agent", "scope_id": "ACHEEVY", "period": "lifetime", "limit_usd": "1.50",
         "hard": True},
    ):  # fmt: skip
        assert (await client.post("/v1/budgets", json=body)).status_code == 201
    await _record(client, _call("mix-1", "0.60", "job-mix", None))
    check = await _check(client, "job-mix", "0.80")
    assert (check["allowed"], Decimal(check["remaining_usd"])) == (True, Decimal("0.90"))
    assert sorted(Decimal(b["remaining_usd"]) for b in check["budgets"]) == [
        Decimal("-0.10"),
        Decimal("0.90"),
    ]
    refused = await _check(client, "job-mix", "0.91")
    assert (refused["allowed"], Decimal(refused["remaining_usd"])) == (False, Decimal("0.90"))


async def test_a_soft_budget_never_denies_and_holds_nothing(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/v1/budgets",
        json={"scope": "job", "scope_id": "job-soft", "period": "lifetime", "limit_usd": "0.50"},
    )
    assert response.json()["hard"] is False
    await _record(client, _call("soft-1", "0.60", "job-soft", None))
    for estimate in (None, "0", "0.01", "100"):
        check = await _check(client, "job-soft", estimate)
        assert check["allowed"] is True, estimate
        [standing] = check["budgets"]
        assert standing["exceeded"] is True
        assert Decimal(check["remaining_usd"]) == Decimal("-0.10")
    # Allowed with nothing to hold: 200 and no reservation id.
    made = await _reserve(client, "job-soft", "100", expect=200)
    assert (made["allowed"], made["reservation_id"], made["expires_at"]) == (True, None, None)
    assert Decimal(made["budgets"][0]["reserved_usd"]) == 0
    assert await _held(client, "job-soft") == (Decimal("0.60"), Decimal(0))


async def test_a_hard_budget_refuses_once_spent_reaches_the_limit(
    client: AsyncTestClient[Any],
) -> None:
    budget = await _hard_budget(client, "job-h", "0.50")
    fresh = await _check(client, "job-h")
    assert fresh["allowed"] is True
    assert Decimal(fresh["remaining_usd"]) == Decimal("0.50")

    await _record(client, _call("h-1", "0.30", "job-h", None))
    # 0.20 left: an estimate of 0.30 would overshoot, 0.20 fits exactly.
    over = await _reserve(client, "job-h", "0.30", expect=402)
    assert over["allowed"] is False
    assert over["reservation_id"] is None
    assert f"budget {budget}" in over["reason"]
    assert await _held(client, "job-h") == (Decimal("0.30"), Decimal(0))  # a refusal holds nothing
    made = await _reserve(client, "job-h", "0.20")
    assert made["reason"] is None
    assert Decimal(made["remaining_usd"]) == 0

    await _record(client, _call("h-2", "0.20", "job-h", made["reservation_id"]))
    for estimate in (None, "0", "0.01"):
        at_limit = await _check(client, "job-h", estimate)
        assert at_limit["allowed"] is False, estimate
        [standing] = at_limit["budgets"]
        assert standing["exceeded"] is True
        assert Decimal(standing["spent_usd"]) == Decimal("0.50")
        assert Decimal(standing["remaining_usd"]) == 0
    await _reserve(client, "job-h", "0", expect=402)

    # Other jobs are not held back by this job's budget.
    other = await _reserve(client, "job-free", "5", expect=200)
    assert other["budgets"] == []
    assert other["remaining_usd"] is None


async def test_a_bad_estimate_is_refused(client: AsyncTestClient[Any]) -> None:
    for estimate in (
        *("-0.01", "abc", "NaN", "1_000", "١", "1e-3", "0E-16384"),
        *("1e18", "1e-31", "0.1" + "0" * 30 + "1"),
    ):
        response = await client.get(
            "/v1/budgets/check", params={"job_id": "j", "estimated_cost_usd": estimate}
        )
        assert response.status_code == 422, response.text
        assert "estimated_cost_usd" in response.json()["detail"]
        body = {"job_id": "j", "agent": "A", "model": OPUS, "estimated_cost_usd": estimate}
        response = await client.post("/v1/budgets/reservations", json=body)
        assert response.status_code == 422, response.text
        assert "estimated_cost_usd" in response.json()["detail"]
    response = await client.post(
        "/v1/budgets/reservations", json={"job_id": "j", "agent": "A", "model": OPUS}
    )
    assert response.status_code == 400, response.text
    assert "estimated_cost_usd" in response.json()["detail"]


@pytest.fixture
async def with_keys(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings_for(database_url, LUC_AUTH="on", LUC_RATE_LIMIT_PER_SECOND="0"))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def test_a_read_key_may_look_but_not_reserve_and_an_ingest_key_may(
    with_keys: AsyncTestClient[Any], db: asyncpg.Connection, admin_key: str
) -> None:
    client = with_keys
    _, read_key = await create_key(db, "finance", "read")
    _, ingest_key = await create_key(db, "gateway", "ingest")
    created = await client.post(
        "/v1/budgets",
        json={"scope": "job", "scope_id": "job-k", "period": "lifetime", "limit_usd": "1"}
        | {"hard": True},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert created.status_code == 201, created.text
    body = {"job_id": "job-k", "agent": "ACHEEVY", "model": OPUS, "estimated_cost_usd": "1"}

    # A read key could otherwise hold the whole budget and stop the gateway.
    as_reader = {"Authorization": f"Bearer {read_key}"}
    refused = await client.post("/v1/budgets/reservations", json=body, headers=as_reader)
    assert refused.status_code == 403
    assert "needs a key of scope ingest" in refused.json()["detail"]
    looked = await client.get("/v1/budgets/check", params={"job_id": "job-k"}, headers=as_reader)
    assert looked.status_code == 200
    assert Decimal(looked.json()["budgets"][0]["reserved_usd"]) == 0

    as_gateway = {"Authorization": f"Bearer {ingest_key}"}
    made = await client.post(
        "/v1/budgets/reservations", json=body | {"customer_id": "acme"}, headers=as_gateway
    )
    assert made.status_code == 201, made.text
    row = await db.fetchrow(
        "SELECT job_id, agent, model, customer_id, amount_usd FROM budget_reservations"
        " WHERE reservation_id = $1::uuid",
        made.json()["reservation_id"],
    )
    assert row is not None
    assert dict(row) == {
        "job_id": "job-k",
        "agent": "ACHEEVY",
        "model": OPUS,
        "customer_id": "acme",
        "amount_usd": Decimal("1"),
    }


async def test_remaining_after_a_reservation_is_exact_beyond_28_digits(
    client: AsyncTestClient[Any],
) -> None:
    # 1000 held on top of 10^-30 held is 1000.000…001 (34 digits): at Python's default 28
    # digits the sum rounds to 1000 and the answer shows 10^-30 more than is left.
    await _hard_budget(client, "job-digits", "2000")
    await _reserve(client, "job-digits", "0.000000000000000000000000000001")
    made = await _reserve(client, "job-digits", "1000")
    assert made["remaining_usd"] == "999.999999999999999999999999999999"
    [standing] = made["budgets"]
    assert standing["reserved_usd"] == "1000.000000000000000000000000000001"


async def _release(client: Any, reservation_id: str, expect: int = 204) -> None:
    response = await client.delete(f"/v1/budgets/reservations/{reservation_id}")
    assert response.status_code == expect, response.text


async def test_a_released_reservation_frees_its_headroom_at_once_and_for_good(
    client: AsyncTestClient[Any],
) -> None:
    await _hard_budget(client, "job-rel", "0.50")
    made = await _reserve(client, "job-rel", "0.40")
    await _reserve(client, "job-rel", "0.40", expect=402)

    # The call spent nothing (an upstream 4xx, say): the gateway releases the hold.
    await _release(client, made["reservation_id"])
    assert await _held(client, "job-rel") == (Decimal(0), Decimal(0))
    # Idempotent: again, the same answer and nothing else changes.
    await _release(client, made["reservation_id"])
    again = await _reserve(client, "job-rel", "0.40")
    assert Decimal(again["remaining_usd"]) == Decimal("0.10")

    # A usage event naming a released reservation is recorded and settles nothing else.
    await _record(client, _call("rel-1", "0.05", "job-rel", made["reservation_id"]))
    assert await _held(client, "job-rel") == (Decimal("0.05"), Decimal("0.40"))

    # A settled reservation stays settled: releasing it does not take back its spend.
    await _record(client, _call("rel-2", "0.30", "job-rel", again["reservation_id"]))
    assert await _held(client, "job-rel") == (Decimal("0.35"), Decimal(0))
    await _release(client, again["reservation_id"])
    assert await _held(client, "job-rel") == (Decimal("0.35"), Decimal(0))

    # Ids LUC never issued.
    await _release(client, "00000000-0000-0000-0000-000000000000", expect=404)
    await _release(client, "not-a-uuid", expect=404)


async def test_a_reservation_is_released_only_by_the_key_that_made_it_or_an_admin_key(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # Any ingest key could free the headroom another caller holds (another gateway, another
    # customer's job) by its reservation id; SPEC §9 trusts keys, not callers. Another
    # key's reservation answers as one LUC never issued: 404, and it still holds.
    await _hard_budget(client, "job-keys", "1")
    _, read_key = await create_key(db, "finance", "read")
    _, gateway = await create_key(db, "gateway", "ingest")
    _, other_gateway = await create_key(db, "other gateway", "ingest")

    def as_(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    body = {"job_id": "job-keys", "agent": "ACHEEVY", "model": OPUS}
    made = await client.post(
        "/v1/budgets/reservations",
        json={**body, "estimated_cost_usd": "0.40"},
        headers=as_(gateway),
    )
    assert made.status_code == 201, made.text
    path = f"/v1/budgets/reservations/{made.json()['reservation_id']}"

    refused = await client.delete(path, headers=as_(read_key))
    assert refused.status_code == 403, refused.text
    foreign = await client.delete(path, headers=as_(other_gateway))
    assert foreign.status_code == 404, foreign.text
    never_issued = await client.delete(
        "/v1/budgets/reservations/00000000-0000-0000-0000-000000000000",
        headers=as_(other_gateway),
    )
    # Nothing tells a reservation of another key from an id LUC never issued.
    assert foreign.json()["detail"].replace(made.json()["reservation_id"], "X") == (
        never_issued.json()["detail"].replace("00000000-0000-0000-0000-000000000000", "X")
    )
    assert await _held(client, "job-keys") == (Decimal(0), Decimal("0.40"))

    released = await client.delete(path, headers=as_(gateway))
    assert released.status_code == 204, released.text
    assert await _held(client, "job-keys") == (Decimal(0), Decimal(0))

    # An admin key (the client's) releases any reservation: an operator clearing a stuck
    # hold. And one made with the admin key is not the gateway's to release.
    again = await client.post(
        "/v1/budgets/reservations",
        json={**body, "estimated_cost_usd": "0.30"},
        headers=as_(gateway),
    )
    await _release(client, again.json()["reservation_id"])
    assert await _held(client, "job-keys") == (Decimal(0), Decimal(0))
    by_admin = await _reserve(client, "job-keys", "0.20")
    path = f"/v1/budgets/reservations/{by_admin['reservation_id']}"
    assert (await client.delete(path, headers=as_(gateway))).status_code == 404
    assert await _held(client, "job-keys") == (Decimal(0), Decimal("0.20"))


async def test_a_refusal_s_reason_writes_its_amounts_as_plain_decimal_strings(
    client: AsyncTestClient[Any],
) -> None:
    # PostgreSQL's 0.0000001 and the Decimals made from it print as 1E-7 through str(): the
    # reason the gateway's 402 carries showed money in exponent form, unlike every amount
    # LUC writes. 0.0000001 left of it, and an estimate of 0.0000002 does not fit.
    budget = await _hard_budget(client, "job-tiny", "0.0000001")
    refused = await _reserve(client, "job-tiny", "0.0000002", expect=402)
    assert refused["reason"] == (
        f"budget {budget} (job job-tiny, lifetime) has 0.0000001 USD left of 0.0000001"
    )
    await _record(client, _call("tiny-1", "0.000005", "job-tiny", None))  # one token
    looked = await _check(client, "job-tiny", "0")
    assert looked["reason"] == (
        f"budget {budget} (job job-tiny, lifetime) has -0.0000049 USD left of 0.0000001"
    )
