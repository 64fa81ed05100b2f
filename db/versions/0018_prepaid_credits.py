"""Prepaid credits: grants, the draws each priced entry makes on them, a customer's credit
account (the lock that orders its draws, and its alerts' arming), credit alerts beside
budget alerts, and a customer's webhook target.

Revision ID: 0018_prepaid_credits
Revises: 0021_rate_limit_windows
Create Date: 2026-11-30

A grant's ``remaining_usd`` is a projection of its draws (``amount_usd`` − the sum of its
``credit_draws``), kept in the transaction that appends them, like a rollup; every other
column of a grant is fixed once written. Draws are append-only facts: an entry draws on a
grant at most once (the unique key), and a negative draw is credit given back by a
negative price adjustment.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0018_prepaid_credits"
down_revision = "0021_rate_limit_windows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- Where a customer's credit alerts are posted (signed with LUC_WEBHOOK_SECRET); null: the
-- alerts are recorded (GET /v1/alerts) and not sent.
ALTER TABLE customers ADD COLUMN webhook_url text;

-- One row per customer that was ever granted credits. Every writer of the customer's
-- grants locks it first (a grant, a batch drawing on them), so draws never overdraw, a new
-- grant is never missed by a batch that locked after it, and each alert fires once. The
-- flags say which alerts may fire: set by a grant that clears their condition, cleared
-- when they fire.
CREATE TABLE credit_accounts (
    customer_id             text PRIMARY KEY REFERENCES customers (id),
    low_alert_armed         boolean NOT NULL DEFAULT true,
    exhausted_alert_armed   boolean NOT NULL DEFAULT true,
    created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credit_grants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     text NOT NULL REFERENCES credit_accounts (customer_id),
    amount_usd      numeric NOT NULL CHECK (amount_usd > 0),
    -- Never negative, never above the grant: the balance is never negative, and credit
    -- given back never exceeds what was drawn.
    remaining_usd   numeric NOT NULL CHECK (remaining_usd >= 0 AND remaining_usd <= amount_usd),
    -- Null: never expires. At and after it the grant stops counting.
    expires_at      timestamptz,
    reference       text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX credit_grants_by_customer ON credit_grants (customer_id, id);

-- Only remaining_usd moves (with the draws); a grant is never removed.
CREATE FUNCTION luc_credit_grant_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (NEW.id, NEW.customer_id, NEW.amount_usd, NEW.expires_at,
                            NEW.reference, NEW.created_at)
            IS DISTINCT FROM (OLD.id, OLD.customer_id, OLD.amount_usd, OLD.expires_at,
                              OLD.reference, OLD.created_at) THEN
        RAISE EXCEPTION 'credit_grants: only remaining_usd changes (by draws); % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER credit_grants_guard BEFORE UPDATE OR DELETE ON credit_grants
    FOR EACH ROW EXECUTE FUNCTION luc_credit_grant_guard();
CREATE TRIGGER credit_grants_no_truncate BEFORE TRUNCATE ON credit_grants
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- What each ledger entry drew on each grant (negative: given back). No foreign key to
-- the ledger (partitioned; its key holds occurred_at), as for the rollups.
CREATE TABLE credit_draws (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id        bigint NOT NULL,
    event_id        text NOT NULL,
    grant_id        bigint NOT NULL REFERENCES credit_grants (id),
    customer_id     text NOT NULL,
    amount_usd      numeric NOT NULL CHECK (amount_usd <> 0),
    drawn_at        timestamptz NOT NULL DEFAULT now(),
    -- An entry draws on a grant once, whatever retries happen; the index also finds the
    -- draws of the entries an invoice bills.
    CONSTRAINT credit_draws_once UNIQUE (entry_id, grant_id)
);
-- A negative price adjustment gives back what its event drew: found by event.
CREATE INDEX credit_draws_by_event ON credit_draws (event_id);
CREATE TRIGGER credit_draws_append_only BEFORE UPDATE OR DELETE ON credit_draws
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER credit_draws_no_truncate BEFORE TRUNCATE ON credit_draws
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- Credit alerts go in the alerts table and its outbox, beside budget alerts: one list
-- (GET /v1/alerts), one delivery. Each row is one kind or the other.
ALTER TABLE alerts ADD COLUMN type text NOT NULL DEFAULT 'budget.threshold_crossed'
    CHECK (type IN ('budget.threshold_crossed', 'customer.credits_low',
                    'customer.credits_exhausted'));
ALTER TABLE alerts ADD COLUMN customer_id text;
ALTER TABLE alerts ADD COLUMN balance_usd numeric;
ALTER TABLE alerts ADD COLUMN low_balance_usd numeric;
ALTER TABLE alerts ALTER COLUMN budget_id DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN period_start DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN threshold DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN spent_usd DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN limit_usd DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN scope DROP NOT NULL;
ALTER TABLE alerts ADD CONSTRAINT alerts_shape CHECK (
    CASE type
        WHEN 'budget.threshold_crossed' THEN
            budget_id IS NOT NULL AND period_start IS NOT NULL AND threshold IS NOT NULL
            AND spent_usd IS NOT NULL AND limit_usd IS NOT NULL AND scope IS NOT NULL
        ELSE customer_id IS NOT NULL AND balance_usd IS NOT NULL AND budget_id IS NULL
    END
);
"""
    )


def downgrade() -> None:
    run_sql(
        """
-- Credit alerts have no place in the alerts table before this revision, and alerts are
-- facts: the downgrade refuses while any exist.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM alerts WHERE type <> 'budget.threshold_crossed') THEN
        RAISE EXCEPTION 'credit alerts exist; this revision cannot be undone while they do';
    END IF;
END
$$;
ALTER TABLE alerts DROP CONSTRAINT alerts_shape;
ALTER TABLE alerts ALTER COLUMN budget_id SET NOT NULL;
ALTER TABLE alerts ALTER COLUMN period_start SET NOT NULL;
ALTER TABLE alerts ALTER COLUMN threshold SET NOT NULL;
ALTER TABLE alerts ALTER COLUMN spent_usd SET NOT NULL;
ALTER TABLE alerts ALTER COLUMN limit_usd SET NOT NULL;
ALTER TABLE alerts ALTER COLUMN scope SET NOT NULL;
ALTER TABLE alerts DROP COLUMN low_balance_usd;
ALTER TABLE alerts DROP COLUMN balance_usd;
ALTER TABLE alerts DROP COLUMN customer_id;
ALTER TABLE alerts DROP COLUMN type;
DROP TABLE credit_draws, credit_grants, credit_accounts;
DROP FUNCTION luc_credit_grant_guard();
ALTER TABLE customers DROP COLUMN webhook_url;
"""
    )
