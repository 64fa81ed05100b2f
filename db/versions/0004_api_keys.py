"""API keys with scopes, stored as hashes.

Revision ID: 0004_api_keys
Revises: 0003_invoices
Create Date: 2026-11-24
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0004_api_keys"
down_revision = "0003_invoices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('ingest', 'read', 'admin')),
    -- The first characters of the key, shown in listings so people can tell keys apart.
    prefix      text NOT NULL,
    -- SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    last_used_at timestamptz
);
"""
    )


def downgrade() -> None:
    run_sql("DROP TABLE api_keys;")
