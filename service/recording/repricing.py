"""Re-pricing recorded events for their customers: the price moves, the cost never does.

An event's booking is priced for a customer by a plan version (``bookings.Booking``). What
it should be priced at now is its job's customer's plan in force at its ``occurred_at``
(or ``LUC_DEFAULT_PLAN``'s, or none: the catalog cost). When the two differ:

- for the same customer, both prices known: one adjustment carrying the change of price
  alone (no event, no token, no cost) with the plan version that sets the new price;
- for another customer (the job's customer was set or changed), or a price that becomes
  known or unknown: a reversal of the booking, and the same booking for the job's customer
  at its new price. The event's cost goes back and forth unchanged (a job's, an agent's,
  a model's cost does not move), and the customer × month rollup moves the event from
  the old customer to the new.

Three callers: a job's customer set by its events (``record_batch``) or changed by a PATCH
(``change_job_customer``), in the transaction that sets it; and ``reprice_plan``, which
reaches the past events of a plan's customers after a version effective in the past or a
customer's change of plan, in chunks, or only reports it (dry run). Running any of them
twice appends nothing the second time: the bookings then agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from service.catalog.service import CatalogCache, load_catalog
from service.customers.plans import PlanCache, load_plans
from service.db import Connection
from service.errors import NotFoundError
from service.jobs.models import JobChanges, JobUpdate
from service.jobs.service import update_job
from service.ledger.models import NewLedgerEntry
from service.ledger.service import customer_pricing, price_columns
from service.locks import lock_repricing
from service.money import EXACT, exact_difference
from service.pricing.catalog import Catalog
from service.pricing.plans import Plans
from service.recording.bookings import (
    Booking,
    booked_rate,
    count_plan_events_since,
    job_bookings,
    on_booking,
    plan_bookings,
    reversal_of,
)
from service.recording.rerating import RERATE_CHUNK, record_adjustments
from service.wire import instant_text


@dataclass(frozen=True, slots=True)
class Repricing:
    """One event's change of price: its booking and the entries that make it."""

    booking: Booking
    entries: tuple[NewLedgerEntry, ...]
    """One entry (a change of price for the same customer) or two (reversal, new booking)."""

    def changes(self) -> list[tuple[str | None, Decimal]]:
        """What each customer's price moves by: the booked customer loses its price, the
        new one gains its own (the same customer: the difference)."""
        moved: dict[str | None, Decimal] = defaultdict(Decimal)
        for entry in self.entries:
            moved[entry.customer_id] = EXACT.add(
                moved[entry.customer_id], entry.price_usd or Decimal(0)
            )
        return list(moved.items())

    @property
    def price_delta_usd(self) -> Decimal:
        """Change of what is billed for the event, whoever pays it; unknown counts as 0."""
        if len(self.entries) == 1:
            return self.entries[0].price_usd or Decimal(0)
        return exact_difference(
            self.entries[1].price_usd or Decimal(0), self.booking.price_usd or Decimal(0)
        )


def plan_repricing(booking: Booking, catalog: Catalog, plans: Plans, why: str) -> Repricing | None:
    """The entries that move ``booking`` to the price its job's customer's plan gives it
    now, or None when it already agrees (same customer, same price: a new plan version that
    charges the same keeps the booking's, as a catalog version that costs the same does)."""
    event = booking.event
    customer = booking.job_customer_id
    booked = booked_rate(booking, catalog)
    target = customer_pricing(
        event,
        booking.cost_usd,
        event.provider_cost_usd,
        booking.model,
        event.provider,
        customer,
        plans.in_force(booking.customer_plan_id, event.occurred_at),
        booked,
    )
    price: Decimal | None = target["price_usd"]
    if customer == booking.customer_id and price == booking.price_usd:
        return None
    rate = price_columns(booked)
    if customer == booking.customer_id and price is not None and booking.price_usd is not None:
        change = NewLedgerEntry(
            kind="adjustment",
            **on_booking(booking, sign=0),
            event_count=0,
            unpriced_count=0,
            # Nothing of the cost moves: zero where the booking knows one, unknown (NULL)
            # where it does not, so the entry stays within its booking and line.
            cost_usd=None if booking.catalog_version is None else Decimal(0),
            provider_cost_usd=None if event.provider_cost_usd is None else Decimal(0),
            **rate,
            reason=why,
            **{**target, "price_usd": exact_difference(price, booking.price_usd)},
        )
        return Repricing(booking, (change,))
    # Why the booking is unpriced, or not billed, stays said on its new booking.
    still = catalog.quote(event.model, event.occurred_at).for_provider(event.provider).reason
    rebooking = NewLedgerEntry(
        kind="adjustment",
        **on_booking(booking, sign=1),
        event_count=1,
        unpriced_count=1 if booking.unpriced else 0,
        cost_usd=booking.cost_usd,
        provider_cost_usd=event.provider_cost_usd,
        **rate,
        reason=why + (f"; {still}" if still else ""),
        **target,
    )
    return Repricing(booking, (reversal_of(booking, catalog, why), rebooking))


