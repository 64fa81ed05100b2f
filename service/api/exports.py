"""Exports: the cost and usage data as a FinOps FOCUS 1.2 CSV file, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import TooManyRequestsException
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter
from litestar.response import Stream

from service.api.deps import LucController, Resources
from service.api.params import parse_instant
from service.auth.guard import READ
from service.db import snapshot
from service.exports.focus import FOCUS_VERSION, MEDIA_TYPE
from service.exports.models import ExportRange
from service.exports.service import MAX_DAYS, export_range, focus_csv

# Required, but checked by the handler so that a missing bound is told like a wrong one.
From = Annotated[
    str | None, QueryParameter(name="from", required=True, description="RFC 3339, inclusive")
]
To = Annotated[
    str | None, QueryParameter(name="to", required=True, description="RFC 3339, exclusive")
]


RETRY_AFTER_SECONDS = "5"


class _Running:
    """How many exports this process is sending. Each holds a pooled connection until its
    client has read the file, however slowly: a few at most, so that ingest and the other
    reads keep theirs. The limit is checked when a request arrives and counted while its
    body is sent, so requests that arrive at the same instant may pass it together."""

    count = 0

    @staticmethod
    def limit(luc: Resources) -> int:
        return max(1, luc.settings.database.pool_max_size // 4)


async def _streamed(pool: asyncpg.Pool, span: ExportRange) -> AsyncIterator[str]:
    # The connection is taken once the body is sent, and given back when it ends or the
    # client goes away (closing the generator leaves both blocks). A failure past the
    # header cannot change the 200 any more: the response is cut off without its last
    # chunk, so no client takes part of a file for all of it.
    _Running.count += 1
    try:
        async with pool.acquire() as conn, snapshot(conn):
            async for text in focus_csv(conn, span):
                yield text
    finally:
        _Running.count -= 1


def _stamp(span: ExportRange) -> str:
    # The year padded by hand: the C library's %Y writes the year 500 as "500".
    return "-".join(f"{t.year:04d}{t:%m%dT%H%M%SZ}" for t in (span.start, span.end))


class ExportsController(LucController):
    path = "/v1/exports"
    tags = ["exports"]
    opt = READ

    @get(
        "/focus",
        operation_id="exportFocus",
        summary="Cost and usage as FinOps FOCUS 1.2 CSV, one row per UTC day × job × agent "
        "× model × provider",
        description=(
            "`from` (inclusive) and `to` (exclusive) are required RFC 3339 instants on whole "
            f"seconds, at most {MAX_DAYS} days apart. The file is streamed as it is read. "
            "BilledCost and EffectiveCost are the actual cost (the provider's reported cost "
            "where reported, else the catalog's), ListCost and ContractedCost the catalog "
            "cost; re-rating corrections count in the day of the event they correct. Columns "
            "prefixed `x_` are LUC's own (job, agent, model, catalog versions, events, "
            "token counts). Empty cells are nulls."
        ),
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type=MEDIA_TYPE,
                description="FOCUS CSV: a header row, then one row per group",
                generate_examples=False,
            )
        },
    )
    async def focus(
        self, luc: NamedDependency[Resources], start: From = None, end: To = None
    ) -> Stream:
        span = export_range(parse_instant("from", start), parse_instant("to", end))
        limit = _Running.limit(luc)
        if _Running.count >= limit:
            raise TooManyRequestsException(
                f"this server is sending as many exports as it sends at once ({limit}: each "
                "holds a database connection until its client has the file); "
                "retry after the Retry-After delay",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        return Stream(
            _streamed(luc.pool, span),
            media_type=MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="luc-focus-{_stamp(span)}.csv"',
                "X-FOCUS-Version": FOCUS_VERSION,
            },
        )
