"""Reading, locking and describing a job. A job needs no usage to be described."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.db import Connection, from_row
from service.errors import InvalidRequestError
from service.jobs import queries
from service.jobs.models import (
    JOB_STATUSES,
    MAX_METADATA_CHARS,
    METADATA_FIELDS,
    JobChanges,
    JobInfo,
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


async def update_job(conn: Connection, job_id: str, changes: JobChanges) -> JobInfo:
    """Set a job's status and metadata. Usage is not required: a job can be described first."""
    if changes.status is not None and changes.status not in JOB_STATUSES:
        raise InvalidRequestError(f"status: must be one of {', '.join(JOB_STATUSES)}")
    for name in METADATA_FIELDS:
        value = getattr(changes, name)
        if value is not None and len(value) > MAX_METADATA_CHARS:
            raise InvalidRequestError(f"{name}: at most {MAX_METADATA_CHARS} characters")
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
    return _job(row, job_id)
