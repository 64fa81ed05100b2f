"""The providers' reported cost of each invoice line, for finance's view of an invoice.

Revision ID: 0034_invoice_provider_costs
Revises: 0033_servers_default_plan
Create Date: 2026-12-03

SPEC §3 keeps the three costs of an event (the catalog's, the provider's reported one, the
actual one) on every entry and in every rollup, job, line and invoice. An invoice line kept
the catalog and the actual cost, not the provider's: finance could not read the providers'
bill beside the price on an invoice. Lines issued from now on keep the sum of their
entries' reported costs (NULL when no entry reported one). Lines issued before have NULL
too: an invoice is a snapshot and its lines are never rewritten.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0034_invoice_provider_costs"
down_revision = "0033_servers_default_plan"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- Nullable, no default: adding it rewrites no row (the append-only trigger stays quiet).
ALTER TABLE invoice_lines ADD COLUMN provider_cost_usd numeric;
"""
    )


def downgrade() -> None:
    run_sql(
        """
ALTER TABLE invoice_lines DROP COLUMN provider_cost_usd;
"""
    )
