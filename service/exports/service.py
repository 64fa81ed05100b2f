"""A FOCUS export: the range checked, then the ledger read through a server-side cursor a
batch at a time and written as CSV batch by batch, so memory holds one batch, never the
range."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import MAXYEAR, UTC, datetime, timedelta

from service.db import Connection
from service.errors import InvalidRequestError
from service.exports import queries
from service.exports.focus import header_csv, midnight, next_month, rows_csv
from service.exports.models import ExportRange, FocusRow
from service.wire import instant_text

MAX_DAYS = 366
"""The longest range one export covers: any calendar year. A longer one is exported in
parts; the limit bounds how long one export holds its snapshot open."""

FETCH_ROWS = 1000
"""Rows per fetch from the cursor, and per CSV chunk written."""


def export_range(start: datetime | None, end: datetime | None) -> ExportRange:
    """``from`` and ``to`` as an export takes them, or ``InvalidRequestError`` (400) saying
    which is wrong and why."""
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise InvalidRequestError(
            f"{missing} is required: an RFC 3339 instant ({missing} "
            f"{'inclusive' if start is None else 'exclusive'}, e.g. 2026-11-01T00:00:00Z)",
            status_code=400,
        )
    for name, value in (("from", start), ("to", end)):
        if value.microsecond:
            raise InvalidRequestError(
                f"{name}: {instant_text(value)} has a fraction of a second; FOCUS times are "
                "whole seconds",
                status_code=400,
            )
    if end <= start:
        raise InvalidRequestError(
            f"to ({instant_text(end)}) must be after from ({instant_text(start)})",
            status_code=400,
        )
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidRequestError(
            f"from {instant_text(start)} to {instant_text(end)} is longer than {MAX_DAYS} "
            "days; export a longer period in parts",
            status_code=400,
        )
    return ExportRange(start.astimezone(UTC), end.astimezone(UTC))


def month_slices(span: ExportRange) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut at UTC month starts: one query per month keeps each statement to
    one ledger partition, within the statement timeout however long the range."""
    lower = span.start
    while lower < span.end:
        # December 9999 has no next month a datetime holds: a range there ends inside it.
        last = lower.year == MAXYEAR and lower.month == 12
        upper = span.end if last else min(midnight(next_month(lower.date())), span.end)
        yield lower, upper
        lower = upper


async def focus_batches(
    conn: Connection, span: ExportRange, fetch_rows: int = FETCH_ROWS
) -> AsyncIterator[list[FocusRow]]:
    """The rows of ``span`` in (day, job, agent, model, provider) order, ``fetch_rows`` at
    a time, inside the caller's transaction (``snapshot``)."""
    for lower, upper in month_slices(span):
        cursor = await conn.cursor(queries.FOCUS_ROWS, lower, upper)
        while True:
            records = await cursor.fetch(fetch_rows)
            if records:
                yield [FocusRow.from_record(r) for r in records]
            if len(records) < fetch_rows:
                break


async def focus_csv(
    conn: Connection, span: ExportRange, fetch_rows: int = FETCH_ROWS
) -> AsyncIterator[str]:
    """The export as CSV text: the header, then one chunk per batch of rows."""
    yield header_csv()
    async for batch in focus_batches(conn, span, fetch_rows):
        yield rows_csv(batch, span)
