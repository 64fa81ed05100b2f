"""The pre-call check: hard budgets reserve each allowed estimate atomically, so parallel
calls cannot overshoot; a reservation ends when the call's usage event arrives, or when
it expires. Soft budgets only report.

Costs by hand: Claude Opus 4.6 input tokens at 5.00 USD per 1M (``opus_event``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.conftest import settings_for
from tests.integration.budget_support import OPUS, opus_event

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


def _money(check: dict[str, Any], key: str) -> Decimal:
    [standing] = check["budgets"]
    return Decimal(standing[key])


@pytest.mark.slow
def test_twenty_concurrent_checks_against_room_for_five_calls_allow_exactly_five(
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
    params = {
        "job_id": "job-hard",
        "agent": "ACHEEVY",
        "model": OPUS,
        "estimated_cost_usd": "0.20",
    }
    gate = threading.Barrier(20)

    def check(_: int) -> dict[str, Any]:
        with httpx.Client(base_url=server.base_url, timeout=60) as own:
            own.get("/readyz")
            gate.wait()
            response = own.get("/v1/budgets/check", params=params)
            assert response.status_code == 200, response.text
            return dict(response.json())

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(check, range(20)))

    allowed = [a for a in answers if a["allowed"]]
    denied = [a for a in answers if not a["allowed"]]
    # 1.00 / 0.20 = 5 calls fit.
    assert len(allowed) == 5
    for a in allowed:
        assert len(a["reservation_ids"]) == 1
        assert a["reason"] is None
    # Each allowed check saw the reservations of those before it: what remained before its
    # own reservation was 1.00, 0.80, 0.60, 0.40 and 0.20, once each.
    assert sorted(Decimal(a["remaining_usd"]) for a in allowed) == [
        Decimal("0.20"),
        Decimal("0.40"),
        Decimal("0.60"),
        Decimal("0.80"),
        Decimal("1.00"),
    ]
    for a in denied:
        assert a["reservation_ids"] == []
        assert Decimal(a["remaining_usd"]) == 0
        assert f"budget {budget['id']}" in a["reason"]

    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        after = http.get("/v1/budgets/check", params={"job_id": "job-hard"}).json()
    assert after["allowed"] is False  # everything is promised
    [standing] = after["budgets"]
    assert Decimal(standing["reserved_usd"]) == Decimal("1.00")
    assert Decimal(standing["spent_usd"]) == 0
    assert Decimal(standing["remaining_usd"]) == 0


async def test_a_reservation_is_settled_when_the_calls_usage_event_arrives(
    client: AsyncTestClient[Any],
) -> None:
    await _hard_budget(client, "job-s", "1.00")
    first = await _check(client, "job-s", "0.20")
    assert first["allowed"] is True
    assert len(first["reservation_ids"]) == 1

    held = await _check(client, "job-s")
    assert _money(held, "reserved_usd") == Decimal("0.20")
    assert Decimal(held["remaining_usd"]) == Decimal("0.80")

    # Another job's call settles nothing.
    await client.post("/v1/events", json=opus_event("other-1", "0.05", occurred_at=AT))
    assert _money(await _check(client, "job-s"), "reserved_usd") == Decimal("0.20")

    # The call arrives, costing 0.15: the 0.20 promise gives way to 0.15 spent.
    await client.post("/v1/events", json=opus_event("s-1", "0.15", occurred_at=AT, job_id="job-s"))
    settled = await _check(client, "job-s")
    assert _money(settled, "reserved_usd") == 0
    assert _money(settled, "spent_usd") == Decimal("0.15")
    assert Decimal(settled["remaining_usd"]) == Decimal("0.85")

    # Two calls reserved, one arrives: one reservation is settled, the other still holds.
    await _check(client, "job-s", "0.20")
    await _check(client, "job-s", "0.20")
    await client.post("/v1/events", json=opus_event("s-2", "0.10", occurred_at=AT, job_id="job-s"))
    half = await _check(client, "job-s")
    assert _money(half, "reserved_usd") == Decimal("0.20")
    assert _money(half, "spent_usd") == Decimal("0.25")
    assert Decimal(half["remaining_usd"]) == Decimal("0.55")


async def test_a_reservation_made_with_a_model_alias_is_settled_by_its_call(
    client: AsyncTestClient[Any],
) -> None:
    await _hard_budget(client, "job-alias", "1.00")
    params = {
        "job_id": "job-alias",
        "agent": "ACHEEVY",
        "model": "gemini-3.0-flash",  # alias of google/gemini-3.0-flash
        "estimated_cost_usd": "0.20",
    }
    assert (await client.get("/v1/budgets/check", params=params)).json()["allowed"] is True
    # 1,000,000 input tokens of Gemini 3.0 Flash at 0.10 USD per 1M = 0.10 USD.
    event = {
        "id": "alias-1",
        "occurred_at": AT,
        "job_id": "job-alias",
        "agent": "ACHEEVY",
        "provider": "openrouter",
        "model": "gemini-3.0-flash",
        "input_tokens": 1_000_000,
        "output_tokens": 0,
    }
    assert (await client.post("/v1/events", json=event)).status_code in (200, 201)
    after = await _check(client, "job-alias")
    assert _money(after, "reserved_usd") == 0
    assert _money(after, "spent_usd") == Decimal("0.10")


@pytest.fixture
async def short_reservations(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_for(database_url, LUC_BUDGET_RESERVATION_SECONDS="1")
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


async def test_reservations_expire(short_reservations: AsyncTestClient[Any]) -> None:
    client = short_reservations
    await _hard_budget(client, "job-x", "0.50")
    assert (await _check(client, "job-x", "0.40"))["allowed"] is True
    # Held: 0.10 left, so another 0.40 is refused...
    refused = await _check(client, "job-x", "0.40")
    assert refused["allowed"] is False
    assert _money(refused, "reserved_usd") == Decimal("0.40")

    await asyncio.sleep(1.3)  # ...until the reservation (1 s) runs out unclaimed.
    freed = await _check(client, "job-x")
    assert _money(freed, "reserved_usd") == 0
    assert Decimal(freed["remaining_usd"]) == Decimal("0.50")
    assert (await _check(client, "job-x", "0.40"))["allowed"] is True


async def test_a_soft_budget_never_denies(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/v1/budgets",
        json={"scope": "job", "scope_id": "job-soft", "period": "lifetime", "limit_usd": "0.50"},
    )
    assert response.json()["hard"] is False
    await client.post(
        "/v1/events", json=opus_event("soft-1", "0.60", occurred_at=AT, job_id="job-soft")
    )
    for estimate in (None, "0", "0.01", "100"):
        check = await _check(client, "job-soft", estimate)
        assert check["allowed"] is True, estimate
        assert check["reservation_ids"] == []
        [standing] = check["budgets"]
        assert standing["exceeded"] is True
        assert Decimal(standing["reserved_usd"]) == 0  # soft budgets reserve nothing
        assert Decimal(check["remaining_usd"]) == Decimal("-0.10")


async def test_a_hard_budget_denies_once_spent_reaches_the_limit(
    client: AsyncTestClient[Any],
) -> None:
    budget = await _hard_budget(client, "job-h", "0.50")
    fresh = await _check(client, "job-h")
    assert fresh["allowed"] is True
    assert Decimal(fresh["remaining_usd"]) == Decimal("0.50")

    await client.post("/v1/events", json=opus_event("h-1", "0.30", occurred_at=AT, job_id="job-h"))
    # 0.20 left: an estimate of 0.30 would overshoot, 0.20 fits exactly.
    over = await _check(client, "job-h", "0.30")
    assert over["allowed"] is False
    assert over["reservation_ids"] == []
    assert f"budget {budget}" in over["reason"]
    assert _money(over, "reserved_usd") == 0  # a denied check reserves nothing
    assert (await _check(client, "job-h", "0.20"))["allowed"] is True

    await client.post("/v1/events", json=opus_event("h-2", "0.20", occurred_at=AT, job_id="job-h"))
    for estimate in (None, "0", "0.01"):
        at_limit = await _check(client, "job-h", estimate)
        assert at_limit["allowed"] is False, estimate
        [standing] = at_limit["budgets"]
        assert standing["exceeded"] is True
        assert Decimal(standing["spent_usd"]) == Decimal("0.50")
        assert Decimal(standing["remaining_usd"]) == 0

    # Other jobs are not held back by this job's budget.
    other = await client.get(
        "/v1/budgets/check", params={"job_id": "job-free", "estimated_cost_usd": "5"}
    )
    assert other.json()["allowed"] is True
    assert other.json()["budgets"] == []
    assert other.json()["remaining_usd"] is None


async def test_a_bad_estimate_is_refused(client: AsyncTestClient[Any]) -> None:
    for estimate in ("-0.01", "abc", "NaN", "1_000", "١", "1e-3", "0E-16384"):
        response = await client.get(
            "/v1/budgets/check", params={"job_id": "j", "estimated_cost_usd": estimate}
        )
        assert response.status_code == 422, response.text
        assert "estimated_cost_usd" in response.json()["detail"]
