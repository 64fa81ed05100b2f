"""Re-rating's plan: how an event stands on the ledger (its booking), and the entries that
move it to the price the catalog gives it now. ``rerating`` runs the plan.

An event's live booking (version, model, cost) is compared with what the version in
force at its ``occurred_at`` says today. When the money differs (or the event was
unpriced), two entries are appended: a reversal of the booking and a new booking. An
event whose cost is the same under the newer version keeps its booking. Nothing is
edited, and running the same re-rating twice appends nothing the second time, because the
bookings then agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from service.db import Connection
from service.ingest.models import UsageEvent
from service.ingest.service import event_from_row
from service.ledger import queries
from service.ledger.models import NewLedgerEntry
from service.ledger.service import charge_for, event_entry, price_columns
from service.money import exact_difference
from service.pricing.catalog import Catalog
from service.pricing.models import Rate
from service.pricing.plans import Plans

log = structlog.get_logger("luc.rerate")


@dataclass(frozen=True, slots=True)
class Booking:
    """How an event stands on the ledger now."""

    event: UsageEvent
    catalog_version: int | None
    model: str
    tier: str | None
    cost_usd: Decimal | None
    actual_cost_usd: Decimal | None
    """What the booking's entries hold as actual cost (SPEC §3); None when unknown."""
    unpriced: bool
    long_context_from: int | None = None
    """The rate of ``catalog_version`` it was booked at (``pricing.models.Rate``)."""
    price_usd: Decimal | None = None
    """What its customer pays for it now (the sum of its entries'); None when unknown."""
    customer_id: str | None = None
    """The customer it is booked for."""
    plan_id: str | None = None
    plan_version: int | None = None
    """The plan version that set its price (its latest entry's); None when no plan did."""
    job_customer_id: str | None = None
    """Its job's customer now: the one it should be booked for."""
    customer_plan_id: str | None = None
    """That customer's rate plan now (None: no customer, unregistered, or no plan)."""


@dataclass(frozen=True, slots=True)
class Rerating:
    """One event's change: its old booking, the new one, and the entries that do it."""

    booking: Booking
    entries: tuple[NewLedgerEntry, NewLedgerEntry]

    @property
    def new_version(self) -> int | None:
        return self.entries[1].catalog_version

    @property
    def delta_usd(self) -> Decimal:
        """Change of the event's cost; an unpriced booking counts as no cost yet."""
        return exact_difference(
            self.entries[1].cost_usd or Decimal(0), self.booking.cost_usd or Decimal(0)
        )

    @property
    def price_delta_usd(self) -> Decimal:
        """Change of what the customer pays; an unknown price counts as nothing."""
        return exact_difference(
            self.entries[1].price_usd or Decimal(0), self.booking.price_usd or Decimal(0)
        )

    @property
    def actual_delta_usd(self) -> Decimal:
        """Change of the event's actual cost: the catalog's change when the provider
        reported no cost, nothing when it did (its figure stays what was paid)."""
        return exact_difference(
            self.entries[1].actual_cost_usd or Decimal(0),
            self.booking.actual_cost_usd or Decimal(0),
        )


def booking_from_row(r: Any) -> Booking:
    return Booking(
        event=event_from_row(r),
        catalog_version=r["catalog_version"],
        long_context_from=r["long_context_from"],
        model=r["booked_model"],
        tier=r["tier"],
        cost_usd=r["cost_usd"],
        actual_cost_usd=r["actual_cost_usd"],
        unpriced=bool(r["unpriced"]),
        price_usd=r["price_usd"],
        customer_id=r["booked_customer_id"],
        plan_id=r["plan_id"],
        plan_version=r["plan_version"],
        job_customer_id=r["job_customer_id"],
        customer_plan_id=r["customer_plan_id"],
    )


def booked_rate(booking: Booking, catalog: Catalog) -> Rate | None:
    """The rate ``booking`` was priced at (None while unpriced), found in ``catalog``."""
    old = catalog.by_id.get(booking.catalog_version) if booking.catalog_version else None
    old_price = old.models.get(booking.model) if old else None
    return old_price.rate_from(booking.long_context_from) if old_price else None


def on_booking(booking: Booking, sign: int) -> dict[str, Any]:
    """``ledger.service.event_entry`` of the booking's event on the booking's own line."""
    return event_entry(
        booking.event,
        model=booking.model,
        tier=booking.tier,
        catalog_version=booking.catalog_version,
        sign=sign,
    )


def reversal_of(booking: Booking, catalog: Catalog, why: str) -> NewLedgerEntry:
    """The entry that takes ``booking`` back whole: its event, tokens, costs and price,
    for the customer and plan version it was booked for. It names the rate it takes back:
    the one the booking was priced at."""
    event = booking.event
    return NewLedgerEntry(
        kind="adjustment",
        **on_booking(booking, sign=-1),
        event_count=-1,
        unpriced_count=-1 if booking.unpriced else 0,
        # copy_negate, not unary minus: the minus applies the context's 28-digit rounding.
        # The actual cost follows from these two (a generated column): it takes back
        # exactly what the booking holds.
        cost_usd=None if booking.cost_usd is None else booking.cost_usd.copy_negate(),
        provider_cost_usd=(
            None if event.provider_cost_usd is None else event.provider_cost_usd.copy_negate()
        ),
        **price_columns(booked_rate(booking, catalog)),
        reason=f"reversal: {why}",
        price_usd=None if booking.price_usd is None else booking.price_usd.copy_negate(),
        customer_id=booking.customer_id,
        plan_id=booking.plan_id,
        plan_version=booking.plan_version,
    )


