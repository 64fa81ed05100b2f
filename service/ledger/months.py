"""The ledger's month partitions, as an operator sees them: what ``luc partitions ensure``
(a cron job run as the schema's owner) makes and reports.

``luc serve`` keeps the coming months by itself (``service.app.keep_months_ahead``); the
command is for deployments that want it done apart from the service too, and to see
what waits in the default partition (rows of a month that had no partition yet: that
month can then never get one, see docs/scaling.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.db import Connection
from service.ledger import queries
from service.ledger.service import ensure_months_ahead

MONTH_PARTITIONS = """
SELECT c.relname AS name
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'ledger_entries'::regclass AND c.relname ~ '^ledger_entries_[0-9]{4}_[0-9]{2}$'
ORDER BY c.relname
"""
DEFAULT_ROWS = "SELECT count(*) FROM ledger_entries_default"


@dataclass(frozen=True, slots=True)
class MonthsReport:
    created: int
    """Month partitions made by this run."""
    months: list[str]
    """Every month partition, oldest first (``ledger_entries_YYYY_MM``)."""
    default_rows: int
    """Entries in the default partition (outside every month partition)."""

    def lines(self) -> list[str]:
        """What the command prints."""
        span = f"{self.months[0]} … {self.months[-1]}" if self.months else "none"
        out = [f"{self.created} month partitions created; {len(self.months)} present ({span})"]
        if self.default_rows:
            out.append(
                f"{self.default_rows} ledger entries are in ledger_entries_default (months "
                "without a partition when they were recorded: late or far-off events); they "
                "count as any other, nothing needs doing"
            )
        return out


async def ensure_months(conn: Connection, ahead: int = queries.MONTHS_AHEAD) -> MonthsReport:
    """Make the partitions of the month before, this month and the next ``ahead`` when
    missing; report."""
    created = await ensure_months_ahead(conn, ahead)
    months = [r["name"] for r in await conn.fetch(MONTH_PARTITIONS)]
    return MonthsReport(created, months, int(await conn.fetchval(DEFAULT_ROWS)))
