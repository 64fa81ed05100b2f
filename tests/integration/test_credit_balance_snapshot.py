"""A customer's credits (``GET /v1/customers/{id}/credits``) are read in one snapshot: the
balance is what the grants listed beside it hold.

They were read in two statements, the grants and then their balance; a batch drawing
credits (or a grant) committed between the two gave an answer whose balance its grants did
not hold (about one answer in eleven under steady ingest). Here the other session commits
a grant exactly between the two statements, so the test does not depend on timing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg

from service.customers.credit_queries import SELECT_GRANTS
from service.customers.credits import NewGrant, credits_of, grant_credits
from service.db import Connection
from tests.support.databases import connected

NOW = datetime(2026, 11, 20, tzinfo=UTC)


class _GrantAfterReadingGrants:
    """``conn``, but once its grants are read, ``other`` commits another grant."""

    def __init__(self, conn: asyncpg.Connection, other: asyncpg.Connection) -> None:
        self._conn = conn
        self._other = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._conn.fetch(query, *args)
        if query == SELECT_GRANTS:
            await grant_credits(self._other, "acme", NewGrant(amount_usd=Decimal("25")), NOW)
        return rows


async def test_the_balance_is_what_the_grants_beside_it_hold(
    db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute("INSERT INTO customers (id, name) VALUES ('acme', 'Acme')")
    await grant_credits(db, "acme", NewGrant(amount_usd=Decimal("100")), NOW)
    async with connected(database_url) as other:
        read = await credits_of(cast(Connection, _GrantAfterReadingGrants(db, other)), "acme")
    assert [g.remaining_usd for g in read.grants] == [Decimal("100")]
    assert read.balance_usd == Decimal("100")  # not 125: the grant came after the snapshot
    # Read again, both are there.
    again = await credits_of(db, "acme")
    assert ([g.remaining_usd for g in again.grants], again.balance_usd) == (
        [Decimal("100"), Decimal("25")],
        Decimal("125"),
    )
