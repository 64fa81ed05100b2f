"""Every rollup keeps a cost no entry knows as NULL (unknown), as job lines do.

Revision ID: 0030_unknown_costs_stay_unknown
Revises: 0029_lines_priced_by_plans
Create Date: 2026-12-05

A job, an agent's day, a model's day, a usage row or a customer's month whose every event
is unpriced has no catalog cost; its actual cost is unknown while none of them reported
one, and its price while no plan priced one. These rollups added such an entry as zero,
so the API said "0" where the truth is "unknown" (unpriced is never silently zero, and a
price the plan cannot compute is null). The columns become nullable, and a row whose
entries know none of a cost gets NULL for it; every other value is already the sum of
its entries and stays. The ledger is not touched.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0030_unknown_costs_stay_unknown"
down_revision = "0029_lines_priced_by_plans"
branch_labels = None
depends_on = None

# As they are at this revision (a migration does not follow later code): each rollup, its
# key columns and the ledger expressions they are taken from.
_ROLLUPS = {
    "rollup_jobs": {"job_id": "job_id"},
    "rollup_usage": {k: k for k in ("agent", "model", "provider", "tier")},
    "rollup_agent_days": {"agent": "agent", "day": "billing_day"},
    "rollup_model_days": {"model": "model", "day": "billing_day"},
    "rollup_customer_months": {
        "customer_id": "customer_id",
        "month": "date_trunc('month', billing_day)::date",
    },
}
_COSTS = ("cost_usd", "actual_cost_usd", "price_usd")


def _upgrade(table: str, keys: dict[str, str]) -> str:
    nullable = ", ".join(
        f"ALTER COLUMN {c} DROP NOT NULL, ALTER COLUMN {c} DROP DEFAULT" for c in _COSTS
    )
    known = ", ".join(f"bool_or({c} IS NOT NULL) AS {c}_known" for c in _COSTS)
    grouped = ", ".join(f"{source} AS {key}" for key, source in keys.items())
    # Keys may be NULL (an unpriced row's tier, jobs without a customer).
    same_key = " AND ".join(f"r.{key} IS NOT DISTINCT FROM s.{key}" for key in keys)
    kept = ", ".join(f"{c} = CASE WHEN s.{c}_known THEN r.{c} END" for c in _COSTS)
    any_unknown = " OR ".join(f"NOT s.{c}_known" for c in _COSTS)
    return f"""
ALTER TABLE {table} {nullable};
UPDATE {table} AS r SET {kept}
FROM (SELECT {grouped}, {known}
      FROM ledger_entries
      GROUP BY {", ".join(keys.values())}) AS s
WHERE {same_key} AND ({any_unknown});
"""


def upgrade() -> None:
    run_sql("".join(_upgrade(table, keys) for table, keys in _ROLLUPS.items()))


def downgrade() -> None:
    run_sql(
        "".join(
            f"UPDATE {table} SET {', '.join(f'{c} = COALESCE({c}, 0)' for c in _COSTS)};\n"
            f"ALTER TABLE {table} "
            + ", ".join(
                f"ALTER COLUMN {c} SET DEFAULT 0, ALTER COLUMN {c} SET NOT NULL" for c in _COSTS
            )
            + ";\n"
            for table in _ROLLUPS
        )
    )
