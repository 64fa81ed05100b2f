"""Prepaid credits (SPEC §12): grants, the balance, and the draws of recorded entries. The
caller owns the transaction.

Credits burn down as usage is recorded: the recording transaction hands ``draw_credits``
the priced entries it appended, which draw on (or give back to) their customers' grants by
``draw_rule``, and learns each customer's balance after, for the alerts. Credits are drawn
beside the ledger and never change it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from service.customers import credit_queries as queries
from service.customers.draw_rule import Grant, PricedEntry, balance, plan_draws
from service.customers.models import Customer
from service.customers.queries import CUSTOMER_EXISTS
from service.db import Connection, snapshot
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.wire import instant_text, money_text

MAX_REFERENCE_CHARS = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class NewGrant:
    amount_usd: Decimal
    expires_at: datetime | None = None
    reference: str | None = None
    """Free text: a purchase order, a contract, a promotion."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditGrant:
    id: int
    customer_id: str
    amount_usd: Decimal
    remaining_usd: Decimal
    expires_at: datetime | None
    reference: str | None
    created_at: datetime
    expired: bool
    """Its expiry has passed: what it still holds counts no more (the balance leaves it out)."""


@dataclass(frozen=True, slots=True)
class Credits:
    """A customer's credits: the balance now and every grant, oldest first."""

    balance_usd: Decimal
    grants: list[CreditGrant]


@dataclass(frozen=True, slots=True)
class CreditStanding:
    """A customer's credit after a recording transaction drew on it, or after its low
    balance changed: what its alerts are decided on (``budgets.credit_alerts``)."""

    customer_id: str
    balance_usd: Decimal
    low_balance_usd: Decimal | None
    low_alert_armed: bool
    exhausted_alert_armed: bool
    webhook_url: str | None


def _grant(r: Any) -> CreditGrant:
    return CreditGrant(**{name: r[name] for name in CreditGrant.__dataclass_fields__})


def check_grant(new: NewGrant, now: datetime) -> None:
    """A grant is a positive amount; its expiry, if any, lies ahead."""
    if not new.amount_usd.is_finite() or new.amount_usd <= 0:
        raise InvalidRequestError(
            f"amount_usd: must be more than zero, got {money_text(new.amount_usd)}"
        )
    if new.expires_at is not None and new.expires_at <= now:
        raise InvalidRequestError(
            f"expires_at: {instant_text(new.expires_at)} is not in the future (now is "
            f"{instant_text(now)}); a grant that has expired would never count"
        )
    if new.reference is not None and not 1 <= len(new.reference) <= MAX_REFERENCE_CHARS:
        raise InvalidRequestError(
            f"reference: must be 1 to {MAX_REFERENCE_CHARS} characters, got {len(new.reference)}"
        )
    if new.reference is not None and "\x00" in new.reference:
        raise InvalidRequestError("reference: must not contain the NUL character (U+0000)")


async def grant_credits(
    conn: Connection, customer_id: str, new: NewGrant, now: datetime
) -> tuple[CreditGrant, bool]:
    """Grant ``customer_id`` prepaid credits; re-arms the alerts the grant clears. Returns
    the grant and whether it is new: a grant whose ``reference`` the customer already has
    is that earlier grant when it is the same grant (a client's retry after a lost answer
    must not credit twice), else a conflict."""
    check_grant(new, now)
    async with conn.transaction():
        customer = await conn.fetchrow(queries.CUSTOMER_TO_GRANT, customer_id)
        if customer is None:
            raise NotFoundError(f"customer {customer_id!r} does not exist")
        # The account row first, as every writer of the customer's grants takes it: two
        # grants under one reference queue here, and the second finds the first.
        await conn.fetchval(queries.OPEN_ACCOUNT, customer_id)
        if new.reference is not None:
            earlier = await conn.fetchrow(
                queries.SELECT_GRANT_BY_REFERENCE, customer_id, new.reference
            )
            if earlier is not None:
                return _same_grant(_grant(earlier), new), False
        row = await conn.fetchrow(
            queries.INSERT_GRANT, customer_id, new.amount_usd, new.expires_at, new.reference
        )
        assert row is not None
        after = await balance_of(conn, customer_id)
        low = customer["low_balance_usd"]
        await conn.execute(
            queries.REARM_ALERTS, customer_id, low is None or after >= low, after > 0
        )
    return _grant(row), True


