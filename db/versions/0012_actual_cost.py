"""The third cost: ``actual_cost_usd`` on every ledger entry, rollup and invoice line.

Revision ID: 0012_actual_cost
Revises: 0011_long_context
Create Date: 2026-11-30

What was actually paid for a call (SPEC §3): the provider's reported cost where it
reported one, else the catalog's cost; an unpriced event with a reported cost has one,
an unpriced event without one has none (NULL). On the ledger the column is generated
from the entry's own two costs, so every entry keeps the rule by construction: a charge,
a reversal (both costs negated) and a new booking alike, and the rows already there are
filled by the same expression when the column is added (a rewrite of the ledger under an
exclusive lock; on a large ledger plan for it as for 0006). No UPDATE touches the
append-only table.

The rollups get the measure as ``rollups.models.Totals`` declares it, each row filled
from the ledger entries it sums. A job line keeps NULL when none of its entries knows an
actual cost (unpriced events without a reported cost), as it does for ``cost_usd``.

Issued invoices never change: their lines keep NULL (their documents, which the digest
covers, do not carry the figure); lines issued from now on record it.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0012_actual_cost"
down_revision = "0011_long_context"
branch_labels = None
depends_on = None

# rollup table → its key columns and the ledger expressions they are taken from
_ROLLUPS = {
    "rollup_jobs": {"job_id": "job_id"},
    "rollup_job_lines": {
        k: k
        for k in ("job_id", "agent", "model", "provider", "catalog_version", "long_context_from")
    },
    "rollup_usage": {k: k for k in ("agent", "model", "provider", "tier")},
    "rollup_agent_days": {"agent": "agent", "day": "billing_day"},
    "rollup_model_days": {"model": "model", "day": "billing_day"},
}


def _fill(table: str, keys: dict[str, str]) -> str:
    """Fill ``table``'s new column from the ledger, key by key. IS NOT DISTINCT FROM: the
    unpriced line (no version) and the unpriced usage row (no tier) have NULL keys."""
    unknown_stays_null = table == "rollup_job_lines"
    total = "sum(actual_cost_usd)" if unknown_stays_null else "COALESCE(sum(actual_cost_usd), 0)"
    sources = ", ".join(f"{source} AS {key}" for key, source in keys.items())
    match = " AND ".join(f"r.{key} IS NOT DISTINCT FROM s.{key}" for key in keys)
    return f"""
UPDATE {table} AS r SET actual_cost_usd = s.actual_cost_usd
FROM (SELECT {sources}, {total} AS actual_cost_usd
      FROM ledger_entries GROUP BY {", ".join(keys.values())}) AS s
WHERE {match};
"""


def upgrade() -> None:
    columns = "".join(
        f"ALTER TABLE {table} ADD COLUMN actual_cost_usd numeric"
        + ("" if table == "rollup_job_lines" else " NOT NULL DEFAULT 0")
        + ";\n"
        for table in _ROLLUPS
    )
    run_sql(
        f"""
-- SPEC §3: the provider's reported cost where present, else the catalog's; NULL when
-- neither is known. service.pricing.cost.actual_cost says the same in Python.
ALTER TABLE ledger_entries ADD COLUMN actual_cost_usd numeric
    GENERATED ALWAYS AS (COALESCE(provider_cost_usd, cost_usd)) STORED;
{columns}
{"".join(_fill(table, keys) for table, keys in _ROLLUPS.items())}
ALTER TABLE invoice_lines ADD COLUMN actual_cost_usd numeric;
"""
    )


def downgrade() -> None:
    run_sql(
        "".join(
            f"ALTER TABLE {table} DROP COLUMN actual_cost_usd;\n"
            for table in (*_ROLLUPS, "ledger_entries", "invoice_lines")
        )
    )
