"""Ledger partitioned by UTC month of occurred_at, with a function that keeps months ahead.

Revision ID: 0006_partition_ledger_by_month
Revises: 0005_ingest_write_path
Create Date: 2026-11-24

The conversion copies the ledger under an exclusive lock: on a large ledger do it online
instead (docs/scaling.md, section 2).
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0006_partition_ledger_by_month"
down_revision = "0005_ingest_write_path"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- A foreign key needs a unique key on the referenced columns, and the ledger keeps none
-- on id alone once the partition key joins its primary key. UNIQUE (ledger_entry_id) on
-- invoice_entries still invoices an entry at most once; entries are never deleted.
ALTER TABLE invoice_entries DROP CONSTRAINT invoice_entries_ledger_entry_id_fkey;

ALTER TABLE ledger_entries RENAME TO ledger_entries_unpartitioned;
ALTER INDEX ledger_entries_pkey RENAME TO ledger_entries_unpartitioned_pkey;
DROP TRIGGER ledger_entries_append_only ON ledger_entries_unpartitioned;
DROP TRIGGER ledger_entries_no_truncate ON ledger_entries_unpartitioned;

CREATE TABLE ledger_entries (
    LIKE ledger_entries_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY,
    -- Every unique key of a partitioned table must hold the partition key.
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'),
              COALESCE((SELECT max(id) FROM ledger_entries_unpartitioned), 0) + 1, false);

-- Events older than the first month or newer than the last one made (late or clock-skewed
-- gateways) land here, and stay here: a month is not created while rows of it wait in the
-- default partition (luc_ensure_ledger_months skips it with a notice).
CREATE TABLE ledger_entries_default PARTITION OF ledger_entries DEFAULT;

-- Creates the month partitions from first_month through `ahead` months after this one.
-- The service calls it at start-up, so the coming months always exist before events
-- reach them.
CREATE FUNCTION luc_ensure_ledger_months(first_month date, ahead integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    last_month date :=
        date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => ahead);
    m date := date_trunc('month', first_month);
    name text;
    created integer := 0;
BEGIN
    WHILE m <= last_month LOOP
        name := 'ledger_entries_' || to_char(m, 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF ledger_entries FOR VALUES FROM (%L) TO (%L)',
                    name, m::timestamp AT TIME ZONE 'UTC',
                    (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
                EXECUTE format(
                    'CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON %I '
                    'FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change()', name);
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                RAISE NOTICE 'month % not partitioned: the default partition holds rows of it', m;
            END;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN created;
END;
$$;

SELECT luc_ensure_ledger_months(
    COALESCE((SELECT min(occurred_at) FROM ledger_entries_unpartitioned), now())::date, 2);

INSERT INTO ledger_entries OVERRIDING SYSTEM VALUE SELECT * FROM ledger_entries_unpartitioned;
DROP TABLE ledger_entries_unpartitioned;

-- Created on the parent, so every partition (present and future) has them.
CREATE INDEX ledger_entries_job ON ledger_entries (job_id, id);
CREATE INDEX ledger_entries_event ON ledger_entries (event_id);
CREATE INDEX ledger_entries_occurred ON ledger_entries (occurred_at);
CREATE INDEX ledger_entries_unpriced ON ledger_entries (event_id) WHERE unpriced_count <> 0;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
-- TRUNCATE of the parent fires this one; each partition carries its own (above), since
-- truncating a partition directly does not fire the parent's statement trigger.
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries_default
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
"""
    )


def downgrade() -> None:
    run_sql(
        """
ALTER TABLE ledger_entries RENAME TO ledger_entries_partitioned;
CREATE TABLE ledger_entries (
    LIKE ledger_entries_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY,
    PRIMARY KEY (id)
);
SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'),
              COALESCE((SELECT max(id) FROM ledger_entries_partitioned), 0) + 1, false);
INSERT INTO ledger_entries OVERRIDING SYSTEM VALUE SELECT * FROM ledger_entries_partitioned;
DROP TABLE ledger_entries_partitioned;
DROP FUNCTION luc_ensure_ledger_months(date, integer);
CREATE INDEX ledger_entries_job ON ledger_entries (job_id, id);
CREATE INDEX ledger_entries_event ON ledger_entries (event_id);
CREATE INDEX ledger_entries_occurred ON ledger_entries (occurred_at);
CREATE INDEX ledger_entries_unpriced ON ledger_entries (event_id) WHERE unpriced_count <> 0;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
ALTER TABLE invoice_entries ADD CONSTRAINT invoice_entries_ledger_entry_id_fkey
    FOREIGN KEY (ledger_entry_id) REFERENCES ledger_entries (id);
"""
    )
