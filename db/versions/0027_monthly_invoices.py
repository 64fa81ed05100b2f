"""Invoices bill the customer's price, and a customer invoiced monthly gets one invoice
per UTC month of all its jobs.

Revision ID: 0027_monthly_invoices
Revises: 0018_prepaid_credits
Create Date: 2026-12-02

A monthly invoice has no job (``job_id`` NULL) but a customer and a month (its first day);
its lines name their job. Its ``minimum`` line (the plan's ``minimum_monthly_usd`` topping
the month up) is no usage: no catalog version, no agent or model. Each line now names the
plan version that priced it (NULL: no plan, the price is the catalog cost) and its type;
lines issued before keep NULL ``line_type``: they billed the catalog cost, so the internal
view shows no margin for them. Issued invoices are not touched (DDL only).
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0027_monthly_invoices"
down_revision = "0018_prepaid_credits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
ALTER TABLE invoices ALTER COLUMN job_id DROP NOT NULL;
ALTER TABLE invoices ADD COLUMN month date CHECK (month = date_trunc('month', month));
-- An invoice is of one job, or of one customer's month: never both, never neither.
ALTER TABLE invoices ADD CONSTRAINT invoices_job_or_month
    CHECK ((job_id IS NULL) = (month IS NOT NULL)
           AND (month IS NULL OR customer_id IS NOT NULL));
-- A month's invoice may bill only its plan's minimum (a month without usage).
ALTER TABLE invoices DROP CONSTRAINT invoices_covered_entries_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_covered_entries_check
    CHECK (covered_entries > 0 OR month IS NOT NULL);
CREATE INDEX invoices_by_customer_month ON invoices (customer_id, month, issued_at)
    WHERE month IS NOT NULL;

ALTER TABLE invoice_lines ADD COLUMN line_type text CHECK (line_type IN ('usage', 'minimum'));
ALTER TABLE invoice_lines ADD COLUMN job_id text;
ALTER TABLE invoice_lines ADD COLUMN plan_id text;
ALTER TABLE invoice_lines ADD COLUMN plan_version bigint;
ALTER TABLE invoice_lines ALTER COLUMN catalog_version DROP NOT NULL;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_usage_has_catalog
    CHECK (line_type = 'minimum' OR catalog_version IS NOT NULL);
"""
    )


def downgrade() -> None:
    # Monthly invoices and minimum lines cannot be kept by the older schema, nor removed
    # (issued documents are append-only): refuse while there are any.
    run_sql(
        """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM invoices WHERE month IS NOT NULL) THEN
        RAISE EXCEPTION 'monthly invoices have been issued: this schema cannot be downgraded';
    END IF;
END $$;
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_usage_has_catalog;
ALTER TABLE invoice_lines ALTER COLUMN catalog_version SET NOT NULL;
ALTER TABLE invoice_lines DROP COLUMN plan_version, DROP COLUMN plan_id, DROP COLUMN job_id,
    DROP COLUMN line_type;
DROP INDEX invoices_by_customer_month;
ALTER TABLE invoices DROP CONSTRAINT invoices_job_or_month;
ALTER TABLE invoices DROP CONSTRAINT invoices_covered_entries_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_covered_entries_check CHECK (covered_entries > 0);
ALTER TABLE invoices DROP COLUMN month;
ALTER TABLE invoices ALTER COLUMN job_id SET NOT NULL;
"""
    )