def _same_grant(earlier: CreditGrant, new: NewGrant) -> CreditGrant:
    """``earlier`` (granted under ``new``'s reference) when ``new`` asks for the very same
    grant; otherwise the reference is taken by another grant: a conflict naming it."""
    if earlier.amount_usd == new.amount_usd and earlier.expires_at == new.expires_at:
        return earlier
    expiry = instant_text(earlier.expires_at) if earlier.expires_at else "never"
    raise ConflictError(
        f"reference: {earlier.reference!r} names grant {earlier.id} already "
        f"({money_text(earlier.amount_usd)} USD, expires {expiry}); a reference names one "
        "grant: send that grant again to get it back, or use another reference"
    )


async def balance_of(conn: Connection, customer_id: str) -> Decimal:
    return (await balances_of(conn, [customer_id])).get(customer_id, Decimal(0))


async def balances_of(conn: Connection, customer_ids: Sequence[str]) -> dict[str, Decimal]:
    """The balance of each customer that holds grants (the others have none: zero)."""
    rows = await conn.fetch(queries.SELECT_BALANCES, list(customer_ids))
    return {r["customer_id"]: r["balance_usd"] for r in rows}


async def credits_of(conn: Connection, customer_id: str) -> Credits:
    """A registered customer's balance and grants (404 for an unknown customer)."""
    if not await conn.fetchval(CUSTOMER_EXISTS, customer_id):
        raise NotFoundError(f"customer {customer_id!r} does not exist")
    # The balance is the sum of the grants' remainders: read in two statements, a batch
    # drawing credits between them gave an answer whose balance its grants did not hold.
    async with snapshot(conn):
        grants = [_grant(r) for r in await conn.fetch(queries.SELECT_GRANTS, customer_id)]
        return Credits(await balance_of(conn, customer_id), grants)


async def draw_credits(conn: Connection, entries: Sequence[PricedEntry]) -> list[CreditStanding]:
    """Draw the credits of freshly appended priced ``entries`` (positive prices draw,
    negative ones give back) in the caller's transaction; the standing after, of each
    customer with credits among them.

    Entries of customers that never had credits cost one statement (nothing to lock).
    """
    customers = sorted({e.customer_id for e in entries if e.price_usd != 0})
    if not customers:
        return []
    accounts = await conn.fetch(queries.LOCK_ACCOUNTS, customers)
    if not accounts:
        return []
    held_by = {a["customer_id"] for a in accounts}
    mine = [e for e in entries if e.customer_id in held_by and e.price_usd != 0]
    giving_back = sorted({e.event_id for e in mine if e.price_usd < 0})
    drawn: dict[str, list[tuple[int, Decimal]]] = {}
    priced_before: dict[tuple[str, str], Decimal] = {}
    if giving_back:
        for r in await conn.fetch(queries.SELECT_HELD, giving_back):
            drawn.setdefault(r["event_id"], []).append((r["grant_id"], r["held_usd"]))
        for r in await conn.fetch(
            queries.SELECT_PRICED_BEFORE,
            giving_back,
            sorted(held_by),
            [e.entry_id for e in entries],
        ):
            priced_before[(r["event_id"], r["customer_id"])] = r["price_usd"]
    rows = await conn.fetch(
        queries.SELECT_DRAWABLE,
        sorted(held_by),
        sorted({grant_id for pairs in drawn.values() for grant_id, _ in pairs}),
    )
    grants = [
        Grant(
            r["id"],
            r["customer_id"],
            r["amount_usd"],
            r["remaining_usd"],
            r["expires_at"],
            r["created_at"],
        )
        for r in rows
    ]
    # The transaction's start: when its entries are recorded. (No grant: no row, no draw.)
    at = rows[0]["at"] if rows else await conn.fetchval(queries.NOW)
    plan = plan_draws(mine, grants, drawn, at, priced_before)
    if plan.draws:
        d = plan.draws
        moved = await conn.fetch(
            queries.APPLY_DRAWS,
            [x.entry_id for x in d],
            [x.event_id for x in d],
            [x.grant_id for x in d],
            [x.customer_id for x in d],
            [x.amount_usd for x in d],
        )
        # The account locks make the plan's arithmetic the database's; a difference would
        # be a writer that skipped them, and must not pass unseen.
        for r in moved:
            if r["remaining_usd"] != plan.remaining[r["id"]]:
                raise RuntimeError(
                    f"credit grant {r['id']} holds {r['remaining_usd']}, the draws planned "
                    f"{plan.remaining[r['id']]}: a writer changed it without the account lock"
                )
    return [
        CreditStanding(
            customer_id=a["customer_id"],
            balance_usd=balance(
                [g for g in grants if g.customer_id == a["customer_id"]], plan.remaining, at
            ),
            low_balance_usd=a["low_balance_usd"],
            low_alert_armed=a["low_alert_armed"],
            exhausted_alert_armed=a["exhausted_alert_armed"],
            webhook_url=a["webhook_url"],
        )
        for a in accounts
    ]


