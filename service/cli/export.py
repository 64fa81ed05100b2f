"""``luc export``: the ledger in formats other tools read, from the server's database."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import click

from service.cli.database import run_on_database
from service.cli.options import option_values

if TYPE_CHECKING:
    from service.db import Connection


@click.group()
def export() -> None:
    """Exports of the cost and usage data, as finance tools read them."""


def _instant(name: str, text: str) -> datetime:
    from service.wire import WireValueError, parse_instant

    try:
        return parse_instant(name, text)
    except WireValueError as exc:
        raise click.BadParameter(exc.reason, param_hint=f"--{name}") from None


@export.command(name="focus")
@click.option("--from", "start", required=True, help="RFC 3339 instant, inclusive.")
@click.option("--to", "end", required=True, help="RFC 3339 instant, exclusive.")
def export_focus(start: str, end: str) -> None:
    """Write the usage and cost of [--from, --to) as FinOps FOCUS 1.2 CSV on stdout.

    The same file as GET /v1/exports/focus: one row per UTC day, job, agent, model and
    provider; BilledCost is the actual cost, ListCost the catalog's. At most 366 days at
    a time. Progress and a summary go to stderr:

        luc export focus --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z > nov.csv
    """
    from service.db import snapshot
    from service.exports.focus import header_csv, rows_csv
    from service.exports.service import export_range, focus_batches
    from service.money import EXACT
    from service.wire import money_text

    with option_values({"to": "--from / --to"}):
        span = export_range(_instant("from", start), _instant("to", end))
    first_day = span.start.date()
    # Every UTC day the range touches (its end is exclusive, on a whole second).
    days = ((span.end - timedelta(seconds=1)).date() - first_day).days + 1
    out = sys.stdout.buffer  # bytes: the CSV keeps its CRLF line ends on every platform

    async def work(conn: Connection) -> tuple[int, Decimal]:
        rows, billed = 0, Decimal(0)
        with click.progressbar(length=days, label="FOCUS rows by UTC day", file=sys.stderr) as bar:
            async with snapshot(conn):
                out.write(header_csv().encode())
                async for batch in focus_batches(conn, span):
                    out.write(rows_csv(batch, span).encode())
                    rows += len(batch)
                    for row in batch:
                        if row.actual_cost_usd is not None:
                            billed = EXACT.add(billed, row.actual_cost_usd)
                    bar.update((batch[-1].day - first_day).days + 1 - bar.pos)
                bar.update(days - bar.pos)
        out.flush()
        return rows, billed

    rows, billed = run_on_database(work)
    click.echo(f"{rows} rows, BilledCost {money_text(billed)} USD in total", err=True)
