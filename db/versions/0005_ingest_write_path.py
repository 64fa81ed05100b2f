"""Ingest write path: no per-row catalog check on the ledger, room for in-page rollup updates.

Revision ID: 0005_ingest_write_path
Revises: 0004_api_keys
Create Date: 2026-11-24
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0005_ingest_write_path"
down_revision = "0004_api_keys"
branch_labels = None
depends_on = None

_ROLLUPS = (
    "rollup_jobs",
    "rollup_job_lines",
    "rollup_usage",
    "rollup_agent_days",
    "rollup_model_days",
)


def upgrade() -> None:
    run_sql(
        """
-- The foreign key from ledger_entries.catalog_version was checked once per appended row
-- (a sixth of the batch statement in EXPLAIN ANALYZE). It guarded nothing: the version
-- comes from the catalog read in the same transaction, under the re-pricing lock, and
-- catalog versions can never be deleted (catalog_versions is append-only).
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_catalog_version_fkey;
"""
        # Every batch updates rollup rows in place. Free space in each page lets PostgreSQL
        # keep the new row version on the same page (a HOT update: no index entry to add)
        # whenever no indexed column changed.
        + "".join(f"ALTER TABLE {t} SET (fillfactor = 70);\n" for t in _ROLLUPS)
    )


def downgrade() -> None:
    run_sql(
        "".join(f"ALTER TABLE {t} RESET (fillfactor);\n" for t in _ROLLUPS)
        + """
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_catalog_version_fkey
    FOREIGN KEY (catalog_version) REFERENCES catalog_versions (id);
"""
    )
