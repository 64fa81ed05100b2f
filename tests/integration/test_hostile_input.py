"""Hostile values never sink good ones (SPEC §2), through both ingest routes, on PostgreSQL.

Each hostile event (a money string PostgreSQL or a reader would take differently, a
timestamp LUC would have to round, attributes no decoder or PostgreSQL takes) is sent
between two good events in a batch, and alone to ``POST /v1/events``. Every answer is a
per-event rejection whose reason starts with the field at fault; the good neighbours are
accepted and stored; never a 500, never a 400 for the whole batch. The events are written
as raw JSON so that escapes (``"\\udfff"``) and nesting reach the service as a client
could send them.

The cases share one database and one app (as in test_bad_input.py): each uses its own ids
and jobs and looks only at those.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.support.databases import connected, new_database_sync
from tests.support.events import wire_event
from tests.support.ledger_truth import STORED_EVENTS
from tests.support.settings import settings_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def shared_database(admin_url: str, template_database: str) -> Iterator[str]:
    with new_database_sync(admin_url, "luc_test_hostile", template_database) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(shared_database: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings_for(shared_database))) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db(shared_database: str) -> AsyncIterator[asyncpg.Connection]:
    async with connected(shared_database) as conn:
        yield conn


# A valid call: gemini-3.0-flash (0.10 / 0.40 per 1M), 1000 in and 500 out.
# 1000·0.10 + 500·0.40 = 100 + 200 = 300 per 1M → 0.0003
good = partial(wire_event, occurred_at="2025-11-20T10:00:00Z", model="gemini-3.0-flash")


def raw_event(event_id: str, job_id: str, field: str, raw_value: bytes) -> bytes:
    """A good event whose ``field`` is the raw JSON ``raw_value`` (added if absent)."""
    event = {k: json.dumps(v).encode() for k, v in good(event_id, job_id=job_id).items()}
    event[field] = raw_value
    return b"{" + b", ".join(json.dumps(k).encode() + b": " + v for k, v in event.items()) + b"}"


def text(value: str) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: "\udfff" is sent as its escape


DEEP_1000 = b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}"
DEEP_40 = b'{"a": ' + b'{"b": ' * 39 + b"1" + b"}" * 39 + b"}"

# (case, field, raw JSON value, words the reason must hold after "<field>: ")
HOSTILE: list[tuple[str, str, bytes, str]] = [
    # money
    ("underscores", "provider_cost_usd", text("1_000.5"), "underscores"),
    ("arabic-indic", "provider_cost_usd", text("١٢"), "ASCII digits"),
    ("fullwidth", "provider_cost_usd", text("１２"), "ASCII digits"),
    ("tiny-exponent", "provider_cost_usd", text("0E-16384"), "exponent"),
    ("huge-exponent", "provider_cost_usd", text("1E+999999999"), "exponent"),
    ("plain-exponent", "provider_cost_usd", text("1e-7"), "exponent"),
    ("nan", "provider_cost_usd", text("NaN"), "not a number"),
    ("snan", "provider_cost_usd", text("sNaN"), "not a number"),
    ("infinity", "provider_cost_usd", text("Infinity"), "not a number"),
    ("negative", "provider_cost_usd", text("-0.01"), "cannot be negative"),
    ("plus", "provider_cost_usd", text("+0.01"), "sign"),
    ("spaces", "provider_cost_usd", text(" 0.01 "), "spaces"),
    ("newline", "provider_cost_usd", text("0.01\n"), "spaces"),
    ("comma", "provider_cost_usd", text("0,01"), "not a decimal string"),
    ("bare-point", "provider_cost_usd", text(".5"), "not a decimal string"),
    ("41-digits", "provider_cost_usd", text("1." + "1" * 40), "41 significant digits"),
    ("101-places", "provider_cost_usd", text("0." + "0" * 100 + "1"), "101 decimal places"),
    ("above-a-bill", "provider_cost_usd", text("1" + "0" * 18), "out of range"),
    ("cost-as-number", "provider_cost_usd", b"0.01", "expected `str | null`"),
    # timestamps
    ("seven-digits", "occurred_at", text("2025-11-30T23:59:59.9999995Z"), "at most 6"),
    ("nine-digits", "occurred_at", text("2025-11-20T10:00:00.123456789+01:00"), "at most 6"),
    ("no-offset", "occurred_at", text("2025-11-20T10:00:00"), "no UTC offset"),
    ("leap-second", "occurred_at", text("2016-12-31T23:59:60Z"), "leap second"),
    ("year-0", "occurred_at", text("0000-01-01T00:00:00Z"), "outside the years 0001 to 9999"),
    ("year-10000", "occurred_at", text("10000-01-01T00:00:00Z"), "outside the years 0001 to 9999"),
    ("february-30", "occurred_at", text("2025-02-30T10:00:00Z"), "day is out of range"),
    ("offset-24h", "occurred_at", text("2025-11-20T10:00:00+24:00"), "not a valid instant"),
    ("other-digits", "occurred_at", text("٢٠٢٥-11-20T10:00:00Z"), "not an RFC 3339"),
    ("epoch-number", "occurred_at", b"1764000000", "expected `str`"),
    # attributes and text
    ("nested-1000", "attributes", DEEP_1000, "nests JSON too deeply"),
    ("nested-40", "attributes", DEEP_40, "nested 40 levels deep; at most 32"),
    ("lone-low-surrogate", "attributes", b'{"k": "\\udfff"}', "lone UTF-16 surrogate"),
    ("lone-high-surrogate", "attributes", b'{"k": "\\ud800x"}', "lone UTF-16 surrogate"),
    ("surrogate-key", "attributes", b'{"\\udc00": 1}', "lone UTF-16 surrogate"),
    ("huge-attributes", "attributes", text("x" * 5000), "expected `object | null`"),
    ("big-attributes", "attributes", b'{"x": "' + b"y" * 5000 + b'"}', "over the limit"),
    ("number-out-of-range", "attributes", b'{"n": 1e999999}', "number out of range"),
    ("nul-in-attributes", "attributes", b'{"k": "\\u0000"}', "NUL"),
    ("surrogate-job", "job_id", b'"job\\udfff"', "lone UTF-16 surrogate"),
    ("nul-in-agent", "agent", b'"A\\u0000"', "NUL"),
    ("token-above-cap", "input_tokens", b"1000000000001", "<= 1000000000000"),
]


async def stored(db: asyncpg.Connection, prefix: str) -> list[str]:
    rows = await db.fetch(
        "SELECT event_id FROM event_keys WHERE starts_with(event_id, $1) ORDER BY event_id",
        prefix,
    )
    return [r["event_id"] for r in rows]


@pytest.mark.parametrize(("case", "field", "value", "says"), HOSTILE, ids=[c[0] for c in HOSTILE])
async def test_a_hostile_event_is_rejected_alone_in_a_batch_and_on_its_own(
    api: AsyncTestClient[Any],
    db: asyncpg.Connection,
    case: str,
    field: str,
    value: bytes,
    says: str,
) -> None:
    job = f"job-h-{case}"
    body = (
        b'{"events": ['
        + text_event(f"h-{case}-good-1", job)
        + b", "
        + raw_event(f"h-{case}-bad", job, field, value)
        + b", "
        + text_event(f"h-{case}-good-2", job)
        + b"]}"
    )
    response = await api.post("/v1/events/batch", **raw(body))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1), answer
    first, bad, last = answer["results"]
    assert (first["status"], last["status"]) == ("accepted", "accepted")
    assert bad["status"] == "rejected"
    assert bad["reason"].startswith(f"{field}: "), bad["reason"]
    assert says in bad["reason"], bad["reason"]
    assert bad["id"] == f"h-{case}-bad"

    single = await api.post("/v1/events", **raw(raw_event(f"h-{case}-alone", job, field, value)))
    assert single.status_code == 422, single.text
    assert single.json()["status"] == "rejected"
    assert single.json()["reason"] == bad["reason"].replace("-bad", "-alone")

    assert await stored(db, f"h-{case}-") == [f"h-{case}-good-1", f"h-{case}-good-2"]
    job_totals = (await api.get(f"/v1/jobs/{job}")).json()
    assert (job_totals["cost_usd"], job_totals["events"]) == ("0.0006", 2)


def text_event(event_id: str, job_id: str) -> bytes:
    return json.dumps(good(event_id, job_id=job_id)).encode()


def raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "0001-01-01T02:00:00+02:00"])
async def test_the_first_instant_of_year_1_is_refused_in_a_large_batch_too(
    api: AsyncTestClient[Any], db: asyncpg.Connection, stamp: str
) -> None:
    # Over 32 events a batch is staged by binary COPY, where asyncpg writes this instant as
    # -infinity: it used to be stored so, day and month included.
    tag = uuid.uuid4().hex[:8]
    events = [good(f"h1-{tag}-{i:02}", job_id=f"job-h1-{tag}") for i in range(40)]
    events[17]["occurred_at"] = stamp
    response = await api.post("/v1/events/batch", json={"events": events})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (39, 1), answer
    bad = answer["results"][17]
    assert bad["status"] == "rejected" and bad["id"] == f"h1-{tag}-17"
    assert bad["reason"] == (
        "occurred_at: 0001-01-01T00:00:00Z is the first or last instant of years 0001-9999, "
        "which PostgreSQL's binary protocol reads as -infinity or infinity; it cannot be "
        "stored as sent"
    )
    assert (
        await db.fetchval("SELECT count(*) FROM ledger_entries WHERE occurred_at = '-infinity'")
        == 0
    )
    assert len(await stored(db, f"h1-{tag}-")) == 39


async def test_the_last_microsecond_of_a_month_stays_in_its_day_and_month(
    api: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    event = {**good("h-edge", job_id="job-h-edge"), "occurred_at": "2025-11-30T23:59:59.999999Z"}
    assert (await api.post("/v1/events", json=event)).status_code == 201
    row = await db.fetchrow(
        "SELECT occurred_at, billing_day FROM ledger_entries WHERE event_id = 'h-edge'"
    )
    assert row is not None
    assert row["occurred_at"] == datetime(2025, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert row["billing_day"].isoformat() == "2025-11-30"


async def test_a_cost_with_40_significant_digits_is_stored_exactly(
    api: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    cost = "123456789012345678.0123456789012345678901"[:41]  # 18 + 22 digits
    event = {**good("h-40", job_id="job-h-40"), "provider_cost_usd": cost}
    assert (await api.post("/v1/events", json=event)).status_code == 201
    assert (
        str(
            await db.fetchval(
                f"SELECT provider_cost_usd FROM {STORED_EVENTS} WHERE event_id = 'h-40'"
            )
        )
        == cost
    )
    assert (await api.get("/v1/jobs/job-h-40")).json()["provider_cost_usd"] == cost


# Any string, either route ------------------------------------------------------------------

money_texts = st.one_of(
    st.text(alphabet="0123456789.-+eE_ ٠١٢", min_size=1, max_size=30),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,42})?", fullmatch=True),
    st.from_regex(r"0\.0{30,70}[1-9][0-9]{0,41}", fullmatch=True),
    st.text(min_size=1, max_size=10),
)


def storable_cost(value: str) -> Decimal | None:
    """SPEC §2's money rule written again here (leading zeros are digits like any other),
    plus LUC's bounds for a provider's cost: below 10^18 USD, at most 100 decimal places
    (every digit SPEC allows is kept: 40 significant ones)."""
    whole, point, fraction = value.partition(".")
    if not value.isascii() or not whole.isdigit() or (point and not fraction.isdigit()):
        return None
    if len(fraction) > 100:
        return None
    if len((whole + fraction).lstrip("0")) > 40:
        return None
    if len(whole.lstrip("0")) > 18:
        return None
    return Decimal(value)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=money_texts, single=st.booleans())
async def test_any_provider_cost_is_stored_exactly_or_rejected_with_a_reason(
    api: AsyncTestClient[Any], db: asyncpg.Connection, value: str, single: bool
) -> None:
    tag = uuid.uuid4().hex[:10]
    event = {**good(f"hp-{tag}", job_id=f"job-hp-{tag}"), "provider_cost_usd": value}
    expected = storable_cost(value)
    if single:
        response = await api.post("/v1/events", json=event)
        assert response.status_code == (201 if expected is not None else 422), response.text
        result = response.json()
    else:
        neighbours = [good(f"hp-{tag}-n{i}", job_id=f"job-hp-{tag}") for i in range(2)]
        batch = {"events": [neighbours[0], event, neighbours[1]]}
        response = await api.post("/v1/events/batch", json=batch)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [results[0]["status"], results[2]["status"]] == ["accepted", "accepted"]
        result = results[1]
    if expected is None:
        assert result["status"] == "rejected"
        assert result["reason"].startswith("provider_cost_usd: "), result
    else:
        assert result["status"] == "accepted", result
        kept = await db.fetchval(
            f"SELECT provider_cost_usd FROM {STORED_EVENTS} WHERE event_id = $1", f"hp-{tag}"
        )
        # Every digit, trailing zeros included (asyncpg may write 10000 as 1E+4).
        assert kept == expected and format(kept, "f") == format(expected, "f")


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, datetime | None]:
    """An RFC 3339 text with 0–9 fractional digits and some offset, and the instant it
    names when LUC must take it (at most 6 digits), else None."""
    moment = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 12, 31, 23, 59))
    )
    digits = draw(st.text(alphabet="0123456789", max_size=9))
    minutes = draw(st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
    sign = "-" if minutes < 0 else "+"
    offset = draw(st.sampled_from(["Z", f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"]))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + offset
    if len(digits) > 6:
        return text, None
    zone = UTC if offset == "Z" else timezone(timedelta(minutes=minutes))
    micros = int(digits.ljust(6, "0")) if digits else 0
    return text, moment.replace(microsecond=micros, tzinfo=zone)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stamp=timestamps(), single=st.booleans())
async def test_any_timestamp_is_kept_to_the_microsecond_or_rejected_never_rounded(
    api: AsyncTestClient[Any],
    db: asyncpg.Connection,
    stamp: tuple[str, datetime | None],
    single: bool,
) -> None:
    value, expected = stamp
    tag = uuid.uuid4().hex[:10]
    event = {**good(f"ht-{tag}", job_id=f"job-ht-{tag}"), "occurred_at": value}
    if single:
        response = await api.post("/v1/events", json=event)
        assert response.status_code == (201 if expected else 422), response.text
        result = response.json()
    else:
        batch = {"events": [good(f"ht-{tag}-n", job_id=f"job-ht-{tag}"), event]}
        response = await api.post("/v1/events/batch", json=batch)
        assert response.status_code == 200, response.text
        neighbour, result = response.json()["results"]
        assert neighbour["status"] == "accepted"
    if expected is None:
        assert result["status"] == "rejected"
        assert result["reason"].startswith("occurred_at: "), result
        assert "at most 6" in result["reason"], result
    else:
        assert result["status"] == "accepted", result
        row = await db.fetchrow(
            "SELECT occurred_at, billing_day FROM ledger_entries WHERE event_id = $1", f"ht-{tag}"
        )
        assert row is not None
        assert row["occurred_at"] == expected
        assert row["billing_day"] == expected.astimezone(UTC).date()


async def test_a_provider_cost_of_forty_significant_digits_is_kept_to_the_last_digit(
    api: AsyncTestClient[Any],
) -> None:
    """SPEC §2 allows 40 significant digits; LUC refused more than 30 decimal places."""
    costs = ["0." + "0" * 39 + "1", "1." + "2" * 39]
    events = [
        {**good(f"forty-{i}", job_id="job-forty"), "provider_cost_usd": cost}
        for i, cost in enumerate(costs)
    ]
    response = await api.post("/v1/events/batch", json={"events": events})
    assert response.json()["accepted"] == 2, response.text
    job = (await api.get("/v1/jobs/job-forty")).json()
    # 1.2222…2 (39 twos) + 0.000…01 (40th place) = 1.2222…2 then a 1 in the 40th place.
    assert job["provider_cost_usd"] == "1." + "2" * 39 + "1"
    assert job["actual_cost_usd"] == job["provider_cost_usd"]