async def set_alert_arming(conn: Connection, arming: dict[str, tuple[bool, bool]]) -> None:
    """Arm or disarm the customers' alerts: customer id → (low armed, exhausted armed)."""
    if arming:
        ids = sorted(arming)
        await conn.execute(
            queries.SET_ALERT_ARMING, ids, [arming[c][0] for c in ids], [arming[c][1] for c in ids]
        )


async def standing_of(conn: Connection, customer_id: str) -> CreditStanding | None:
    """The customer's credit as it stands, its account locked as a recording transaction
    locks it; ``None`` for a customer that never held credits."""
    accounts = await conn.fetch(queries.LOCK_ACCOUNTS, [customer_id])
    if not accounts:
        return None
    a = accounts[0]
    return CreditStanding(
        customer_id=customer_id,
        balance_usd=await balance_of(conn, customer_id),
        low_balance_usd=a["low_balance_usd"],
        low_alert_armed=a["low_alert_armed"],
        exhausted_alert_armed=a["exhausted_alert_armed"],
        webhook_url=a["webhook_url"],
    )


async def credits_applied(conn: Connection, entry_ids: Sequence[int]) -> Decimal:
    """The credits drawn by exactly ``entry_ids``, net of what they gave back."""
    if not entry_ids:
        return Decimal(0)
    value: Decimal = await conn.fetchval(queries.CREDITS_OF_ENTRIES, list(entry_ids))
    return value


@dataclass(frozen=True, slots=True)
class CreditStop:
    """Whether a call of a job must be refused for its customer's credits."""

    customer_id: str
    balance_usd: Decimal

    @property
    def reason(self) -> str:
        return (
            f"customer {self.customer_id!r} has no prepaid credits left and credit_stop is "
            f"set: grant credits (POST /v1/customers/{quote(self.customer_id, safe='')}/credits)"
        )


async def credit_stop(
    conn: Connection, job_id: str | None, customer_id: str | None
) -> CreditStop | None:
    """A refusal when the job's customer (else ``customer_id``) has ``credit_stop`` set and
    a balance of zero; None when its calls may go ahead."""
    if job_id is None and customer_id is None:
        return None
    row = await conn.fetchrow(queries.SELECT_CREDIT_STOP, job_id, customer_id)
    if row is None or not row["credit_stop"] or row["balance_usd"] > 0:
        return None
    return CreditStop(row["id"], row["balance_usd"])


async def with_balances(
    conn: Connection, customers: Sequence[Customer]
) -> list[tuple[Customer, Decimal]]:
    """Each customer with its prepaid balance now (zero without credits)."""
    found = await balances_of(conn, [c.id for c in customers])
    return [(c, found.get(c.id, Decimal(0))) for c in customers]
