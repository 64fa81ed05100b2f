"""Invoices: job metadata, numbered immutable invoices, their lines and covered entries.

Revision ID: 0003_invoices
Revises: 0002_budgets_and_alerts
Create Date: 2026-11-24
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0003_invoices"
down_revision = "0002_budgets_and_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- What finance knows about a job beyond its usage. Mutable metadata: a row appears on the
-- first PATCH or the first invoice. Closing a job changes nothing at ingest; usage that
-- still arrives lands on the job's next follow-up invoice.
CREATE TABLE jobs (
    job_id      text PRIMARY KEY,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    customer    text,
    title       text,
    reference   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Gap-free invoice numbers: one row per year, incremented in the issuing transaction. The
-- row lock taken by the upsert queues concurrent issues, and a rolled-back issue rolls its
-- number back too. (A SEQUENCE would leave gaps: nextval is never rolled back.)
CREATE TABLE invoice_counters (
    year        integer PRIMARY KEY,
    last_number integer NOT NULL CHECK (last_number > 0)
);
-- Only ever incremented: a deleted row would hand out numbers again.
CREATE TRIGGER invoice_counters_no_delete BEFORE DELETE ON invoice_counters
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoice_counters_no_truncate BEFORE TRUNCATE ON invoice_counters
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- An issued invoice. `canonical` is the exact text the digest was computed over (sorted
-- keys, no whitespace, money as strings); columns beside it are copies for querying.
CREATE TABLE invoices (
    number          text PRIMARY KEY,
    year            integer NOT NULL,
    seq             integer NOT NULL,
    job_id          text NOT NULL REFERENCES jobs (job_id),
    issued_at       timestamptz NOT NULL,
    currency        text NOT NULL CHECK (currency = 'USD'),
    subtotal_usd    numeric NOT NULL,
    rounding_rule   text NOT NULL,
    rounding_usd    numeric NOT NULL,
    total_usd       numeric NOT NULL CHECK (total_usd = round(total_usd, 2)),
    covered_entries integer NOT NULL CHECK (covered_entries > 0),
    unpriced_events integer NOT NULL,
    follow_up_of    text REFERENCES invoices (number),
    canonical       text NOT NULL,
    digest          text NOT NULL,
    UNIQUE (year, seq),
    CHECK (rounding_usd = total_usd - subtotal_usd),
    -- The database itself refuses an invoice whose digest does not match its text.
    CHECK (digest = encode(sha256(convert_to(canonical, 'UTF8')), 'hex'))
);
CREATE INDEX invoices_job ON invoices (job_id, year, seq);

CREATE TABLE invoice_lines (
    invoice_number      text NOT NULL REFERENCES invoices (number),
    position            integer NOT NULL,
    agent               text NOT NULL,
    model               text NOT NULL,
    provider            text NOT NULL,
    catalog_version     bigint NOT NULL REFERENCES catalog_versions (id),
    tier                text,
    events              bigint NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens  bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    reasoning_tokens    bigint NOT NULL,
    price_input         numeric NOT NULL,
    price_output        numeric NOT NULL,
    price_cache_read    numeric NOT NULL,
    price_cache_write   numeric NOT NULL,
    price_reasoning     numeric NOT NULL,
    price_per_request   numeric NOT NULL,
    amount_usd          numeric NOT NULL,
    PRIMARY KEY (invoice_number, position)
);

-- The ledger entries an invoice covers. UNIQUE: an entry is invoiced at most once, so a
-- follow-up covers exactly what no earlier invoice did, whatever the concurrency.
CREATE TABLE invoice_entries (
    invoice_number  text NOT NULL REFERENCES invoices (number),
    ledger_entry_id bigint NOT NULL UNIQUE REFERENCES ledger_entries (id)
);
CREATE INDEX invoice_entries_invoice ON invoice_entries (invoice_number);

CREATE TRIGGER invoices_append_only BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoice_lines_append_only BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoice_entries_append_only BEFORE UPDATE OR DELETE ON invoice_entries
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoice_entries_no_truncate BEFORE TRUNCATE ON invoice_entries
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
"""
    )


def downgrade() -> None:
    # Drops issued invoices with the tables: only for a database being torn down.
    run_sql(
        """
DROP TABLE invoice_entries, invoice_lines, invoices, invoice_counters, jobs;
"""
    )
