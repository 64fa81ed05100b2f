"""Dead webhook deliveries found without reading the whole outbox.

Revision ID: 0035_alert_outbox_dead
Revises: 0034_invoice_provider_costs
Create Date: 2026-12-03

Every scrape of /metrics now counts the outbox's pending deliveries (the partial index
``alert_outbox_due`` holds them) and its dead ones, so that an operator is told when
alerts stop reaching their webhooks. The outbox keeps every delivered alert; the dead ones
are few, and this index keeps their count from reading the rest.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0035_alert_outbox_dead"
down_revision = "0034_invoice_provider_costs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
CREATE INDEX alert_outbox_dead ON alert_outbox (dead_at) WHERE dead_at IS NOT NULL;
"""
    )


def downgrade() -> None:
    run_sql(
        """
DROP INDEX alert_outbox_dead;
"""
    )