def plan_rerating(booking: Booking, catalog: Catalog, plans: Plans, why: str) -> Rerating | None:
    """The entries that move ``booking`` to today's catalog price, or None when it already
    agrees. The new booking is priced for the job's customer by the plan in force at the
    event (``plans``): where the plan's basis cost moves, so does the price."""
    event = booking.event
    quote = catalog.quote(event.model, event.occurred_at)
    target = charge_for(
        event,
        quote,
        booking.job_customer_id,
        plans.in_force(booking.customer_plan_id, event.occurred_at),
    )
    if (
        target.catalog_version == booking.catalog_version
        and target.model == booking.model
        and target.cost_usd == booking.cost_usd
    ):
        # The same version prices the same model the same way; only a rule outside the
        # catalog (a stub answer booked at the catalog's price before stub answers were
        # priced at zero) changes the money under one version. The price is re-pricing's
        # (``repricing``), not re-rating's.
        return None
    if (
        booking.cost_usd is not None
        and target.cost_usd == booking.cost_usd
        and (target.model, target.tier) == (booking.model, booking.tier)
    ):
        # Same money under a newer version (a price that did not change): re-booking it
        # would add two entries that cancel out and tell finance nothing.
        return None
    reversal = reversal_of(booking, catalog, why)
    rebooking = NewLedgerEntry(
        **{
            **{f: getattr(target, f) for f in NewLedgerEntry.__dataclass_fields__},
            "kind": "adjustment",
            "reason": why + (f"; {_why_so(booking, target)}" if target.reason else ""),
        }
    )
    return Rerating(booking=booking, entries=(reversal, rebooking))


def _why_so(booking: Booking, entry: NewLedgerEntry) -> str:
    """Why the new booking is unpriced, or why its price is not the catalog's (a stub)."""
    if not entry.unpriced_count:
        return str(entry.reason)
    return f"{'still' if booking.cost_usd is None else 'now'} unpriced: {entry.reason}"


@dataclass(frozen=True, slots=True)
class BookingPage:
    """A page of events (``limit`` of them unless it is the last) with their live
    bookings: the caller pages on by events, not by bookings."""

    bookings: list[Booking]
    events: int
    """Events the page covered; fewer than asked for only on the last page."""
    last: tuple[datetime, str] | None
    """The cursor after its last event (``occurred_at``, ``id``); None for an empty page."""


def _booking_page(rows: Sequence[Any]) -> BookingPage:
    """The page of ``rows`` (``queries._page_of_bookings``). An event without a live
    booking is left alone, logged: the ledger's rules give each event exactly one, and a
    page that dropped it would come back short and end the run before its later events."""
    orphans = [r["event_id"] for r in rows if not r["booked"]]
    if orphans:
        log.error("events_without_a_live_booking", events=len(orphans), first=orphans[0])
    cursors = {(r["occurred_at"], r["event_id"]) for r in rows}
    return BookingPage(
        [booking_from_row(r) for r in rows if r["booked"]],
        len(cursors),
        (rows[-1]["occurred_at"], rows[-1]["event_id"]) if rows else None,
    )


async def bookings_since(
    conn: Connection, since: datetime, after: tuple[datetime, str] | None, limit: int
) -> BookingPage:
    """A page of ``limit`` events that occurred at or after ``since``, with their live
    bookings."""
    # (since, "") starts at ``since`` itself: event ids are never empty.
    start_at, start_id = after if after else (since, "")
    rows = await conn.fetch(queries.SELECT_BOOKINGS_SINCE, since, start_at, start_id, limit)
    return _booking_page(rows)


async def count_events_since(conn: Connection, since: datetime) -> int:
    return int(await conn.fetchval(queries.COUNT_EVENTS_SINCE, since))


async def unpriced_bookings(conn: Connection) -> list[Booking]:
    """Live bookings of every event that is still unpriced."""
    return [booking_from_row(r) for r in await conn.fetch(queries.SELECT_UNPRICED_BOOKINGS)]


async def job_bookings(conn: Connection, job_ids: Sequence[str]) -> list[Booking]:
    """Live bookings of every event of ``job_ids``."""
    rows = await conn.fetch(queries.SELECT_JOB_BOOKINGS, list(job_ids))
    return [booking_from_row(r) for r in rows]


async def plan_bookings(
    conn: Connection,
    plan_id: str,
    *,
    is_default: bool,
    since: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> BookingPage:
    """A page of ``limit`` events since ``since`` that plan ``plan_id`` prices or priced
    (``queries.SELECT_PLAN_BOOKINGS``), with their live bookings; ``is_default``: it is
    LUC_DEFAULT_PLAN."""
    start_at, start_id = after if after else (since, "")
    rows = await conn.fetch(
        queries.SELECT_PLAN_BOOKINGS, since, plan_id, is_default, start_at, start_id, limit
    )
    return _booking_page(rows)


async def count_plan_events_since(
    conn: Connection, plan_id: str, *, is_default: bool, since: datetime
) -> int:
    return int(await conn.fetchval(queries.COUNT_PLAN_EVENTS_SINCE, since, plan_id, is_default))
