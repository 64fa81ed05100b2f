"""Each rollup counts the events whose price, and whose actual cost, is unknown.

Revision ID: 0030_unknown_price_counts
Revises: 0029_lines_priced_by_plans
Create Date: 2026-12-05

An event unpriced for its customer has no price (SPEC §11: ``price_usd`` null), and an
unpriced event that reported no cost has no actual cost. Only a job line's rollup kept such
a sum NULL; the others add it as zero, so a job, an agent, a day, a usage group or a
customer's month of such events said a price of "0", and with a reported cost a negative
margin. ``unknown_price_events`` and ``unknown_actual_events`` (sums of ``event_count``
over the entries whose price, or actual cost, is NULL) tell when no event knows it.

Backfilled from the ledger in the migration's transaction: only entries with an unknown
price or actual cost count, so only rollup rows of unpriced events are touched.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0030_unknown_price_counts"
down_revision = "0029_lines_priced_by_plans"
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


def _backfill(table: str, keys: dict[str, str]) -> str:
    selected = ", ".join(f"{source} AS {key}" for key, source in keys.items())
    grouped = ", ".join(keys.values())
    # Key columns may be NULL (a tier, a catalog version, a customer): matched as values.
    matched = " AND ".join(f"r.{key} IS NOT DISTINCT FROM u.{key}" for key in keys)
    return f"""
UPDATE {table} AS r
SET unknown_price_events = u.unknown_price_events,
    unknown_actual_events = u.unknown_actual_events
FROM (
    SELECT {selected},
           COALESCE(sum(event_count) FILTER (WHERE price_usd IS NULL), 0)
               AS unknown_price_events,
           COALESCE(sum(event_count) FILTER (WHERE actual_cost_usd IS NULL), 0)
               AS unknown_actual_events
    FROM ledger_entries
    WHERE price_usd IS NULL OR actual_cost_usd IS NULL
    GROUP BY {grouped}
) AS u
WHERE {matched};
"""


def upgrade() -> None:
    run_sql(
        "".join(
            f"ALTER TABLE {table} ADD COLUMN unknown_price_events bigint NOT NULL DEFAULT 0,\n"
            "    ADD COLUMN unknown_actual_events bigint NOT NULL DEFAULT 0;\n"
            for table in _ROLLUPS
        )
        + "".join(_backfill(table, keys) for table, keys in _ROLLUPS.items())
    )


def downgrade() -> None:
    run_sql(
        "".join(
            f"ALTER TABLE {table} DROP COLUMN unknown_price_events,\n"
            "    DROP COLUMN unknown_actual_events;\n"
            for table in _ROLLUPS
        )
    )
