"""Prepaid credits burn down in the recording transaction (SPEC §12): the priced entries a
batch or an adjustment appends draw on their customers' grants (``customers.credits``),
and the balances they leave raise the customers' credit alerts (``budgets.credit_alerts``),
in the same transaction as the entries.

A batch hands over its charges as it priced them (no read of what it just wrote); an
adjustment's entries are read back by id, re-pricing being rare. Entries are handed over
in ledger order: a batch's charges before the re-pricing its events cause.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from service.budgets.credit_alerts import raise_credit_alerts
from service.customers.credits import draw_credits
from service.customers.draw_rule import PricedEntry
from service.db import Connection
from service.recording import queries


async def burn(conn: Connection, entries: Sequence[PricedEntry]) -> int:
    """Draw the credits of ``entries`` and raise the alerts they cause; returns how many."""
    if not entries:
        return 0
    return await raise_credit_alerts(conn, await draw_credits(conn, entries))


async def burn_charges(
    conn: Connection,
    charges: Iterable[tuple[str, str | None, Decimal | None, datetime]],
    entry_ids: dict[str, int],
) -> int:
    """``burn`` the charges a batch appended, each as (event id, customer, price, when:
    ``ledger.service.staged_price``); ``entry_ids``: event id → the id of its new charge;
    a replayed event has none and draws nothing again."""
    return await burn(
        conn,
        [
            PricedEntry(entry_ids[event_id], event_id, customer_id, price_usd, occurred_at)
            for event_id, customer_id, price_usd, occurred_at in charges
            if event_id in entry_ids and customer_id is not None and price_usd
        ],
    )


async def burn_appended(conn: Connection, entry_ids: Sequence[int]) -> int:
    """``burn`` appended entries read back by id: those of customers holding credits."""
    if not entry_ids:
        return 0
    rows = await conn.fetch(queries.CREDIT_ENTRIES, list(entry_ids))
    return await burn(
        conn,
        [
            PricedEntry(r["id"], r["event_id"], r["customer_id"], r["price_usd"], r["occurred_at"])
            for r in rows
        ],
    )
