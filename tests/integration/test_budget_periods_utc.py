"""A day or month budget counts by the UTC calendar (SPEC §6), whatever offset an event's
``occurred_at`` is written with: a call just after UTC midnight written at -05:00 (the day
before, there) counts today; one just before it written at +05:00 (today, there) does not.

The default event costs 0.0003 USD (``tests.support.events``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.support.clock import clear_of_end
from tests.support.events import wire_event

pytestmark = pytest.mark.asyncio


async def test_day_and_month_periods_are_utc_whatever_offset_an_event_is_written_in(
    client: AsyncTestClient[Any],
) -> None:
    # Clear of the UTC day's end (a month's end is one): the check below reads the day and
    # month of the events.
    now = await clear_of_end("day")
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ids = {}
    for period in ("day", "month"):
        response = await client.post(
            "/v1/budgets",
            json={"scope": "agent", "scope_id": "TZ", "period": period, "limit_usd": "1"},
        )
        assert response.status_code == 201, response.text
        ids[period] = response.json()["id"]
    after_midnight = (today + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-5)))
    before_midnight = (today - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=5)))
    assert after_midnight.day != today.day and before_midnight.day == today.day  # locally
    events = [
        wire_event("tz-1", agent="TZ", occurred_at=after_midnight.isoformat()),
        wire_event("tz-2", agent="TZ", occurred_at=before_midnight.isoformat()),
    ]
    response = await client.post("/v1/events/batch", json={"events": events})
    assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 2, response.text

    check = await client.get("/v1/budgets/check", params={"agent": "TZ"})
    standings = {b["id"]: b for b in check.json()["budgets"]}
    day = standings[ids["day"]]
    assert datetime.fromisoformat(day["period_start"]) == today
    assert Decimal(day["spent_usd"]) == Decimal("0.0003")  # only the one after UTC midnight
    month = standings[ids["month"]]
    assert datetime.fromisoformat(month["period_start"]) == today.replace(day=1)
    # The one before midnight is this month too, unless today is the 1st.
    expected = Decimal("0.0003") if today.day == 1 else Decimal("0.0006")
    assert Decimal(month["spent_usd"]) == expected
