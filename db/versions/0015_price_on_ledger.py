"""The customer's price on the ledger: ``price_usd`` and who set it on every entry, the
measure in every rollup, a customer × UTC month rollup, and budgets by customer and measure.

Revision ID: 0015_price_on_ledger
Revises: 0014_customers_plans
Create Date: 2026-11-30

Every ledger entry carries ``price_usd`` (SPEC §11: what the customer pays for it), the
customer it was priced for (``customer_id``: the job's customer when it was priced, NULL
for a job without one) and the plan version that set the price (``plan_id``,
``plan_version``; NULL when no plan did, and the price is then the catalog cost).

Entries already on the ledger were recorded before any plan priced anything: their price
is their catalog cost, as for a job without a customer or plan with LUC_DEFAULT_PLAN
unset. The column is first added as generated from ``cost_usd`` (PostgreSQL fills it in
the rewrite that adds it), then its expression is dropped, leaving a plain column whose
stored values stay: no UPDATE touches the append-only ledger (a rewrite under an exclusive
lock, like 0012). Their customer stays NULL: a job's customer is re-priced onto its
entries by adjustments (``luc plans reprice`` of the customer's plan, or a change of the
job's customer), never by editing them.

The rollups get the measure as ``rollups.models.Totals`` declares it; every row's price is
its cost (what its entries hold). The customer × month rollup is filled from the ledger.

No foreign key from the ledger to ``plan_versions`` or ``customers``: a per-row check
on the hottest insert, for rows the same transaction just read (as for usage_events).
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0015_price_on_ledger"
down_revision = "0014_customers_plans"
branch_labels = None
depends_on = None

_ROLLUPS = (
    "rollup_jobs",
    "rollup_job_lines",
    "rollup_usage",
    "rollup_agent_days",
    "rollup_model_days",
)


def upgrade() -> None:
    # A job line's price stays NULL while none of its entries knows one (an unpriced line
    # under a catalog basis), as its cost does; the other rollups count unknown as zero.
    columns = "".join(
        f"ALTER TABLE {table} ADD COLUMN price_usd numeric"
        + ("" if table == "rollup_job_lines" else " NOT NULL DEFAULT 0")
        + f";\nUPDATE {table} SET price_usd = cost_usd;\n"
        for table in _ROLLUPS
    )
    run_sql(
        f"""
ALTER TABLE ledger_entries ADD COLUMN price_usd numeric GENERATED ALWAYS AS (cost_usd) STORED;
ALTER TABLE ledger_entries ALTER COLUMN price_usd DROP EXPRESSION;
ALTER TABLE ledger_entries ADD COLUMN customer_id text;
ALTER TABLE ledger_entries ADD COLUMN plan_id text;
ALTER TABLE ledger_entries ADD COLUMN plan_version bigint;
-- A plan version names its plan; no plan, no version.
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_plan_named
    CHECK ((plan_id IS NULL) = (plan_version IS NULL));
{columns}
-- Per customer (NULL: jobs without one) and UTC month (its first day) of occurred_at:
-- what GET /v1/customers/{{id}} reads month to date, and the finance dashboard's top
-- customers. The measures are rollups.models.Totals'.
CREATE TABLE rollup_customer_months (
    customer_id         text,
    month               date NOT NULL,
    input_tokens        numeric NOT NULL DEFAULT 0,
    cached_input_tokens numeric NOT NULL DEFAULT 0,
    cache_write_tokens  numeric NOT NULL DEFAULT 0,
    output_tokens       numeric NOT NULL DEFAULT 0,
    reasoning_tokens    numeric NOT NULL DEFAULT 0,
    cost_usd            numeric NOT NULL DEFAULT 0,
    actual_cost_usd     numeric NOT NULL DEFAULT 0,
    provider_cost_usd   numeric NOT NULL DEFAULT 0,
    price_usd           numeric NOT NULL DEFAULT 0,
    events              bigint NOT NULL DEFAULT 0,
    unpriced_events     bigint NOT NULL DEFAULT 0,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL,
    CONSTRAINT rollup_customer_months_key UNIQUE NULLS NOT DISTINCT (customer_id, month)
);
CREATE INDEX rollup_customer_months_month ON rollup_customer_months (month);
INSERT INTO rollup_customer_months
SELECT customer_id, date_trunc('month', billing_day)::date,
       sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),
       sum(output_tokens), sum(reasoning_tokens),
       COALESCE(sum(cost_usd), 0), COALESCE(sum(actual_cost_usd), 0),
       COALESCE(sum(provider_cost_usd), 0), COALESCE(sum(price_usd), 0),
       sum(event_count), sum(unpriced_count), min(occurred_at), max(occurred_at)
FROM ledger_entries
GROUP BY 1, 2;

-- Budgets count a customer's jobs, and any of the three figures (SPEC §6).
ALTER TABLE budgets DROP CONSTRAINT budgets_scope_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_scope_check
    CHECK (scope IN ('global', 'agent', 'job', 'model', 'customer'));
ALTER TABLE budgets ADD COLUMN measure text NOT NULL DEFAULT 'cost'
    CHECK (measure IN ('cost', 'actual_cost', 'price'));
"""
    )


def downgrade() -> None:
    run_sql(
        """
-- A budget by customer or of another measure has no meaning before this revision, and
-- its alerts keep it: retire such budgets (DELETE /v1/budgets/{id}) before downgrading.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM budgets WHERE scope = 'customer' OR measure <> 'cost') THEN
        RAISE EXCEPTION 'budgets of scope customer or of measure actual_cost or price exist;'
            ' this revision cannot be undone while they do';
    END IF;
END
$$;
ALTER TABLE budgets DROP COLUMN measure;
ALTER TABLE budgets DROP CONSTRAINT budgets_scope_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_scope_check
    CHECK (scope IN ('global', 'agent', 'job', 'model'));
DROP TABLE rollup_customer_months;
"""
        + "".join(f"ALTER TABLE {table} DROP COLUMN price_usd;\n" for table in _ROLLUPS)
        + """
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_plan_named;
ALTER TABLE ledger_entries DROP COLUMN plan_version;
ALTER TABLE ledger_entries DROP COLUMN plan_id;
ALTER TABLE ledger_entries DROP COLUMN customer_id;
ALTER TABLE ledger_entries DROP COLUMN price_usd;
"""
    )
