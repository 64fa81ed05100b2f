"""The completed AIMS catalog reaching a ledger seeded before it (SPEC §3).

LUC first shipped version 1 without cache prices or long-context rates
(``pricing/aims-v1-previous.json``): cached tokens were priced as input. A ledger whose
version 1 is that one gets the completed catalog (``pricing/aims-v1.json``) as a new
version with the same ``effective_from``: created last, it wins the tie, so it prices every
event version 1 priced. Those events are re-rated by adjustment entries (a reversal and a
new booking each; an event whose cost does not change keeps its booking). A correction is a
version, never an edit: version 1 and its charges stay as they were, and issued invoices
too; the adjustments go on the jobs' follow-up invoices.

Exactly once, whoever starts: it runs at every start-up (``luc serve``, each worker, and
``luc migrate``) in one transaction under the re-pricing lock, taken exclusively, and does
nothing when a version equal to the completed catalog already exists. The version and
every adjustment commit together, so no start can see one without the other. The ledger
waits for ingest meanwhile (batches queue on the lock), once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from service.catalog.service import (
    PREVIOUS_AIMS_CATALOG_FILE,
    aims_catalog,
    create_version,
    load_catalog,
    same_content,
)
from service.customers.plans import load_plans
from service.db import Connection
from service.locks import lock_repricing
from service.pricing.plans import Plans
from service.recording.bookings import bookings_since, plan_rerating
from service.recording.rerating import RERATE_CHUNK, RerateSummary, record_adjustments

COMPLETED_LABEL = "aims-v1 completed"
"""The label of the completed catalog when it joins a ledger as a correction."""


@dataclass(frozen=True, slots=True)
class CatalogUpgrade:
    """The completed catalog's version, and what re-rating version 1's events changed."""

    version_id: int
    replaced_version_id: int
    summary: RerateSummary


async def upgrade_aims_catalog(
    conn: Connection, chunk: int = RERATE_CHUNK, *, default_plan: str | None = None
) -> CatalogUpgrade | None:
    """Add the completed AIMS catalog to a ledger whose version 1 is the previous one, and
    re-rate the events that version priced; None when there is nothing to do (a new ledger
    seeded with the completed catalog, an upgrade done before, a catalog of its own). The
    new bookings are priced for their jobs' customers (``default_plan``: LUC_DEFAULT_PLAN;
    such a ledger predates rate plans, but may meet LUC_DEFAULT_PLAN at this start)."""
    completed = aims_catalog()
    async with conn.transaction():
        # Exclusive: after every batch in flight, before every later one; a second process
        # starting meanwhile waits here, then finds the completed version below.
        await lock_repricing(conn)
        catalog = await load_catalog(conn)
        if not catalog.versions or any(same_content(v, completed) for v in catalog.versions):
            return None
        first = catalog.by_id[min(catalog.by_id)]
        if not same_content(first, aims_catalog(PREVIOUS_AIMS_CATALOG_FILE)):
            return None
        version_id = await create_version(
            conn, replace(completed, label=COMPLETED_LABEL, parent_id=first.id)
        )
        catalog = await load_catalog(conn)
        plans = Plans(await load_plans(conn), default_plan)
        why = (
            f"catalog version {version_id} completes version {first.id} with the providers' "
            "cache prices and long-context rates"
        )
        summary = RerateSummary(since=completed.effective_from, dry_run=False)
        after: tuple[datetime, str] | None = None
        while True:
            page = await bookings_since(conn, completed.effective_from, after, chunk)
            reratings = []
            for booking in page.bookings:
                if booking.catalog_version != first.id:
                    continue  # priced by a later version of the ledger's own: not ours
                summary.events_examined += 1
                rerating = plan_rerating(booking, catalog, plans, why)
                # Only towards the completed version: an event that a later version
                # created without re-rating would price moves when its owner re-rates.
                if rerating is not None and rerating.new_version == version_id:
                    reratings.append(rerating)
                    summary.add(rerating)
            entries = [entry for r in reratings for entry in r.entries]
            await record_adjustments(conn, entries)
            summary.entries_appended += len(entries)
            if page.events < chunk:
                break
            after = page.last
    return CatalogUpgrade(version_id, first.id, summary)
