"""Pricing a large batch before its jobs are locked.

A batch's jobs stay locked from its opening statement until its commit: their customers
must not change under the prices. Two batches of the same jobs therefore run one after
the other from there on, and whatever a batch does while it holds them, the other waits
for. Pricing 1,000 events and loading them into the staging table (binary ``COPY``) is a
third of what a batch does under its locks; done before them, it overlaps with the other
batch's statement instead.

Prices computed early hold only while what they were computed with is what the locked rows
say: the catalog and plan stamps, and each job's customer and that customer's plan.
``EarlyPricing.holds`` checks that after the opening statement; when something moved in
between (a job given its first customer by another batch, a customer's plan changed), the
batch is priced and staged again under the locks, as every small group is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import Connection
from service.ingest.models import UsageEvent
from service.jobs.service import JobCustomer, batch_job_ids
from service.ledger.service import (
    INLINE_LIMIT,
    StagedCharge,
    Staging,
    charges_for,
    stage_charges,
)
from service.pricing.catalog import Catalog
from service.pricing.plans import Plans
from service.recording import queries

Stamps = tuple[object, ...]


def stamps(row: asyncpg.Record) -> Stamps:
    """The catalog's and the plans' stamps, as ``PEEK_BATCH`` and ``OPEN_BATCH`` read them."""
    return (row["versions"], row["newest"], row["plan_versions"], row["newest_plan_version"])


def price(
    events: Sequence[UsageEvent],
    catalog: Catalog,
    plans: Plans,
    jobs: Mapping[str, JobCustomer],
) -> list[StagedCharge]:
    """Each event with its charge: its cost by the catalog, its price for its job's
    customer under the plan in force at its time."""
    charges = charges_for(catalog)
    rows = []
    for event in events:
        job = jobs[event.job_id]
        rows.append(
            charges.row(event, job.customer_id, plans.in_force(job.plan_id, event.occurred_at))
        )
    return rows


@dataclass(frozen=True, slots=True)
class Priced:
    """A batch's events priced, and staged for the statement that appends them."""

    catalog: Catalog
    plans: Plans
    staged: list[StagedCharge]
    staging: Staging


async def price_and_stage(
    conn: Connection,
    catalog_cache: CatalogCache,
    plan_cache: PlanCache,
    row: asyncpg.Record,
    events: Sequence[UsageEvent],
    jobs: Mapping[str, JobCustomer],
    *,
    rows_staged_before: bool,
) -> Priced:
    """Price ``events`` for ``jobs`` with the catalog and plans of ``row``'s stamps, and stage
    them (``row`` also says whether the staging table is there and may be made: a row of
    ``PEEK_BATCH`` or ``OPEN_BATCH``). ``rows_staged_before``: this transaction may have
    staged an earlier batch, whose rows go first."""
    catalog = await catalog_cache.get(conn, (row["versions"], row["newest"]))
    plans = await plan_cache.get(conn, (row["plan_versions"], row["newest_plan_version"]))
    staged = price(events, catalog, plans, jobs)
    staging = await stage_charges(
        conn,
        staged,
        table_ready=row["staging_table_ready"],
        table_allowed=row["staging_table_allowed"],
        inside_longer_transaction=rows_staged_before,
    )
    return Priced(catalog, plans, staged, staging)


@dataclass(frozen=True, slots=True)
class EarlyPricing:
    """A batch priced and staged before its jobs were locked, with what it assumed."""

    stamps: Stamps
    jobs: dict[str, JobCustomer]
    """Each job of the batch as its events were priced for it."""
    priced: Priced

    def holds(
        self,
        opened: asyncpg.Record,
        jobs: Mapping[str, JobCustomer],
        mismatched: Mapping[str, str],
    ) -> bool:
        """Whether the prices stand, ``opened`` being the opening statement's row and
        ``jobs`` each job as locked (its first customer claimed): the same stamps, the
        same customer and plan for every job, no event rejected for naming another
        customer, no job given its first customer by this batch (which re-prices the job's
        earlier entries, and wants its events priced under the lock)."""
        return (
            not mismatched
            and stamps(opened) == self.stamps
            and all(
                not (now := jobs[job_id]).set_now
                and (now.customer_id, now.plan_id) == (then.customer_id, then.plan_id)
                for job_id, then in self.jobs.items()
            )
        )


async def price_early(
    conn: Connection,
    catalog_cache: CatalogCache,
    plan_cache: PlanCache,
    events: Sequence[UsageEvent],
) -> EarlyPricing | None:
    """Price and stage ``events`` with what the database holds now, before their jobs are
    locked; None for a group small enough to go inline (the look would cost it a round
    trip) and for a batch whose events name a customer other than their job's (a claim or
    a rejection, decided under the lock). Inside the batch's transaction, with the
    re-pricing lock held: the catalog cannot change before the batch commits."""
    if len(events) <= INLINE_LIMIT:
        return None
    job_ids = batch_job_ids(events)
    peek = await conn.fetchrow(queries.PEEK_BATCH, job_ids)
    assert peek is not None
    rows = zip(peek["customer_ids"] or (), peek["plan_ids"] or (), strict=True)
    known = dict(zip(peek["job_ids"] or (), rows, strict=True))
    jobs = {}
    for job_id in job_ids:
        customer_id, plan_id = known.get(job_id, (None, None))
        jobs[job_id] = JobCustomer(customer_id, plan_id, set_now=False)
    if any(e.customer_id not in (None, jobs[e.job_id].customer_id) for e in events):
        return None
    priced = await price_and_stage(
        conn, catalog_cache, plan_cache, peek, events, jobs, rows_staged_before=False
    )
    return EarlyPricing(stamps(peek), jobs, priced)
