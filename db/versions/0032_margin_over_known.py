"""Each rollup sums the margin of the entries whose price and actual cost are both known.

Revision ID: 0032_margin_over_known
Revises: 0031_reservation_keys_alert_seq
Create Date: 2026-12-02

``margin_usd`` was the rollup's price less its actual cost. An event of unknown price and
known actual cost (a model no catalog version prices, whose provider reported a cost,
under a catalog-basis plan or none) adds its cost to the actual cost and nothing to the
price, so every group holding one, beside priced events, said a margin smaller by that
cost. SPEC §11: ``margin_usd`` = ``price_usd`` − ``actual_cost_usd`` wherever both are
known. Each rollup now sums it per entry (``price_usd − actual_cost_usd``, NULL skipped),
and counts the events whose price or actual cost is unknown (``unknown_margin_events``), so
that totals none of whose events knows both say null, as for the other measures.

Backfilled from the ledger in the migration's transaction, every rollup row: a job line
keeps NULL while none of its entries knows both (as its price and cost do); the other
rollups count unknown as zero.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0032_margin_over_known"
down_revision = "0031_reservation_keys_alert_seq"
branch_labels = None
depends_on = None

# As they are at this revision (a migration does not follow later code): table → its key
# columns and the same keys over ledger_entries.
_ROLLUPS = {
    "rollup_jobs": {"job_id": "job_id"},
    "rollup_job_lines": {
        k: k
        for k in ("job_id", "agent", "model", "provider", "catalog_version", "long_context_from")
    },
    "rollup_usage": {k: k for k in ("agent", "model", "provider", "tier")},
    "rollup_agent_days": {"agent": "agent", "day": "billing_day"},
    "rollup_model_days": {"model": "model", "day": "billing_day"},
    "rollup_customer_months": {
        "customer_id": "customer_id",
        "month": "date_trunc('month', billing_day)::date",
    },
}
_KEEPS_UNKNOWN = "rollup_job_lines"


def _backfill(table: str, keys: dict[str, str]) -> str:
    selected = ", ".join(f"{source} AS {key}" for key, source in keys.items())
    grouped = ", ".join(keys.values())
    # Key columns may be NULL (a tier, a catalog version, a customer): matched as values.
    matched = " AND ".join(f"r.{key} IS NOT DISTINCT FROM u.{key}" for key in keys)
    margin = "sum(price_usd - actual_cost_usd)"
    if table != _KEEPS_UNKNOWN:
        margin = f"COALESCE({margin}, 0)"
    return f"""
UPDATE {table} AS r
SET margin_usd = u.margin_usd,
    unknown_margin_events = u.unknown_margin_events
FROM (
    SELECT {selected},
           {margin} AS margin_usd,
           COALESCE(sum(event_count)
                    FILTER (WHERE price_usd IS NULL OR actual_cost_usd IS NULL), 0)
               AS unknown_margin_events
    FROM ledger_entries
    GROUP BY {grouped}
) AS u
WHERE {matched};
"""


def upgrade() -> None:
    run_sql(
        "".join(
            f"ALTER TABLE {table} ADD COLUMN margin_usd numeric"
            + ("" if table == _KEEPS_UNKNOWN else " NOT NULL DEFAULT 0")
            + ",\n    ADD COLUMN unknown_margin_events bigint NOT NULL DEFAULT 0;\n"
            for table in _ROLLUPS
        )
        + "".join(_backfill(table, keys) for table, keys in _ROLLUPS.items())
    )


def downgrade() -> None:
    run_sql(
        "".join(
            f"ALTER TABLE {table} DROP COLUMN margin_usd,\n    DROP COLUMN unknown_margin_events;\n"
            for table in _ROLLUPS
        )
    )
