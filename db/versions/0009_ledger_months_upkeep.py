"""The ledger's month partitions made by any LUC role, by several processes at once.

Revision ID: 0009_ledger_months_upkeep
Revises: 0008_reservation_ids
Create Date: 2026-11-29

``luc serve`` keeps the coming months while it runs, under the service's own role, which
does not own the ledger (README, "Operating LUC"): making a partition needs the owner, so
the function runs with its owner's rights (SECURITY DEFINER). It creates nothing but the
month partitions of ``ledger_entries``, under fixed names, with the search path pinned to
LUC's schema. Two callers making the same month take turns on a lock of the ledger that
blocks neither its readers nor its writers (SHARE UPDATE EXCLUSIVE), and the second finds
it made, instead of failing on the duplicate name.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0009_ledger_months_upkeep"
down_revision = "0008_reservation_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
CREATE OR REPLACE FUNCTION luc_ensure_ledger_months(first_month date, ahead integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    last_month date :=
        date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => ahead);
    m date := date_trunc('month', first_month);
    name text;
    created integer := 0;
    locked boolean := false;
BEGIN
    WHILE m <= last_month LOOP
        name := 'ledger_entries_' || to_char(m, 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            IF NOT locked THEN
                -- Only when a month is missing: then look again under the lock, which
                -- another process making it holds until it commits. A table lock, not an
                -- advisory one: taking it makes this backend read the catalog changes
                -- committed meanwhile, so the look again sees the other's partition.
                LOCK TABLE ledger_entries IN SHARE UPDATE EXCLUSIVE MODE;
                locked := true;
                CONTINUE;
            END IF;
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
-- The schema LUC was migrated into, then pg_temp last: a caller's temporary table cannot
-- stand in for the ledger in a function that runs with the owner's rights.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION luc_ensure_ledger_months(date, integer) SET search_path = %I, pg_temp',
        current_schema());
END;
$$;
"""
    )


def downgrade() -> None:
    run_sql(
        """
ALTER FUNCTION luc_ensure_ledger_months(date, integer) SECURITY INVOKER;
ALTER FUNCTION luc_ensure_ledger_months(date, integer) RESET search_path;
"""
    )
