"""Explicit budget reservations: one reservation id over its per-budget rows, and the id on
the usage event that settles it.

Revision ID: 0008_reservation_ids
Revises: 0006_partition_ledger_by_month
Create Date: 2026-11-25
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0008_reservation_ids"
down_revision = "0007_exact_sums"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- A reservation holds one amount against every hard budget of a call: one row per budget,
-- all under the reservation id that POST /v1/budgets/reservations answers. Rows made
-- before this revision were reservations of their own (one budget each).
ALTER TABLE budget_reservations ADD COLUMN reservation_id uuid;
UPDATE budget_reservations SET reservation_id = id;
ALTER TABLE budget_reservations ALTER COLUMN reservation_id SET NOT NULL;
ALTER TABLE budget_reservations ADD COLUMN customer_id text;
-- Settling finds a reservation's rows by its id (the usage event names it).
CREATE INDEX budget_reservations_reservation ON budget_reservations (reservation_id);
-- Usage no longer settles "the oldest open reservation of its job and agent".
DROP INDEX budget_reservations_call;

-- The reservation a call was admitted under, as the event gave it (text: an id LUC never
-- issued is kept as sent; it settles nothing).
ALTER TABLE usage_events ADD COLUMN reservation_id text;
"""
    )


def downgrade() -> None:
    run_sql(
        """
ALTER TABLE usage_events DROP COLUMN reservation_id;
CREATE INDEX budget_reservations_call ON budget_reservations (job_id, agent, created_at)
    WHERE settled_at IS NULL;
DROP INDEX budget_reservations_reservation;
ALTER TABLE budget_reservations DROP COLUMN customer_id;
ALTER TABLE budget_reservations DROP COLUMN reservation_id;
"""
    )
