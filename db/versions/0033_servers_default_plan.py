"""What the running servers price a job without a customer with: their ``LUC_DEFAULT_PLAN``.

Revision ID: 0033_servers_default_plan
Revises: 0032_margin_over_known
Create Date: 2026-12-03

The default plan was a setting of each process alone. ``luc catalog rerate``, ``luc plans
reprice`` and the other commands that price entries run in an operator's shell, which
rarely carries the server's environment: run without the variable, a re-rating priced
every job without a customer at its catalog cost, rewriting what the server had billed.
``luc serve`` now writes its setting here when it starts (one row: NULL for none), and the
commands price with it, or refuse a shell that says otherwise.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0033_servers_default_plan"
down_revision = "0032_margin_over_known"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
CREATE TABLE servers_default_plan (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    plan_id text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"""
    )


def downgrade() -> None:
    run_sql("DROP TABLE servers_default_plan;")
