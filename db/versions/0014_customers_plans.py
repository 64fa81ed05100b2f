"""Customers, rate plans with immutable effective-dated versions, and a job's customer.

Revision ID: 0014_customers_plans
Revises: 0013_reconciliation
Create Date: 2026-11-29
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0014_customers_plans"
down_revision = "0013_reconciliation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- A rate plan is a name; what it charges is in its versions. Plans are never renamed nor
-- removed (a customer or LUC_DEFAULT_PLAN may name one at any time).
CREATE TABLE plans (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Immutable, like catalog versions: a correction is a new version. The one in force at an
-- event is the latest effective_from not after it, ties to the one created last (the
-- highest id, which the index orders by).
CREATE TABLE plan_versions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id             text NOT NULL REFERENCES plans (id),
    effective_from      timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    basis               text NOT NULL CHECK (basis IN ('catalog', 'actual')),
    -- A fraction: 0.25 adds 25 % to the basis cost. Discounts are the plan's own prices.
    markup              numeric NOT NULL CHECK (markup >= 0 AND markup <= 10),
    per_request_usd     numeric NOT NULL DEFAULT 0 CHECK (per_request_usd >= 0),
    minimum_monthly_usd numeric CHECK (minimum_monthly_usd >= 0),
    -- The plan's own price per catalog model id, in the catalog's entry form (decimal
    -- strings per 1M tokens, as given, with the model's name and tier): read back through
    -- the catalog's own parser, so a plan's price entry is the catalog's, whatever it
    -- holds (long context included), and is never declared a second time here.
    models              jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX plan_versions_in_force ON plan_versions (plan_id, effective_from DESC, id DESC);

CREATE TRIGGER plans_append_only BEFORE UPDATE OR DELETE ON plans
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER plans_no_truncate BEFORE TRUNCATE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER plan_versions_append_only BEFORE UPDATE OR DELETE ON plan_versions
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER plan_versions_no_truncate BEFORE TRUNCATE ON plan_versions
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- Who is billed. Mutable: a customer changes address or plan; price history stays on the
-- ledger.
CREATE TABLE customers (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    email           text,
    address         text,
    tax_id          text,
    plan_id         text REFERENCES plans (id),
    invoicing       text NOT NULL DEFAULT 'per_job' CHECK (invoicing IN ('per_job', 'monthly')),
    low_balance_usd numeric CHECK (low_balance_usd >= 0),
    credit_stop     boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The customer a job belongs to. No foreign key: the first event naming a customer sets
-- it even before that customer is registered (the call was paid for; it must not be lost).
-- `customer` beside it stays the free text printed on the job's invoices.
ALTER TABLE jobs ADD COLUMN customer_id text;
CREATE INDEX jobs_by_customer ON jobs (customer_id) WHERE customer_id IS NOT NULL;

-- Every change of a job's customer by PATCH (an event only ever sets a job's first one, and
-- keeps its customer_id itself). Append-only: the history re-pricing and audits read.
CREATE TABLE job_customer_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          text NOT NULL REFERENCES jobs (job_id),
    customer_before text,
    customer_after  text,
    changed_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX job_customer_changes_by_job ON job_customer_changes (job_id, id);
CREATE TRIGGER job_customer_changes_append_only BEFORE UPDATE OR DELETE ON job_customer_changes
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER job_customer_changes_no_truncate BEFORE TRUNCATE ON job_customer_changes
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
"""
    )


def downgrade() -> None:
    run_sql(
        """
DROP TABLE job_customer_changes;
DROP INDEX jobs_by_customer;
ALTER TABLE jobs DROP COLUMN customer_id;
DROP TABLE customers, plan_versions, plans;
"""
    )
