"""Core ledger: catalog versions and prices, usage events, ledger entries, rollups.

Revision ID: 0001_core_ledger
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0001_core_ledger"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- Refuses UPDATE, DELETE and TRUNCATE on tables whose rows are facts: corrections are
-- new rows (a new catalog version, an adjustment entry), never edits.
CREATE FUNCTION luc_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Catalog --------------------------------------------------------------------------------
CREATE TABLE catalog_versions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label           text,
    effective_from  timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    default_model   text,
    aliases         jsonb NOT NULL DEFAULT '{}'::jsonb,
    parent_id       bigint REFERENCES catalog_versions (id)
);
-- Lookup of the version in force: latest effective_from not after the event, ties to the
-- version created last (highest id).
CREATE INDEX catalog_versions_in_force ON catalog_versions (effective_from DESC, id DESC);

-- Prices per 1M tokens, with every default already applied (cache_read = input, ...), so
-- an entry that names a version names exactly the prices it used.
CREATE TABLE catalog_prices (
    version_id      bigint NOT NULL REFERENCES catalog_versions (id),
    model_id        text NOT NULL,
    name            text NOT NULL,
    tier            text NOT NULL CHECK (tier IN ('premium', 'standard', 'fast', 'economy')),
    context_tokens  integer,
    input           numeric NOT NULL CHECK (input >= 0),
    output          numeric NOT NULL CHECK (output >= 0),
    cache_read      numeric NOT NULL CHECK (cache_read >= 0),
    cache_write     numeric NOT NULL CHECK (cache_write >= 0),
    reasoning       numeric NOT NULL CHECK (reasoning >= 0),
    per_request     numeric NOT NULL CHECK (per_request >= 0),
    PRIMARY KEY (version_id, model_id)
);

CREATE TRIGGER catalog_versions_append_only BEFORE UPDATE OR DELETE ON catalog_versions
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER catalog_versions_no_truncate BEFORE TRUNCATE ON catalog_versions
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER catalog_prices_append_only BEFORE UPDATE OR DELETE ON catalog_prices
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER catalog_prices_no_truncate BEFORE TRUNCATE ON catalog_prices
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- Usage events: the gateway's facts as received. The primary key is the idempotency key.
CREATE TABLE usage_events (
    event_id            text PRIMARY KEY,
    occurred_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    job_id              text NOT NULL,
    agent               text NOT NULL,
    provider            text NOT NULL,
    model               text NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens  bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    reasoning_tokens    bigint NOT NULL,
    provider_cost_usd   numeric,
    status              text NOT NULL,
    attributes          jsonb
);
CREATE TRIGGER usage_events_append_only BEFORE UPDATE OR DELETE ON usage_events
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER usage_events_no_truncate BEFORE TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- Ledger: one charge per event, adjustments for re-rating. Token columns and counts are
-- signed deltas so that a reversal entry can take back what a charge added.
CREATE TABLE ledger_entries (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key to usage_events: both rows are written by the same transaction of
    -- record_batch, and the per-row check cost a fifth of the ledger insert.
    event_id            text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('charge', 'adjustment')),
    job_id              text NOT NULL,
    agent               text NOT NULL,
    model               text NOT NULL,
    provider            text NOT NULL,
    tier                text,
    catalog_version     bigint REFERENCES catalog_versions (id),
    occurred_at         timestamptz NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    billing_day         date NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens  bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    reasoning_tokens    bigint NOT NULL,
    event_count         integer NOT NULL,
    unpriced_count      integer NOT NULL,
    -- NULL while unpriced: an unknown price is never a silent zero.
    cost_usd            numeric,
    provider_cost_usd   numeric,
    price_input         numeric,
    price_output        numeric,
    price_cache_read    numeric,
    price_cache_write   numeric,
    price_reasoning     numeric,
    price_per_request   numeric,
    reason              text,
    CHECK ((catalog_version IS NULL) = (cost_usd IS NULL))
);
CREATE INDEX ledger_entries_job ON ledger_entries (job_id, id);
CREATE INDEX ledger_entries_event ON ledger_entries (event_id);
CREATE INDEX ledger_entries_occurred ON ledger_entries (occurred_at);
-- Small: only entries that add or take back an unpriced event.
CREATE INDEX ledger_entries_unpriced ON ledger_entries (event_id) WHERE unpriced_count <> 0;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- Rollups: projections of the ledger, updated in the transaction that appends entries.
CREATE TABLE rollup_jobs (
    job_id              text PRIMARY KEY,
    cost_usd            numeric NOT NULL DEFAULT 0,
    provider_cost_usd   numeric NOT NULL DEFAULT 0,
    events              bigint NOT NULL DEFAULT 0,
    unpriced_events     bigint NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL
);
CREATE INDEX rollup_jobs_last_event ON rollup_jobs (last_event_at);

-- Invoice lines: one unit price per line, so the catalog version is part of the key.
-- NULLS NOT DISTINCT: the unpriced line of a job (no version) is one row, not many.
CREATE TABLE rollup_job_lines (
    job_id              text NOT NULL,
    agent               text NOT NULL,
    model               text NOT NULL,
    provider            text NOT NULL,
    catalog_version     bigint,
    cost_usd            numeric,
    provider_cost_usd   numeric NOT NULL DEFAULT 0,
    events              bigint NOT NULL DEFAULT 0,
    unpriced_events     bigint NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (job_id, agent, model, provider, catalog_version)
);
CREATE INDEX rollup_job_lines_agent ON rollup_job_lines (agent, job_id);

-- Totals without the job: what /metrics serves. Its size is bounded by agents × models ×
-- providers × tiers, so a scrape costs the same with a hundred jobs or a million.
CREATE TABLE rollup_usage (
    agent               text NOT NULL,
    model               text NOT NULL,
    provider            text NOT NULL,
    tier                text,
    cost_usd            numeric NOT NULL DEFAULT 0,
    provider_cost_usd   numeric NOT NULL DEFAULT 0,
    events              bigint NOT NULL DEFAULT 0,
    unpriced_events     bigint NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (agent, model, provider, tier)
);

CREATE TABLE rollup_agent_days (
    agent               text NOT NULL,
    day                 date NOT NULL,
    cost_usd            numeric NOT NULL DEFAULT 0,
    provider_cost_usd   numeric NOT NULL DEFAULT 0,
    events              bigint NOT NULL DEFAULT 0,
    unpriced_events     bigint NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL,
    PRIMARY KEY (agent, day)
);

CREATE TABLE rollup_model_days (
    model               text NOT NULL,
    day                 date NOT NULL,
    cost_usd            numeric NOT NULL DEFAULT 0,
    provider_cost_usd   numeric NOT NULL DEFAULT 0,
    events              bigint NOT NULL DEFAULT 0,
    unpriced_events     bigint NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    first_event_at      timestamptz NOT NULL,
    last_event_at       timestamptz NOT NULL,
    PRIMARY KEY (model, day)
);
"""
    )


def downgrade() -> None:
    run_sql(
        """
DROP TABLE rollup_model_days, rollup_agent_days, rollup_usage, rollup_job_lines, rollup_jobs;
DROP TABLE ledger_entries, usage_events, catalog_prices, catalog_versions;
DROP FUNCTION luc_refuse_change();
"""
    )
