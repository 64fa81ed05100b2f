"""Per-key request counts per second, shared by every LUC process on the database.

Revision ID: 0021_rate_limit_windows
Revises: 0020_invoices_to_pay
Create Date: 2026-11-29
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0021_rate_limit_windows"
down_revision = "0020_invoices_to_pay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The rate limit of an API key holds across the workers of `luc serve --workers N` (and
    # replicas): each request adds one to its key's row for the current second. UNLOGGED:
    # a count that matters for one second needs no WAL, and a crash that empties the table
    # forgives at most a second of requests.
    run_sql(
        """
        CREATE UNLOGGED TABLE rate_limit_windows (
            identity     text    NOT NULL,
            window_start bigint  NOT NULL,  -- the second, in Unix time
            requests     integer NOT NULL,
            PRIMARY KEY (identity, window_start)
        );
        """
    )


def downgrade() -> None:
    run_sql("DROP TABLE rate_limit_windows;")
