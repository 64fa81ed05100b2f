"""Reading, locking and describing a job, and who it belongs to. A job needs no usage to
be described."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from service.customers.service import customer_exists
from service.db import Connection, from_row
from service.errors import InvalidRequestError
from service.ingest.models import UsageEvent
from service.ingest.service import stored_events
from service.jobs import queries
from service.jobs.models import (
    JOB_STATUSES,
    MAX_METADATA_CHARS,
    METADATA_FIELDS,
    JobChanges,
    JobInfo,
    JobUpdate,
)


def _job(row: asyncpg.Record | None, job_id: str) -> JobInfo:
    if row is None:
        return JobInfo(job_id, "open", None, None, None, None)
    return from_row(JobInfo, row)


async def get_job(conn: Connection, job_id: str) -> JobInfo:
    """A job's metadata; a job nobody described is open, without metadata."""
    return _job(await conn.fetchrow(queries.SELECT_JOB, job_id), job_id)


async def lock_job(conn: Connection, job_id: str) -> JobInfo:
    """The job's row, locked until the caller's transaction ends (made if missing)."""
    await conn.execute(queries.ENSURE_JOB, job_id)
    return _job(await conn.fetchrow(queries.LOCK_JOB, job_id), job_id)


async def update_job(conn: Connection, job_id: str, changes: JobChanges) -> JobUpdate:
    """Set a job's status, metadata and customer. Usage is not required: a job can be
    described first. A customer must be registered to be named here (an event may name one
    that is not yet: its call was paid for). Changing the customer is recorded, and the
    answer says whether it changed: the job's entries are then the new customer's to price.
    Whoever re-prices on it takes the re-pricing lock before this job's row, as ingest does.
    """
    if changes.status is not None and changes.status not in JOB_STATUSES:
        raise InvalidRequestError(f"status: must be one of {', '.join(JOB_STATUSES)}")
    for name in METADATA_FIELDS:
        value = getattr(changes, name)
        if value is not None and len(value) > MAX_METADATA_CHARS:
            raise InvalidRequestError(f"{name}: at most {MAX_METADATA_CHARS} characters")
    if changes.customer_id is not None and not await customer_exists(conn, changes.customer_id):
        raise InvalidRequestError(
            f"customer_id: customer {changes.customer_id!r} does not exist (register it "
            "with POST /v1/customers first)"
        )
    async with conn.transaction():
        current = await lock_job(conn, job_id)

        def pick(name: str) -> Any:
            if name in changes.clear:
                return None
            new = getattr(changes, name)
            return getattr(current, name) if new is None else new

        row = await conn.fetchrow(
            queries.UPSERT_JOB,
            job_id,
            pick("status") or "open",
            pick("customer"),
            pick("title"),
            pick("reference"),
        )
        customer_id = pick("customer_id")
        if customer_id == current.customer_id:
            return JobUpdate(_job(row, job_id))
        row = await conn.fetchrow(
            queries.SET_JOB_CUSTOMER, job_id, customer_id, current.customer_id
        )
    return JobUpdate(
        _job(row, job_id), customer_changed=True, previous_customer_id=current.customer_id
    )


async def claim_job_customers(
    conn: Connection, named: Sequence[tuple[str, str, str]]
) -> dict[str, str]:
    """The customer of each job that ``named`` (event id, job id, customer id, in batch
    order) names one for: the job's own when it has one, else the first one named by an
    event not yet stored, which it now keeps. In the caller's transaction, holding each
    job's row until it ends (``queries.CLAIM_JOB_CUSTOMERS``)."""
    if not named:
        return {}
    event_ids, job_ids, customer_ids = (list(column) for column in zip(*named, strict=True))
    rows = await conn.fetch(queries.CLAIM_JOB_CUSTOMERS, event_ids, job_ids, customer_ids)
    return {r["job_id"]: r["customer_id"] for r in rows}


async def customer_mismatches(conn: Connection, events: Sequence[UsageEvent]) -> dict[str, str]:
    """Claim each job's customer for ``events`` (``claim_job_customers``), and answer the
    events that name another customer than their job's, by id, with the reason naming both:
    those are rejected alone, the rest of their batch recorded. An event already stored is
    left out: a replay is a duplicate or a conflict of what it named the first time."""
    claimed = await claim_job_customers(
        conn, [(e.id, e.job_id, e.customer_id) for e in events if e.customer_id is not None]
    )
    others = {
        e.id: e
        for e in events
        if e.customer_id is not None and claimed.get(e.job_id, e.customer_id) != e.customer_id
    }
    if not others:
        return {}
    stored = await stored_events(conn, list(others))
    return {
        event_id: (
            f"customer_id: job {e.job_id!r} belongs to customer {claimed[e.job_id]!r}, and "
            f"this event names customer {e.customer_id!r}; a job has one customer (send its "
            f"own, or change it with PATCH /v1/jobs/{e.job_id} first)"
        )
        for event_id, e in others.items()
        if event_id not in stored
    }
