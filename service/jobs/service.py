"""Reading, locking and describing a job, and who it belongs to. A job needs no usage to
be described."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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


@dataclass(frozen=True, slots=True)
class JobCustomer:
    """A job's customer as a batch prices its events: locked until the batch commits."""

    customer_id: str | None
    plan_id: str | None
    """The customer's rate plan (None: no customer, an unregistered one, or no plan)."""
    set_now: bool
    """The batch gave the job its first customer: entries recorded before are re-priced."""


JobRow = tuple[str | None, str | None]
"""A locked job's (customer, plan), as ``queries.LOCKED_JOBS`` answers it."""


def batch_job_ids(events: Sequence[UsageEvent]) -> list[str]:
    """The jobs of ``events``, in the order their rows are locked (``queries.LOCKED_JOBS``,
    whose ``$1`` this is)."""
    return sorted({e.job_id for e in events})


async def lock_job_customers(
    conn: Connection, events: Sequence[UsageEvent], locked: Mapping[str, JobRow]
) -> dict[str, JobCustomer]:
    """The customer of each job of ``events``, each job's row locked until the caller's
    transaction ends. ``locked``: what ``queries.LOCKED_JOBS`` answered for
    ``batch_job_ids(events)`` (the caller's first statement locks them); a job another
    batch made meanwhile is locked here, and a job without a customer takes the one its
    first new event names (``queries.CLAIM_JOB_CUSTOMERS``)."""
    if not events:
        return {}
    rows = dict(locked)
    if missing := [j for j in batch_job_ids(events) if j not in rows]:
        rows |= {
            r["job_id"]: (r["customer_id"], r["plan_id"])
            for r in await conn.fetch(queries.LOCK_MADE_JOBS, missing)
        }
    jobs = {j: JobCustomer(customer, plan, set_now=False) for j, (customer, plan) in rows.items()}
    named = [
        (e.id, e.job_id, e.customer_id)
        for e in events
        if e.customer_id is not None and jobs[e.job_id].customer_id is None
    ]
    if named:
        event_ids, named_jobs, customer_ids = (list(c) for c in zip(*named, strict=True))
        for r in await conn.fetch(queries.CLAIM_JOB_CUSTOMERS, event_ids, named_jobs, customer_ids):
            jobs[r["job_id"]] = JobCustomer(r["customer_id"], r["plan_id"], set_now=True)
    return jobs


async def customer_mismatches(
    conn: Connection, events: Sequence[UsageEvent], jobs: Mapping[str, JobCustomer]
) -> dict[str, str]:
    """The events that name another customer than their job's (``jobs``, from
    ``lock_job_customers``), by id, with the reason naming both: those are rejected alone,
    the rest of their batch recorded. An event already stored is left out: a replay is a
    duplicate or a conflict of what it named the first time."""
    others = {e.id: reason for e in events if (reason := customer_mismatch(e, jobs[e.job_id]))}
    if not others:
        return {}
    stored = await stored_events(conn, list(others))
    return {event_id: reason for event_id, reason in others.items() if event_id not in stored}


def customer_mismatch(event: UsageEvent, job: JobCustomer) -> str | None:
    """Why ``event`` is refused when it names another customer than its job's (``job``,
    locked); None when it names none or the job's own."""
    if event.customer_id is None or event.customer_id == job.customer_id:
        return None
    return (
        f"customer_id: job {event.job_id!r} belongs to customer {job.customer_id!r}, and "
        f"this event names customer {event.customer_id!r}; a job has one customer (send its "
        f"own, or change it with PATCH /v1/jobs/{quote(event.job_id, safe='')} first)"
    )
