"""Exports: the cost and usage data as a FinOps FOCUS 1.2 CSV file, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.response import Stream

from service.api.deps import LucController, Resources
from service.api.params import From, To, parse_instant
from service.auth.guard import READ
from service.exports.focus import FOCUS_VERSION, MEDIA_TYPE
from service.exports.models import ExportRange
from service.exports.service import MAX_DAYS, export_range, focus_csv, snapshot


async def _streamed(pool: asyncpg.Pool, span: ExportRange) -> AsyncIterator[str]:
    # The connection is taken once the body is sent, and given back when it ends or the
    # client goes away (closing the generator leaves both blocks). A failure past the
    # header cannot change the 200 any more: the response is cut off without its last
    # chunk, so no client takes part of a file for all of it.
    async with pool.acquire() as conn, snapshot(conn):
        async for text in focus_csv(conn, span):
            yield text


def _stamp(span: ExportRange) -> str:
    return f"{span.start:%Y%m%dT%H%M%SZ}-{span.end:%Y%m%dT%H%M%SZ}"


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
        responses={200: ResponseSpec(data_container=str, description="FOCUS CSV (text/csv)")},
    )
    async def focus(
        self, luc: NamedDependency[Resources], start: From = None, end: To = None
    ) -> Stream:
        span = export_range(parse_instant("from", start), parse_instant("to", end))
        return Stream(
            _streamed(luc.pool, span),
            media_type=MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="luc-focus-{_stamp(span)}.csv"',
                "X-FOCUS-Version": FOCUS_VERSION,
            },
        )