@dataclass
class PriceDelta:
    events: int = 0
    price_delta_usd: Decimal = Decimal(0)


@dataclass
class RepriceSummary:
    """What a re-pricing changes (or would change, on a dry run), per customer and job."""

    plan_id: str | None
    since: datetime | None
    dry_run: bool
    events_examined: int = 0
    events_changed: int = 0
    entries_appended: int = 0
    price_delta_usd: Decimal = Decimal(0)
    customers: dict[str | None, PriceDelta] = field(default_factory=lambda: defaultdict(PriceDelta))
    """By the customer whose price moved (None: jobs without a customer)."""
    jobs: dict[str, PriceDelta] = field(default_factory=lambda: defaultdict(PriceDelta))

    def add(self, repricing: Repricing) -> None:
        self.events_changed += 1
        self.price_delta_usd = EXACT.add(self.price_delta_usd, repricing.price_delta_usd)
        job = self.jobs[repricing.booking.event.job_id]
        job.events += 1
        job.price_delta_usd = EXACT.add(job.price_delta_usd, repricing.price_delta_usd)
        for customer, moved in repricing.changes():
            bucket = self.customers[customer]
            bucket.events += 1
            bucket.price_delta_usd = EXACT.add(bucket.price_delta_usd, moved)


async def _append(conn: Connection, repricings: Sequence[Repricing]) -> tuple[int, int]:
    """Append the entries of ``repricings``; (entries appended, budget alerts raised)."""
    entries = [entry for r in repricings for entry in r.entries]
    return len(entries), await record_adjustments(conn, entries)


async def reprice_jobs(
    conn: Connection, catalog: Catalog, plans: Plans, job_ids: Sequence[str], why: str
) -> int:
    """Re-price every event of ``job_ids`` for its job's customer now, in the caller's
    transaction (which holds the re-pricing lock, shared, and the jobs' rows). Returns the
    budget alerts raised."""
    repricings = [
        r
        for booking in await job_bookings(conn, job_ids)
        if (r := plan_repricing(booking, catalog, plans, why)) is not None
    ]
    return (await _append(conn, repricings))[1]


async def change_job_customer(
    conn: Connection,
    catalog_cache: CatalogCache,
    plan_cache: PlanCache,
    job_id: str,
    changes: JobChanges,
) -> JobUpdate:
    """``jobs.service.update_job``, and when the job's customer changed, its entries
    re-priced for the new customer at once, in the same transaction (SPEC §11)."""
    async with conn.transaction():
        # Shared, taken before the job's row as ingest takes it: batches of other jobs
        # record meanwhile, batches of this job wait for its row (or it for theirs).
        await lock_repricing(conn, shared=True)
        update = await update_job(conn, job_id, changes)
        if update.customer_changed:
            before = update.previous_customer_id
            why = (
                f"the job's customer changed from {before!r} to {update.job.customer_id!r}"
                if before is not None
                else f"the job's customer was set to {update.job.customer_id!r}"
            )
            await reprice_jobs(
                conn, await catalog_cache.get(conn), await plan_cache.get(conn), [job_id], why
            )
    return update


async def reprice_plan(
    conn: Connection,
    plan_id: str,
    since: datetime,
    *,
    default_plan: str | None,
    dry_run: bool,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = RERATE_CHUNK,
) -> RepriceSummary:
    """Re-price the events since ``since`` that plan ``plan_id`` prices (those of its
    customers' jobs; of every job without a customer or plan when it is ``default_plan``,
    LUC_DEFAULT_PLAN) or priced before, each for its job's customer now.

    Like catalog re-rating: under the re-pricing lock (exclusive: after every batch in
    flight), each chunk committing on its own; a crash part-way leaves a consistent
    ledger, and running again finishes without repeating what was done.
    """
    is_default = plan_id == default_plan
    summary = RepriceSummary(plan_id=plan_id, since=since, dry_run=dry_run)
    total = await count_plan_events_since(conn, plan_id, is_default=is_default, since=since)
    why = f"re-priced by plan {plan_id} since {instant_text(since)}"
    after: tuple[datetime, str] | None = None
    while True:
        async with conn.transaction():
            # A dry run writes nothing: it holds the lock shared, as ingest does, so that
            # it waits only for a re-pricing being applied, never stalls ingest.
            await lock_repricing(conn, shared=dry_run)
            plans = Plans(await load_plans(conn), default_plan)
            if plan_id not in plans.plans:
                raise NotFoundError(f"plan {plan_id!r} does not exist")
            catalog = await load_catalog(conn)
            page = await plan_bookings(
                conn, plan_id, is_default=is_default, since=since, after=after, limit=chunk
            )
            repricings = []
            for booking in page.bookings:
                repricing = plan_repricing(booking, catalog, plans, why)
                if repricing is not None:
                    repricings.append(repricing)
                    summary.add(repricing)
            if not dry_run and repricings:
                summary.entries_appended += (await _append(conn, repricings))[0]
        summary.events_examined += page.events
        if progress is not None:
            progress(summary.events_examined, total)
        if page.events < chunk:
            return summary
        after = page.last
