"""Each reservation keeps the call's estimate as it was asked, before any budget's measure.

Revision ID: 0036_reservation_estimates
Revises: 0035_alert_outbox_dead
Create Date: 2026-12-03

A hard budget created (or made hard) while calls hold reservations must hold those calls
too, or it admits its whole limit on top of them. Its hold is the call's estimate in the
new budget's measure: the list-price estimate for a cost budget, what the customer's plan
makes of it for a price budget. A reservation's rows held it only in their own budgets'
measures, and a price estimate cannot be turned back into the cost it came from. Rows made
before this column are read at their largest amount (they expire within minutes).
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0036_reservation_estimates"
down_revision = "0035_alert_outbox_dead"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
ALTER TABLE budget_reservations ADD COLUMN estimate_usd numeric CHECK (estimate_usd >= 0);
"""
    )


def downgrade() -> None:
    run_sql(
        """
ALTER TABLE budget_reservations DROP COLUMN estimate_usd;
"""
    )
