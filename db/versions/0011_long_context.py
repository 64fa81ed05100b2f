"""Long-context prices (SPEC §3), and the rate that priced each entry, job line and invoice line.

Revision ID: 0011_long_context
Revises: 0010_event_customer
Create Date: 2026-12-01

A model's long-context entries are rows of their own table rather than a jsonb column on
``catalog_prices``: their prices are NUMERIC with the same checks as every other price, the
table is append-only like the rest of the catalog, and the job-line read joins the entry a
line was priced at to show its unit prices.

``long_context_from`` is the rate marker (``pricing.models.Rate``): the threshold of the
long-context entry whose prices were used, NULL for the model's base prices. Entries
appended before this revision were all priced at base prices (no version had long
context), so NULL is true of them. It joins the invoice-line rollup's key: a line keeps one
unit price. Every new column is nullable without a default, so adding it rewrites no row of
the append-only tables.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0011_long_context"
down_revision = "0010_event_customer"
branch_labels = None
depends_on = None

# The invoice-line rollup's unique key, whatever name PostgreSQL gave it in 0001.
_DROP_LINE_KEY = """
DO $$
DECLARE key_name text;
BEGIN
    SELECT conname INTO STRICT key_name FROM pg_constraint
    WHERE conrelid = 'rollup_job_lines'::regclass AND contype = 'u';
    EXECUTE format('ALTER TABLE rollup_job_lines DROP CONSTRAINT %I', key_name);
END;
$$;
"""


def upgrade() -> None:
    run_sql(
        """
CREATE TABLE catalog_long_context (
    version_id        bigint NOT NULL,
    model_id          text NOT NULL,
    min_input_tokens  bigint NOT NULL CHECK (min_input_tokens > 0),
    input             numeric NOT NULL CHECK (input >= 0),
    output            numeric NOT NULL CHECK (output >= 0),
    cache_read        numeric NOT NULL CHECK (cache_read >= 0),
    cache_write       numeric NOT NULL CHECK (cache_write >= 0),
    reasoning         numeric NOT NULL CHECK (reasoning >= 0),
    -- Thresholds are unique within a model of a version.
    PRIMARY KEY (version_id, model_id, min_input_tokens),
    FOREIGN KEY (version_id, model_id) REFERENCES catalog_prices (version_id, model_id)
);
CREATE TRIGGER catalog_long_context_append_only BEFORE UPDATE OR DELETE ON catalog_long_context
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER catalog_long_context_no_truncate BEFORE TRUNCATE ON catalog_long_context
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

ALTER TABLE ledger_entries ADD COLUMN long_context_from bigint;
ALTER TABLE invoice_lines ADD COLUMN long_context_from bigint;
ALTER TABLE rollup_job_lines ADD COLUMN long_context_from bigint;
"""
        + _DROP_LINE_KEY
        + """
-- One unit price per line: a job's calls at the long-context rate are a line apart from
-- those at the base rate of the same version.
ALTER TABLE rollup_job_lines ADD CONSTRAINT rollup_job_lines_key
    UNIQUE NULLS NOT DISTINCT (job_id, agent, model, provider, catalog_version, long_context_from);
"""
    )


def downgrade() -> None:
    # Fails (a duplicate key) once a job has a long-context line beside a base one of the
    # same version: those lines cannot be merged back without mixing two unit prices.
    run_sql(
        """
ALTER TABLE rollup_job_lines DROP CONSTRAINT rollup_job_lines_key;
ALTER TABLE rollup_job_lines
    ADD UNIQUE NULLS NOT DISTINCT (job_id, agent, model, provider, catalog_version);
ALTER TABLE rollup_job_lines DROP COLUMN long_context_from;
ALTER TABLE invoice_lines DROP COLUMN long_context_from;
ALTER TABLE ledger_entries DROP COLUMN long_context_from;
DROP TABLE catalog_long_context;
"""
    )
