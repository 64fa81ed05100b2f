"""Jobs: the list, one job with its invoice lines, and its ledger entries."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, patch
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from service.api.deps import Resources, provide_resources
from service.api.invoices import JobInfoOut, JobPatch, job_info_out
from service.api.params import decode_cursor, encode_cursor, page_size, parse_range
from service.api.schemas import (
    JobDetailOut,
    JobLineOut,
    JobOut,
    JobPage,
    LedgerEntryOut,
    LedgerPage,
    money,
    timestamp,
    totals_fields,
    unit_prices,
)
from service.auth.guard import ADMIN, READ
from service.db import on_connection
from service.errors import InvalidRequestError, NotFoundError
from service.invoices.service import update_job
from service.ledger.service import job_entries
from service.rollups.service import job_detail, list_jobs
from service.tokens import counts_of


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

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
        start: Annotated[
            str | None, QueryParameter(name="from", description="RFC 3339, inclusive")
        ] = None,
        end: Annotated[
            str | None, QueryParameter(name="to", description="RFC 3339, exclusive")
        ] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(description="page size, 1–1000 (100)")] = None,
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
        more = len(jobs) > size
        jobs = jobs[:size]
        return JobPage(
            items=[JobOut(job_id=j.job_id, **totals_fields(j.totals)) for j in jobs],
            next_cursor=encode_cursor(jobs[-1].job_id) if more else None,
        )

    @get(
        "/{job_id:str}",
        operation_id="getJob",
        summary="One job: totals and lines by agent, model, provider and catalog version",
    )
    async def detail(self, luc: NamedDependency[Resources], job_id: FromPath[str]) -> JobDetailOut:
        job = await on_connection(luc.pool, lambda conn: job_detail(conn, job_id))
        if job is None:
            raise NotFoundError(f"job {job_id!r} has no recorded usage")
        return JobDetailOut(
            job_id=job.job_id,
            lines=[
                JobLineOut(
                    agent=line.agent,
                    model=line.model,
                    provider=line.provider,
                    catalog_version=line.catalog_version,
                    tier=line.tier,
                    unit_prices=unit_prices(line.unit_prices),
                    **totals_fields(line.totals),
                )
                for line in job.lines
            ],
            **totals_fields(job.totals),
        )

    @patch(
        "/{job_id:str}",
        operation_id="updateJob",
        summary="Set a job's status (open, closed) and invoice metadata",
        description=(
            "customer, title and reference appear on the job's next invoices; null clears one. "
            "A closed job still records usage: it goes on the next follow-up invoice."
        ),
        opt=ADMIN,
    )
    async def update(
        self, luc: NamedDependency[Resources], job_id: FromPath[str], data: JSONBody[JobPatch]
    ) -> JobInfoOut:
        job = await on_connection(luc.pool, lambda conn: update_job(conn, job_id, data.changes()))
        return job_info_out(job)

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
        limit: Annotated[int | None, QueryParameter(description="page size, 1–1000 (100)")] = None,
    ) -> LedgerPage:
        size = page_size(limit)
        position = decode_cursor(cursor)
        if position and not position.isdigit():
            raise InvalidRequestError("cursor is not one this API issued", status_code=400)
        rows = await on_connection(
            luc.pool, lambda conn: job_entries(conn, job_id, int(position or 0), size + 1)
        )
        if not rows and not position:
            exists = await on_connection(luc.pool, lambda conn: job_detail(conn, job_id))
            if exists is None:
                raise NotFoundError(f"job {job_id!r} has no recorded usage")
        more = len(rows) > size
        rows = rows[:size]
        return LedgerPage(
            job_id=job_id,
            items=[
                LedgerEntryOut(
                    id=e.id,
                    event_id=e.event_id,
                    kind=e.kind,
                    job_id=e.job_id,
                    agent=e.agent,
                    model=e.model,
                    provider=e.provider,
                    tier=e.tier,
                    catalog_version=e.catalog_version,
                    occurred_at=timestamp(e.occurred_at) or "",
                    recorded_at=timestamp(e.recorded_at) or "",
                    **counts_of(e),
                    events=e.event_count,
                    unpriced_events=e.unpriced_count,
                    cost_usd=money(e.cost_usd),
                    provider_cost_usd=money(e.provider_cost_usd),
                    unit_prices=unit_prices(e.unit_prices),
                    reason=e.reason,
                )
                for e in rows
            ],
            next_cursor=encode_cursor(str(rows[-1].id)) if more else None,
        )
