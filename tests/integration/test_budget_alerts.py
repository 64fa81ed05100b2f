"""Budget spend and alerts: each threshold fires once per budget and period, whatever the
concurrency; periods are UTC calendar days and months of each event's own time.

Costs are worked out by hand from the AIMS catalog: Claude Opus 4.6 input tokens cost
5.00 USD per 1M, so 200,000 tokens = 1.00 USD (``opus_event`` builds an event of an
exact cost, checked against that arithmetic).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from tests.support.budgets import opus_event
from tests.support.clock import clear_of_end, day_start

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _alert_keys(alerts: list[dict[str, Any]]) -> set[tuple[int, datetime, Decimal, Decimal]]:
    """(budget, period start, threshold, spend at the crossing) per alert."""
    return {
        (
            a["budget_id"],
            _t(a["period_start"]),
            Decimal(str(a["threshold"])),
            Decimal(a["spent_usd"]),
        )
        for a in alerts
    }


def _standing(check: dict[str, Any], budget_id: int) -> dict[str, Any]:
    [standing] = [b for b in check["budgets"] if b["id"] == budget_id]
    return dict(standing)


@pytest.mark.slow
def test_fifty_concurrent_batches_crossing_thresholds_raise_each_alert_exactly_once(
    server_factory: Any,
) -> None:
    server = server_factory()
    http = httpx.Client(base_url=server.base_url, timeout=60)
    job = http.post(
        "/v1/budgets",
        json={"scope": "job", "scope_id": "job-race", "period": "lifetime", "limit_usd": "1.00"},
    ).json()
    # One threshold at 0.35 USD, between two steps of 0.02: crossed when spend reaches 0.36.
    one = http.post(
        "/v1/budgets",
        json={"scope": "global", "period": "month", "limit_usd": "0.70", "thresholds": [0.5]},
    ).json()

    # 50 batches of one event of 0.02 USD each (4,000 Opus input tokens): 1.00 in all, so
    # the job budget crosses 50 %, 80 % and 100 % (at exactly 0.50, 0.80 and 1.00).
    at = "2026-11-20T12:00:00Z"
    batches = [
        [opus_event(f"race-{n}", "0.02", occurred_at=at, job_id="job-race")] for n in range(50)
    ]
    gate = threading.Barrier(len(batches))

    def send(batch: list[dict[str, Any]]) -> dict[str, Any]:
        with httpx.Client(base_url=server.base_url, timeout=60) as own:
            own.get("/readyz")  # connected before the gate opens
            gate.wait()
            response = own.post("/v1/events/batch", json={"events": batch})
            assert response.status_code == 200, response.text
            return dict(response.json())

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(send, batches))
    assert sum(a["accepted"] for a in answers) == 50

    alerts = http.get("/v1/alerts").json()["items"]
    nov = datetime(2026, 11, 1, tzinfo=UTC)
    assert len(alerts) == 4
    assert [a["type"] for a in alerts] == ["budget.threshold_crossed"] * 4
    assert _alert_keys(alerts) == {
        (job["id"], EPOCH, Decimal("0.5"), Decimal("0.50")),
        (job["id"], EPOCH, Decimal("0.8"), Decimal("0.80")),
        (job["id"], EPOCH, Decimal("1"), Decimal("1.00")),
        (one["id"], nov, Decimal("0.5"), Decimal("0.36")),
    }
    for a in alerts:
        assert a["delivery"] == "none"  # no webhook: nothing to deliver
        assert Decimal(a["limit_usd"]) == (
            Decimal("1.00") if a["budget_id"] == job["id"] else Decimal("0.70")
        )

    check = http.get("/v1/budgets/check", params={"job_id": "job-race"}).json()
    standing = _standing(check, job["id"])
    assert Decimal(standing["spent_usd"]) == Decimal("1.00")
    assert standing["exceeded"] is True
    http.close()


async def test_day_and_month_budgets_roll_over_at_utc_midnight_and_month_ends(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    async def budget(period: str, limit: str) -> int:
        response = await client.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-cal",
                "period": period,
                "limit_usd": limit,
                "thresholds": [0.5, 1],
            },
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    day, month, life = (
        await budget("day", "1.00"),
        await budget("month", "1.00"),
        await budget("lifetime", "3.00"),
    )

    # Sent one at a time, in this order; the spend after each is worked out beside it
    # (D = the event's UTC day, M = its UTC month, L = lifetime).
    stream = [
        ("2026-01-31T00:00:00Z", "0.30"),  # D 01-31 0.30   M 2026-01 0.30   L 0.30
        ("2026-01-31T23:59:59Z", "0.30"),  # D 01-31 0.60 ! M 2026-01 0.60 ! L 0.60
        ("2026-02-01T00:00:00Z", "0.60"),  # D 02-01 0.60 ! M 2026-02 0.60 ! L 1.20
        ("2026-02-01T00:30:00+01:00", "0.10"),  # 01-31 23:30 UTC: D 01-31 0.70, M 01 0.70
        ("2026-01-30T12:00:00Z", "0.50"),  # D 01-30 0.50 ! M 2026-01 1.20 ! L 1.80 !
        ("2026-02-28T23:59:59.999Z", "0.40"),  # D 02-28 0.40  M 2026-02 1.00 ! L 2.20
        ("2026-03-01T00:00:00Z", "0.50"),  # D 03-01 0.50 ! M 2026-03 0.50 ! L 2.70
        ("2025-12-31T23:59:59Z", "0.50"),  # D 12-31 0.50 ! M 2025-12 0.50 ! L 3.20 !
        ("2026-01-01T00:00:00Z", "0.20"),  # D 01-01 0.20   M 2026-01 1.40   L 3.40
        ("2026-01-31T12:00:00Z", "0.40"),  # D 01-31 1.10 ! M 2026-01 1.80   L 3.80
        ("2026-01-31T13:00:00Z", "0.40"),  # D 01-31 1.50   M 2026-01 2.20   L 4.20
    ]
    for n, (at, usd) in enumerate(stream):
        response = await client.post(
            "/v1/events", json=opus_event(f"cal-{n}", usd, occurred_at=at, job_id="job-cal")
        )
        assert response.status_code in (200, 201), response.text

    d = Decimal
    alerts = (await client.get("/v1/alerts")).json()["items"]
    assert _alert_keys(alerts) == {
        # Day: 50 % (0.50) and 100 % (1.00) of each UTC day, each once.
        (day, _t("2026-01-31T00:00:00Z"), d("0.5"), d("0.60")),
        (day, _t("2026-01-31T00:00:00Z"), d("1"), d("1.10")),
        (day, _t("2026-02-01T00:00:00Z"), d("0.5"), d("0.60")),
        (day, _t("2026-01-30T00:00:00Z"), d("0.5"), d("0.50")),
        (day, _t("2026-03-01T00:00:00Z"), d("0.5"), d("0.50")),
        (day, _t("2025-12-31T00:00:00Z"), d("0.5"), d("0.50")),
        # Month: February ends on the 28th in 2026; December 2025 is its own month.
        (month, _t("2026-01-01T00:00:00Z"), d("0.5"), d("0.60")),
        (month, _t("2026-01-01T00:00:00Z"), d("1"), d("1.20")),
        (month, _t("2026-02-01T00:00:00Z"), d("0.5"), d("0.60")),
        (month, _t("2026-02-01T00:00:00Z"), d("1"), d("1.00")),
        (month, _t("2026-03-01T00:00:00Z"), d("0.5"), d("0.50")),
        (month, _t("2025-12-01T00:00:00Z"), d("0.5"), d("0.50")),
        # Lifetime: one period; 50 % of 3.00 = 1.50 and 100 % = 3.00.
        (life, EPOCH, d("0.5"), d("1.80")),
        (life, EPOCH, d("1"), d("3.20")),
    }
    assert len(alerts) == 14  # no threshold fired twice in a period

    spend = {
        (r["budget_id"], r["period_start"]): r["spent_usd"]
        for r in await db.fetch("SELECT budget_id, period_start, spent_usd FROM budget_spend")
    }
    assert spend == {
        (day, _t("2025-12-31T00:00:00Z")): d("0.50"),
        (day, _t("2026-01-01T00:00:00Z")): d("0.20"),
        (day, _t("2026-01-30T00:00:00Z")): d("0.50"),
        (day, _t("2026-01-31T00:00:00Z")): d("1.50"),
        (day, _t("2026-02-01T00:00:00Z")): d("0.60"),
        (day, _t("2026-02-28T00:00:00Z")): d("0.40"),
        (day, _t("2026-03-01T00:00:00Z")): d("0.50"),
        (month, _t("2025-12-01T00:00:00Z")): d("0.50"),
        (month, _t("2026-01-01T00:00:00Z")): d("2.20"),
        (month, _t("2026-02-01T00:00:00Z")): d("1.00"),
        (month, _t("2026-03-01T00:00:00Z")): d("0.50"),
        (life, EPOCH): d("4.20"),
    }

    # The pre-call check looks at the period containing now: none of this spend is today's
    # or this month's, all of it is the lifetime budget's.
    check = (await client.get("/v1/budgets/check", params={"job_id": "job-cal"})).json()
    assert Decimal(_standing(check, life)["spent_usd"]) == d("4.20")
    assert Decimal(_standing(check, life)["remaining_usd"]) == d("-1.20")
    assert Decimal(_standing(check, day)["spent_usd"]) == 0
    assert Decimal(_standing(check, month)["spent_usd"]) == 0


async def test_check_counts_the_spend_of_the_day_and_month_containing_now(
    client: AsyncTestClient[Any],
) -> None:
    ids = {}
    for period in ("day", "month"):
        response = await client.post(
            "/v1/budgets",
            json={"scope": "agent", "scope_id": "ORACLE", "period": period, "limit_usd": "5"},
        )
        ids[period] = response.json()["id"]

    # Clear of the UTC day's end, so the events and the check fall in one day; today's call
    # a second back, or at midnight in the day's first second.
    now = await clear_of_end("day")
    events = [
        (max(now - timedelta(seconds=1), day_start(now)), "0.30"),
        (now - timedelta(days=1), "0.20"),
        (now - timedelta(days=40), "0.25"),
    ]
    for n, (at, usd) in enumerate(events):
        event = opus_event(f"now-{n}", usd, occurred_at=at.isoformat(), agent="ORACLE")
        assert (await client.post("/v1/events", json=event)).status_code in (200, 201)

    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    this_month = today.replace(day=1)
    expected_day = sum((Decimal(u) for at, u in events if at >= today), Decimal(0))
    expected_month = sum((Decimal(u) for at, u in events if at >= this_month), Decimal(0))
    assert expected_day == Decimal("0.30")

    check = (await client.get("/v1/budgets/check", params={"agent": "ORACLE"})).json()
    assert check["allowed"] is True
    day, month = _standing(check, ids["day"]), _standing(check, ids["month"])
    assert _t(day["period_start"]) == today
    assert Decimal(day["spent_usd"]) == expected_day
    assert Decimal(day["remaining_usd"]) == Decimal(5) - expected_day
    assert _t(month["period_start"]) == this_month
    assert Decimal(month["spent_usd"]) == expected_month
    assert Decimal(check["remaining_usd"]) == Decimal(5) - expected_month


async def test_a_budget_created_after_spend_counts_that_spend_in_each_period(
    client: AsyncTestClient[Any],
) -> None:
    earlier = [("2026-01-31T10:00:00Z", "0.30"), ("2026-02-01T10:00:00Z", "0.30")]
    for n, (at, usd) in enumerate(earlier):
        event = opus_event(f"late-{n}", usd, occurred_at=at, job_id="job-late")
        assert (await client.post("/v1/events", json=event)).status_code in (200, 201)

    async def budget(period: str, limit: str) -> int:
        response = await client.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-late",
                "period": period,
                "limit_usd": limit,
                "thresholds": [0.5, 1],
            },
        )
        return int(response.json()["id"])

    day, life = await budget("day", "1.00"), await budget("lifetime", "2.00")
    assert (await client.get("/v1/alerts")).json()["items"] == []  # nothing crossed yet

    later = [("2026-01-31T11:00:00Z", "0.30"), ("2026-02-01T11:00:00Z", "0.20")]
    for n, (at, usd) in enumerate(later):
        event = opus_event(f"later-{n}", usd, occurred_at=at, job_id="job-late")
        assert (await client.post("/v1/events", json=event)).status_code in (200, 201)

    # Day 01-31: 0.30 before the budget + 0.30 = 0.60, past 0.50; day 02-01: 0.30 + 0.20 =
    # 0.50, at 0.50. Lifetime: 0.60 + 0.30 + 0.20 = 1.10, past 50 % of 2.00.
    alerts = (await client.get("/v1/alerts")).json()["items"]
    assert _alert_keys(alerts) == {
        (day, _t("2026-01-31T00:00:00Z"), Decimal("0.5"), Decimal("0.60")),
        (day, _t("2026-02-01T00:00:00Z"), Decimal("0.5"), Decimal("0.50")),
        (life, EPOCH, Decimal("0.5"), Decimal("1.10")),
    }
    check = (await client.get("/v1/budgets/check", params={"job_id": "job-late"})).json()
    assert Decimal(_standing(check, life)["spent_usd"]) == Decimal("1.10")


async def test_redelivering_a_missing_alert_says_it_does_not_exist_as_reading_it_does(
    client: AsyncTestClient[Any],
) -> None:
    # A missing alert was said to have "no webhook delivery", as if it existed.
    budget = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-quiet",
            "period": "lifetime",
            "limit_usd": "1.00",
            "thresholds": [1],
        },
    )
    assert budget.status_code == 201, budget.text
    event = opus_event("quiet-1", "1.00", occurred_at="2026-01-31T10:00:00Z", job_id="job-quiet")
    assert (await client.post("/v1/events", json=event)).status_code in (200, 201)
    [alert] = (await client.get("/v1/alerts")).json()["items"]
    assert alert["delivery"] == "none"  # the budget has no webhook

    quiet = await client.post(f"/v1/alerts/{alert['alert_id']}/redeliver")
    assert (quiet.status_code, quiet.json()["detail"]) == (
        404,
        f"alert '{alert['alert_id']}' has no webhook delivery",
    )
    for missing in ("00000000-0000-0000-0000-000000000000", "xyz"):
        read = await client.get(f"/v1/alerts/{missing}")
        resent = await client.post(f"/v1/alerts/{missing}/redeliver")
        said = f"alert '{missing}' does not exist"
        assert (read.status_code, read.json()["detail"]) == (404, said)
        assert (resent.status_code, resent.json()["detail"]) == (404, said)


async def test_alerts_past_a_thousand_are_listed_page_by_page_oldest_first(
    client: AsyncTestClient[Any],
) -> None:
    # A day budget with two thresholds, both crossed on each of 501 days (the catalog
    # prices from 2025-01-01), then today: 1,004 alerts. The list stopped at the oldest
    # 1,000, so the newest alerts (the ones that matter) never showed.
    budget = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-many",
            "period": "day",
            "limit_usd": "1.00",
            "thresholds": [0.5, 1],
        },
    )
    assert budget.status_code == 201, budget.text
    first_day = datetime(2025, 1, 1, 12, tzinfo=UTC)
    days = [first_day + timedelta(days=n) for n in range(501)]
    events = [
        opus_event(f"many-{n}", "1.00", occurred_at=day.isoformat(), job_id="job-many")
        for n, day in enumerate(days)
    ]
    sent = await client.post("/v1/events/batch", json={"events": events})
    assert sent.status_code == 200 and sent.json()["accepted"] == 501, sent.text[:300]
    today = datetime.now(UTC).replace(microsecond=0)
    last = opus_event("many-today", "1.00", occurred_at=today.isoformat(), job_id="job-many")
    assert (await client.post("/v1/events", json=last)).status_code in (200, 201)

    listed: list[dict[str, Any]] = []
    pages = 0
    params: dict[str, Any] = {"budget_id": budget.json()["id"], "limit": 400}
    while True:
        page = (await client.get("/v1/alerts", params=params)).json()
        listed.extend(page["items"])
        pages += 1
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert pages == 3  # 400 + 400 + 204
    assert len({a["alert_id"] for a in listed}) == len(listed) == 1004
    starts = [(_t(a["period_start"]), a["threshold"]) for a in listed]
    midnight = today.replace(hour=0, minute=0, second=0)
    expected = [(d.replace(hour=0), t) for d in days for t in (0.5, 1.0)]
    # Oldest first: the batch's alerts (in the order they were recorded), then today's.
    assert sorted(starts[:-2]) == expected
    assert sorted(starts[-2:]) == [(midnight, 0.5), (midnight, 1.0)]

    # Without a limit, a page holds up to 1,000, as the list did: the newest are on the next.
    first = (await client.get("/v1/alerts", params={"budget_id": budget.json()["id"]})).json()
    assert len(first["items"]) == 1000 and first["next_cursor"] is not None
    rest = (
        await client.get(
            "/v1/alerts",
            params={"budget_id": budget.json()["id"], "cursor": first["next_cursor"]},
        )
    ).json()
    assert [a["alert_id"] for a in rest["items"]] == [a["alert_id"] for a in listed[1000:]]
    assert rest["next_cursor"] is None
    bad = await client.get("/v1/alerts", params={"cursor": "not-one-of-ours"})
    assert bad.status_code == 400, bad.text


async def test_new_alerts_are_followed_after_the_last_one_read(
    client: AsyncTestClient[Any],
) -> None:
    # The last page has no cursor: a client that had read every alert held nothing to ask
    # for the new ones with, though README promised following them missing none.
    budget = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-follow",
            "period": "lifetime",
            "limit_usd": "1.00",
            "thresholds": [0.25, 0.5, 1],
        },
    )
    assert budget.status_code == 201, budget.text

    async def spend(n: int, usd: str) -> None:
        at = "2026-01-31T10:00:00Z"
        event = opus_event(f"follow-{n}", usd, occurred_at=at, job_id="job-follow")
        assert (await client.post("/v1/events", json=event)).status_code in (200, 201)

    await spend(1, "0.30")  # 0.30: past 25 %
    read = (await client.get("/v1/alerts")).json()
    assert [a["threshold"] for a in read["items"]] == [0.25] and read["next_cursor"] is None
    last = read["items"][-1]["alert_id"]
    assert (await client.get("/v1/alerts", params={"after": last})).json()["items"] == []

    await spend(2, "0.75")  # 1.05: past 50 % and 100 %
    new = (await client.get("/v1/alerts", params={"after": last})).json()
    assert [a["threshold"] for a in new["items"]] == [0.5, 1.0]
    assert new["next_cursor"] is None
    one = (await client.get("/v1/alerts", params={"after": last, "limit": 1})).json()
    assert [a["threshold"] for a in one["items"]] == [0.5] and one["next_cursor"] is not None

    unknown = await client.get("/v1/alerts", params={"after": "xyz"})
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "after: alert 'xyz' does not exist"
    both = await client.get("/v1/alerts", params={"after": last, "cursor": one["next_cursor"]})
    assert both.status_code == 400
    assert both.json()["detail"] == (
        "send cursor or after, not both (each says where the page starts)"
    )
