"""``luc partitions``: the ledger's month partitions, for an operator's cron job."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from service.cli.database import run_on_database
from service.ledger.queries import MONTHS_AHEAD

if TYPE_CHECKING:
    from service.db import Connection
    from service.ledger.months import MonthsReport


@click.group()
def partitions() -> None:
    """The ledger's month partitions (UTC months of occurred_at).

    `luc serve` makes the coming months at start and every LUC_PARTITION_CHECK_SECONDS,
    and `luc migrate` makes them too. `luc partitions ensure` does it apart from both,
    e.g. from cron as the schema's owner (README, Operating LUC).
    """


@partitions.command(name="ensure")
@click.option(
    "--ahead",
    type=click.IntRange(0, 120),
    default=MONTHS_AHEAD,
    show_default=True,
    help="Months after this one to make.",
)
def partitions_ensure(ahead: int) -> None:
    """Make the partitions of this month and the next AHEAD; list what exists.

    Safe beside running servers and other runs. Says how many entries wait in the default
    partition (events of months that had no partition when they were recorded).
    """
    from service.ledger.months import ensure_months

    async def work(conn: Connection) -> MonthsReport:
        return await ensure_months(conn, ahead)

    for line in run_on_database(work).lines():
        click.echo(line)
