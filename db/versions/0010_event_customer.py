"""The customer a usage event names (SPEC §2 ``customer_id``), kept with the event.

Revision ID: 0010_event_customer
Revises: 0009_ledger_months_upkeep
Create Date: 2026-11-29
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0010_event_customer"
down_revision = "0009_ledger_months_upkeep"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: adding it rewrites no row of the append-only table.
    run_sql("ALTER TABLE usage_events ADD COLUMN customer_id text;")


def downgrade() -> None:
    run_sql("ALTER TABLE usage_events DROP COLUMN customer_id;")
