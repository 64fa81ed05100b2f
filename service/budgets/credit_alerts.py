"""A customer's credit alerts (SPEC §12): ``customer.credits_low`` when its balance is below
its ``low_balance_usd``, ``customer.credits_exhausted`` when it is zero.

Decided after each recording transaction's draws, on the balance they leave, while the
customer's credit account is locked (``customers.credits``): an alert fires when it is
armed and its condition holds, and is disarmed as it fires, so each fires once per
crossing however many batches run at once. It is armed again by whatever clears its
condition: a grant, credit given back (a job moved to another customer, a re-pricing
down), a low balance set lower. A change of the low balance decides the alerts at once,
as a budget's new limit does its thresholds. The alert goes in the same outbox as budget
alerts, to the customer's ``webhook_url`` when it has one, signed with
``LUC_WEBHOOK_SECRET``.

A balance that falls because a grant expired is seen by the customer's next draw: alerts
are raised in recording transactions, not by a clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.budgets import queries
from service.budgets.models import CREDITS_EXHAUSTED, CREDITS_LOW
from service.customers.credits import CreditStanding, set_alert_arming, standing_of
from service.customers.models import Customer, CustomerChanges
from service.customers.service import update_customer
from service.db import Connection


def arming(standing: CreditStanding) -> tuple[bool, bool]:
    """Whether each alert (low, exhausted) is armed once ``standing`` is decided: exactly
    while its condition does not hold. One whose condition holds has fired, now or at its
    crossing; one whose condition was cleared fires at the next crossing (before, only a
    grant re-armed it: a balance raised by credit given back, then drawn down again,
    crossed in silence)."""
    low = standing.low_balance_usd
    return low is None or standing.balance_usd >= low, standing.balance_usd > 0


def due_alerts(standing: CreditStanding) -> list[str]:
    """The alert types ``standing`` fires now (low first: a balance that drops from above
    the low balance to zero has passed both)."""
    low_clear, funded = arming(standing)  # the conditions, declared there once
    due = []
    if standing.low_alert_armed and not low_clear:
        due.append(CREDITS_LOW)
    if standing.exhausted_alert_armed and not funded:
        due.append(CREDITS_EXHAUSTED)
    return due


async def raise_credit_alerts(conn: Connection, standings: Sequence[CreditStanding]) -> int:
    """Record the alerts ``standings`` fire, with their outbox rows, and disarm them, in the
    caller's transaction (the one that drew). Returns how many alerts were raised."""
    fired = [(s, kind) for s in standings for kind in due_alerts(s)]
    await set_alert_arming(
        conn,
        {
            s.customer_id: armed
            for s in standings
            if (armed := arming(s)) != (s.low_alert_armed, s.exhausted_alert_armed)
        },
    )
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
    return len(created)


async def update_customer_deciding_alerts(
    conn: Connection, customer_id: str, changes: CustomerChanges
) -> Customer:
    """``customers.service.update_customer``, and when ``changes`` move the customer's low
    balance, its credit alerts decided at once on the new one, in the same transaction."""
    async with conn.transaction():
        customer = await update_customer(conn, customer_id, changes)
        if changes.low_balance_usd is not None or "low_balance_usd" in changes.clear:
            standing = await standing_of(conn, customer_id)
            if standing is not None:
                await raise_credit_alerts(conn, [standing])
    return customer
