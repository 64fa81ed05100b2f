"""Re-pricing recorded events: the one place where corrections flow to ledger and rollups.

Two callers: a new catalog version prices events that were unpriced (at once, in the
transaction that creates the version), and ``rerate_since`` applies a retroactive
correction to every event since a time, in chunks, or only reports it (dry run). Both
hold the re-pricing lock exclusively (``service.locks``), plan each event with
``bookings.plan_rerating`` and append the result with ``record_adjustments``: ledger,
rollups and budgets in the caller's transaction, as ``record_batch`` does for new events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from service.budgets.service import apply_entries as apply_to_budgets
from service.catalog.service import NewCatalogVersion, create_version, load_catalog
from service.customers.plans import load_plans
from service.db import Connection
from service.ledger.models import NewLedgerEntry
from service.ledger.service import entry_parameters
from service.locks import lock_repricing
from service.money import EXACT
from service.pricing.plans import Plans
from service.recording import queries
from service.recording.bookings import (
    Rerating,
    bookings_since,
    count_events_since,
    plan_rerating,
    unpriced_bookings,
)
from service.recording.credits import burn_appended
from service.wire import instant_text

RERATE_CHUNK = 2000


@dataclass
class Delta:
    events: int = 0
    delta_usd: Decimal = Decimal(0)
    """Change of the catalog cost."""
    actual_delta_usd: Decimal = Decimal(0)
    """Change of the actual cost: only events without a reported cost move it."""
    price_delta_usd: Decimal = Decimal(0)
    """Change of the customers' price: where the plan's basis cost moved (SPEC §11)."""
    events_now_unpriced: int = 0
    """Events priced before and unpriced now (their model left the catalog): their cost
    is not known any more, which the deltas, counting an unknown cost as none, do not
    say."""
    events_now_priced: int = 0
    """Events unpriced before and priced now."""


@dataclass
class RerateSummary:
    """What a re-rating changes (or would change, on a dry run)."""

    since: datetime | None
    dry_run: bool
    events_examined: int = 0
    events_changed: int = 0
    entries_appended: int = 0
    delta_usd: Decimal = Decimal(0)
    actual_delta_usd: Decimal = Decimal(0)
    price_delta_usd: Decimal = Decimal(0)
    events_now_unpriced: int = 0
    events_now_priced: int = 0
    jobs: dict[str, Delta] = field(default_factory=lambda: defaultdict(Delta))
    agents: dict[str, Delta] = field(default_factory=lambda: defaultdict(Delta))

    def add(self, rerating: Rerating) -> None:
        event = rerating.booking.event
        delta, actual = rerating.delta_usd, rerating.actual_delta_usd
        price = rerating.price_delta_usd
        self.events_changed += 1
        was_priced = rerating.booking.cost_usd is not None
        is_priced = rerating.entries[1].cost_usd is not None
        for bucket in (self, self.jobs[event.job_id], self.agents[event.agent]):
            bucket.delta_usd = EXACT.add(bucket.delta_usd, delta)
            bucket.actual_delta_usd = EXACT.add(bucket.actual_delta_usd, actual)
            bucket.price_delta_usd = EXACT.add(bucket.price_delta_usd, price)
            bucket.events_now_unpriced += was_priced and not is_priced
            bucket.events_now_priced += is_priced and not was_priced
        for bucket in (self.jobs[event.job_id], self.agents[event.agent]):
            bucket.events += 1


async def record_adjustments(conn: Connection, entries: Sequence[NewLedgerEntry]) -> int:
    """Append adjustment ``entries`` (re-rating, re-pricing), roll them up, count them
    towards budgets and draw (or give back) their customers' prepaid credits, in the
    caller's transaction; returns the alerts raised."""
    if not entries:
        return 0
    rows = await conn.fetch(queries.RECORD_ADJUSTMENTS, *entry_parameters(entries))
    ids = [r["id"] for r in rows]
    return await apply_to_budgets(conn, ids) + await burn_appended(conn, ids)


async def _apply(conn: Connection, reratings: list[Rerating]) -> int:
    entries = [entry for r in reratings for entry in r.entries]
    await record_adjustments(conn, entries)
    return len(entries)


async def create_version_and_price_unpriced(
    conn: Connection, version: NewCatalogVersion, *, default_plan: str | None
) -> tuple[int, RerateSummary]:
    """Create ``version`` and price every unpriced event it now prices, in one transaction;
    each for its job's customer (``default_plan``: LUC_DEFAULT_PLAN)."""
    async with conn.transaction():
        await lock_repricing(conn)
        version_id = await create_version(conn, version)
        catalog = await load_catalog(conn)
        plans = Plans(await load_plans(conn), default_plan)
        summary = RerateSummary(since=None, dry_run=False)
        reratings = []
        for booking in await unpriced_bookings(conn):
            summary.events_examined += 1
            rerating = plan_rerating(
                booking, catalog, plans, f"priced by catalog version {version_id}"
            )
            if rerating is not None and rerating.new_version is not None:
                reratings.append(rerating)
                summary.add(rerating)
        summary.entries_appended = await _apply(conn, reratings)
    return version_id, summary


async def rerate_since(
    conn: Connection,
    since: datetime,
    *,
    default_plan: str | None,
    dry_run: bool,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = RERATE_CHUNK,
) -> RerateSummary:
    """Re-price every event that occurred at or after ``since`` with today's catalog, and
    for its job's customer by the plan in force at it (``default_plan``: LUC_DEFAULT_PLAN).

    Each chunk commits on its own; a crash part-way leaves a consistent ledger, and
    running again finishes the job without repeating what was done.
    """
    summary = RerateSummary(since=since, dry_run=dry_run)
    total = await count_events_since(conn, since)
    after: tuple[datetime, str] | None = None
    why = f"re-rated since {instant_text(since)}"
    while True:
        async with conn.transaction():
            # A dry run writes nothing: it holds the lock shared, as ingest does, so that
            # it waits only for a re-pricing being applied, never stalls ingest.
            await lock_repricing(conn, shared=dry_run)
            catalog = await load_catalog(conn)
            plans = Plans(await load_plans(conn), default_plan)
            page = await bookings_since(conn, since, after, chunk)
            reratings = []
            for booking in page.bookings:
                rerating = plan_rerating(booking, catalog, plans, why)
                if rerating is not None:
                    reratings.append(rerating)
                    summary.add(rerating)
            if not dry_run and reratings:
                summary.entries_appended += await _apply(conn, reratings)
        summary.events_examined += page.events
        if progress is not None:
            progress(summary.events_examined, total)
        if page.events < chunk:
            return summary
        after = page.last
