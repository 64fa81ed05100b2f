"""Jobs: the list, one job with its invoice lines, its ledger entries, its metadata."""

from __future__ import annotations

from litestar import get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from service.api.deps import LucController, Resources
from service.api.params import (
    From,
    Limit,
    To,
    decode_cursor,
    decode_number_cursor,
    page,
    page_size,
    parse_range,
)
from service.api.schemas.jobs import (
    JobDetailOut,
    JobInfoOut,
    JobPage,
    JobPatch,
    LedgerPage,
    job_detail_out,
    job_info_out,
    job_out,
    ledger_entry_out,
)
from service.auth.guard import ADMIN, READ
from service.db import on_connection
from service.errors import NotFoundError
from service.ledger.service import job_entries
from service.recording.repricing import change_job_customer
from service.rollups.service import job_detail, list_jobs


class JobsController(LucController):
    path = "/v1/jobs"
    tags = ["jobs"]
    opt = READ

    @get(
        "/",
        operation_id="listJobs",
        summary="List jobs with their totals",
        description=(
            "Jobs in id order, a page at a time (`next_cursor`). `agent` keeps jobs that agent "
            "worked on; `from` (inclusive) and `to` (exclusive) keep jobs with events in that "
            "range. Totals are each job's whole totals."
        ),
    )
    async def list(
        self,
        luc: NamedDependency[Resources],
        agent: FromQuery[str | None] = None,
        start: From = None,
        end: To = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = None,
    ) -> JobPage:
        lower, upper = parse_range(start, end)
        size = page_size(limit)
        jobs = await on_connection(
            luc.pool,
            lambda conn: list_jobs(
                conn,
                after_job_id=decode_cursor(cursor),
                agent=agent,
                start=lower,
                end=upper,
                limit=size + 1,
            ),
        )
        items, next_cursor = page(jobs, size, lambda j: j.job_id)
        return JobPage(items=[job_out(j) for j in items], next_cursor=next_cursor)

    @get(
        "/{job_id:str}",
        operation_id="getJob",
        summary="One job: totals and lines by agent, model, provider and catalog version",
    )
    async def detail(self, luc: NamedDependency[Resources], job_id: FromPath[str]) -> JobDetailOut:
        job = await on_connection(luc.pool, lambda conn: job_detail(conn, job_id))
        if job is None:
            raise NotFoundError(f"job {job_id!r} has no recorded usage")
        return job_detail_out(job)

    @patch(
        "/{job_id:str}",
        operation_id="updateJob",
        summary="Set a job's status (open, closed), invoice metadata and customer",
        description=(
            "customer, title and reference appear on the job's next invoices; null clears one. "
            "A closed job still records usage: it goes on the next follow-up invoice. "
            "customer_id names the registered customer the job belongs to (422 when it is "
            "not registered); a change is recorded and re-prices the job's entries at once "
            "for the new customer (adjustment entries; the cost never moves), and events "
            "naming another customer are refused from then on."
        ),
        opt=ADMIN,
    )
    async def update(
        self, luc: NamedDependency[Resources], job_id: FromPath[str], data: JSONBody[JobPatch]
    ) -> JobInfoOut:
        changes = data.changes()
        update = await on_connection(
            luc.pool,
            lambda conn: change_job_customer(
                conn, luc.catalog_cache, luc.plan_cache, job_id, changes
            ),
        )
        return job_info_out(update.job)

    @get(
        "/{job_id:str}/entries",
        operation_id="listJobLedgerEntries",
        summary="A job's ledger entries, in the order they were appended",
    )
    async def entries(
        self,
        luc: NamedDependency[Resources],
        job_id: FromPath[str],
        cursor: FromQuery[str | None] = None,
        limit: Limit = None,
    ) -> LedgerPage:
        size = page_size(limit)
        after = decode_number_cursor(cursor)
        rows = await on_connection(
            luc.pool, lambda conn: job_entries(conn, job_id, after, size + 1)
        )
        if not rows and not cursor:
            exists = await on_connection(luc.pool, lambda conn: job_detail(conn, job_id))
            if exists is None:
                raise NotFoundError(f"job {job_id!r} has no recorded usage")
        items, next_cursor = page(rows, size, lambda e: str(e.id))
        return LedgerPage(
            job_id=job_id, items=[ledger_entry_out(e) for e in items], next_cursor=next_cursor
        )
