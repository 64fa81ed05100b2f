"""Budgets, their spend per period, alerts and the webhook outbox, reservations.

Revision ID: 0002_budgets_and_alerts
Revises: 0001_core_ledger
Create Date: 2026-11-24
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0002_budgets_and_alerts"
down_revision = "0001_core_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- The start of the budget period that contains an instant, in UTC. Lifetime budgets have
-- one period, starting at the epoch.
CREATE FUNCTION luc_period_start(period text, at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE period
        WHEN 'day' THEN date_trunc('day', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        WHEN 'month' THEN date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        ELSE timestamptz '1970-01-01 00:00:00+00'
    END
$$;

CREATE TABLE budgets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope           text NOT NULL CHECK (scope IN ('global', 'agent', 'job', 'model')),
    scope_id        text,
    period          text NOT NULL CHECK (period IN ('lifetime', 'day', 'month')),
    limit_usd       numeric NOT NULL CHECK (limit_usd > 0),
    thresholds      numeric[] NOT NULL,
    hard            boolean NOT NULL DEFAULT false,
    webhook_url     text,
    webhook_secret  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CHECK ((scope = 'global') = (scope_id IS NULL))
);
-- Ingest finds the budgets an entry counts towards by scope and scope id.
CREATE INDEX budgets_active_scope ON budgets (scope, scope_id) WHERE deleted_at IS NULL;

-- Spend per budget and period, kept in the transaction that appends the entries. The
-- row lock taken by the upsert orders concurrent batches, so exactly one of them sees
-- the spend move across a threshold.
CREATE TABLE budget_spend (
    budget_id       bigint NOT NULL REFERENCES budgets (id),
    period_start    timestamptz NOT NULL,
    spent_usd       numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (budget_id, period_start)
);

CREATE TABLE alerts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    budget_id       bigint NOT NULL REFERENCES budgets (id),
    period_start    timestamptz NOT NULL,
    threshold       numeric NOT NULL,
    spent_usd       numeric NOT NULL,
    limit_usd       numeric NOT NULL,
    scope           text NOT NULL,
    scope_id        text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Each threshold fires once per budget and period, whatever the concurrency.
    UNIQUE (budget_id, period_start, threshold)
);

-- Transactional outbox: one row per alert with a webhook, claimed by the dispatcher.
CREATE TABLE alert_outbox (
    alert_id        uuid PRIMARY KEY REFERENCES alerts (id),
    webhook_url     text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    delivered_at    timestamptz,
    dead_at         timestamptz,
    last_error      text,
    -- Delivery is retried until this time, then the alert is marked dead; set by the
    -- dispatcher's first claim, from its configured retry window.
    retry_until     timestamptz
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

-- Money promised to calls that a hard budget allowed and whose usage has not arrived.
CREATE TABLE budget_reservations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    budget_id       bigint NOT NULL REFERENCES budgets (id),
    period_start    timestamptz NOT NULL,
    job_id          text,
    agent           text,
    model           text,
    amount_usd      numeric NOT NULL CHECK (amount_usd >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    settled_at      timestamptz
);
CREATE INDEX budget_reservations_open ON budget_reservations (budget_id, expires_at)
    WHERE settled_at IS NULL;
CREATE INDEX budget_reservations_call ON budget_reservations (job_id, agent, created_at)
    WHERE settled_at IS NULL;

CREATE TRIGGER alerts_append_only BEFORE UPDATE OR DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
"""
    )


def downgrade() -> None:
    run_sql(
        """
DROP TABLE budget_reservations, alert_outbox, alerts, budget_spend, budgets;
DROP FUNCTION luc_period_start(text, timestamptz);
"""
    )
