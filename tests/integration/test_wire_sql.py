"""The wire forms written by PostgreSQL (``service.wire``'s ``*_sql``) are the Python forms,
character for character: every amount, instant and day that the reads answer straight
from SQL reads as ``money_text``, ``instant_text`` and ``day_text`` would have written it
from the Decimal, datetime or date asyncpg makes of the same value.

The values: hand-picked edges (zero at any scale, trailing zeros, 40 significant digits,
40 decimal places, negative amounts, midnight, the last microsecond of a year, year 1)
and thousands drawn at random with a fixed seed; on a session whose TimeZone and DateStyle
are not UTC and ISO, which the SQL forms must not follow.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg

from service.pricing.price import margin
from service.wire import (
    day_text,
    day_text_sql,
    instant_text,
    instant_text_sql,
    money_text,
    money_text_sql,
)

D = Decimal
EDGE_AMOUNTS = [
    D(0),
    D("0.000"),
    D("0E-20"),
    D("-0.000"),
    D("1E+2"),
    D("100.00"),
    D("10"),
    D("0.0150"),
    D("-1.50000"),
    D("0.0000001"),
    D("1E-40"),
    D("-1E-40"),
    D("1234567890123456789012345678901234567890"),
    D("123456789012345678901234567890.000000000000000000000000000001"),
    D("99999999999999999999.99999999999999999999"),
    D("922337003685.4775807"),
    D("5E+30"),
]


def random_amounts(rng: random.Random, count: int) -> list[Decimal]:
    """Amounts of 1 to 40 digits at scales from 45 places to a positive exponent, some
    with trailing zeros, of either sign."""
    amounts = []
    for _ in range(count):
        digits = rng.randint(1, 40)
        coefficient = rng.randrange(10 ** (digits - 1), 10**digits) * 10 ** rng.choice(
            (0, 0, 0, 1, 3, 7)
        )
        amounts.append(D(rng.choice((1, 1, -1)) * coefficient).scaleb(rng.randint(-45, 5)))
    return amounts


async def test_amounts_written_by_postgresql_are_money_text(db: asyncpg.Connection) -> None:
    amounts = [*EDGE_AMOUNTS, *random_amounts(random.Random(18), 5_000)]
    rows = await db.fetch(
        f"SELECT v, {money_text_sql('v')} AS text FROM unnest($1::numeric[]) AS v", amounts
    )
    assert len(rows) == len(amounts)
    # The Decimal asyncpg reads back (PostgreSQL's scale) is what money_text was given.
    different = [(r["v"], r["text"]) for r in rows if money_text(r["v"]) != r["text"]]
    assert different == []
    assert [r["text"] for r in rows[: len(EDGE_AMOUNTS)]] == [
        "0",
        "0",
        "0",
        "0",
        "100",
        "100",
        "10",
        "0.015",
        "-1.5",
        "0.0000001",
        "0." + "0" * 39 + "1",
        "-0." + "0" * 39 + "1",
        "1234567890123456789012345678901234567890",
        "123456789012345678901234567890.000000000000000000000000000001",
        "99999999999999999999.99999999999999999999",
        "922337003685.4775807",
        "5" + "0" * 30,
    ]
    assert await db.fetchval(f"SELECT {money_text_sql('NULL::numeric')}") is None


async def test_a_margin_written_by_postgresql_is_the_margin_as_money_text(
    db: asyncpg.Connection,
) -> None:
    """What ``rollups.queries`` derives in SQL: the exact difference, NULL with a NULL."""
    rng = random.Random(1818)
    prices = [*EDGE_AMOUNTS, *random_amounts(rng, 2_000), None, D(1)]
    costs = [*reversed(EDGE_AMOUNTS), *random_amounts(rng, 2_000), D(1), None]
    rows = await db.fetch(
        f"SELECT p, c, {money_text_sql('p - c')} AS text"
        " FROM unnest($1::numeric[], $2::numeric[]) AS t (p, c)",
        prices,
        costs,
    )
    expected = [None if (m := margin(r["p"], r["c"])) is None else money_text(m) for r in rows]
    assert [r["text"] for r in rows] == expected
    assert expected[-2:] == [None, None]


async def test_instants_and_days_written_by_postgresql_are_the_wire_forms(
    db: asyncpg.Connection,
) -> None:
    rng = random.Random(18)
    # A microsecond inside the range either way: asyncpg sends the very first and last
    # instants a datetime holds as PostgreSQL's -infinity and infinity.
    first = datetime(1, 1, 1, 0, 0, 0, 1, UTC)
    last = datetime(9999, 12, 31, 23, 59, 59, 999998, UTC)
    span = int((last - first).total_seconds())
    instants = [
        first,
        last,
        datetime(2026, 11, 24, tzinfo=UTC),
        datetime(2026, 11, 24, 10, 0, 0, 250000, UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, UTC),
        datetime(999, 1, 2, 3, 4, 5, 1, UTC),
    ]
    for _ in range(3_000):
        at = first + timedelta(seconds=rng.randrange(span))
        instants.append(at.replace(microsecond=rng.choice((0, rng.randrange(1_000_000)))))
    # A session that writes neither instants nor dates in ISO, nor in UTC.
    await db.execute("SET TimeZone = 'America/St_Johns'; SET DateStyle = 'SQL, DMY'")
    rows = await db.fetch(
        f"SELECT t, {instant_text_sql('t')} AS instant,"
        f" (t AT TIME ZONE 'UTC')::date AS d, {day_text_sql('(t AT TIME ZONE $2)::date')} AS day"
        " FROM unnest($1::timestamptz[]) AS t",
        instants,
        "UTC",
    )
    assert [r["instant"] for r in rows] == [instant_text(t) for t in instants]
    assert [r["day"] for r in rows] == [day_text(r["d"]) for r in rows]
    assert [r["instant"] for r in rows[:6]] == [
        "0001-01-01T00:00:00.000001Z",
        "9999-12-31T23:59:59.999998Z",
        "2026-11-24T00:00:00Z",
        "2026-11-24T10:00:00.250000Z",
        "2026-12-31T23:59:59.999999Z",
        "0999-01-02T03:04:05.000001Z",
    ]
    assert rows[5]["day"] == "0999-01-02"
    assert await db.fetchval(f"SELECT {instant_text_sql('NULL::timestamptz')}") is None
    assert await db.fetchval(f"SELECT {day_text_sql('$1::date')}", date(5, 6, 7)) == "0005-06-07"
