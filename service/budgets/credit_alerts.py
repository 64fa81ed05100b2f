"""A customer's credit alerts (SPEC §12): ``customer.credits_low`` when its balance is below
its ``low_balance_usd``, ``customer.credits_exhausted`` when it is zero.

Decided after each recording transaction's draws, on the balance they leave, while the
customer's credit account is locked (``customers.credits``): an alert fires when it is
armed and its condition holds, and is disarmed as it fires, so each fires once per
crossing however many batches run at once. A grant re-arms the alerts whose condition it
clears. The alert goes in the same outbox as budget alerts, to the customer's
``webhook_url`` when it has one, signed with ``LUC_WEBHOOK_SECRET``.

A balance that falls because a grant expired is seen by the customer's next draw: alerts
are raised in recording transactions, not by a clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.budgets import queries
from service.budgets.models import CREDITS_EXHAUSTED, CREDITS_LOW
from service.customers.credits import CreditStanding, disarm_alerts
from service.db import Connection


def due_alerts(standing: CreditStanding) -> list[str]:
    """The alert types ``standing`` fires now (low first: a balance that drops from above
    the low balance to zero has passed both)."""
    due = []
    low = standing.low_balance_usd
    if standing.low_alert_armed and low is not None and standing.balance_usd < low:
        due.append(CREDITS_LOW)
    if standing.exhausted_alert_armed and standing.balance_usd <= 0:
        due.append(CREDITS_EXHAUSTED)
    return due


async def raise_credit_alerts(conn: Connection, standings: Sequence[CreditStanding]) -> int:
    """Record the alerts ``standings`` fire, with their outbox rows, and disarm them, in the
    caller's transaction (the one that drew). Returns how many alerts were raised."""
    fired = [(s, kind) for s in standings for kind in due_alerts(s)]
    if not fired:
        return 0
    created = await conn.fetch(
        queries.INSERT_CREDIT_ALERTS,
        [kind for _, kind in fired],
        [s.customer_id for s, _ in fired],
        [s.balance_usd for s, _ in fired],
        [s.low_balance_usd for s, _ in fired],
    )
    urls = {s.customer_id: s.webhook_url for s in standings}
    with_hooks = [(r["id"], urls[r["customer_id"]]) for r in created if urls[r["customer_id"]]]
    if with_hooks:
        await conn.execute(
            queries.INSERT_OUTBOX, [a for a, _ in with_hooks], [u for _, u in with_hooks]
        )
    await disarm_alerts(
        conn,
        {
            s.customer_id: (CREDITS_LOW in kinds, CREDITS_EXHAUSTED in kinds)
            for s in standings
            if (kinds := due_alerts(s))
        },
    )
    return len(created)
