"""Reconciliation (SPEC §5): catalog-priced against provider-reported cost per model ×
provider × UTC day, kept in step with the ledger, and an index that finds the calls the
provider answered with another model.

Revision ID: 0013_reconciliation
Revises: 0012_actual_cost
Create Date: 2026-11-29

The rollup's measures are declared in ``service.reconciliation.models.MEASURES``; the
backfill below spells the same sums out (a test checks the columns against the
declaration, and that every row equals its ledger entries). The backfill reads the whole
ledger once, under the migration's lock.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0013_reconciliation"
down_revision = "0012_actual_cost"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- Only the events whose provider reported a cost can be compared with the catalog, and of
-- those only the priced ones (an unpriced event has no catalog cost): cost_usd and
-- provider_cost_usd are sums over the reported, priced events; the reported, unpriced
-- ones are counted apart with their provider cost, never silently dropped.
-- Keyed by day first: /metrics reads the last two days of every model and provider.
CREATE TABLE rollup_reconciliation_days (
    day                         date NOT NULL,
    model                       text NOT NULL,
    provider                    text NOT NULL,
    events                      bigint NOT NULL DEFAULT 0,
    reported_events             bigint NOT NULL DEFAULT 0,
    unpriced_reported_events    bigint NOT NULL DEFAULT 0,
    cost_usd                    numeric NOT NULL DEFAULT 0,
    provider_cost_usd           numeric NOT NULL DEFAULT 0,
    unpriced_provider_cost_usd  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, model, provider)
) WITH (fillfactor = 70);

INSERT INTO rollup_reconciliation_days
SELECT billing_day, model, provider,
       COALESCE(sum(event_count), 0),
       COALESCE(sum(event_count) FILTER (WHERE provider_cost_usd IS NOT NULL), 0),
       COALESCE(sum(unpriced_count) FILTER (WHERE provider_cost_usd IS NOT NULL), 0),
       COALESCE(sum(cost_usd) FILTER (WHERE provider_cost_usd IS NOT NULL), 0),
       COALESCE(sum(provider_cost_usd) FILTER (WHERE cost_usd IS NOT NULL), 0),
       COALESCE(sum(provider_cost_usd) FILTER (WHERE cost_usd IS NULL), 0)
FROM ledger_entries
GROUP BY billing_day, model, provider;

-- The gateway writes attributes.upstream_model when the provider answered with another
-- model than the one asked for: few events. A reconciliation that drifts looks them up
-- through this index instead of reading every event's attributes.
CREATE INDEX usage_events_upstream_model ON usage_events (occurred_at)
    WHERE attributes ? 'upstream_model';
"""
    )


def downgrade() -> None:
    run_sql(
        """
DROP INDEX usage_events_upstream_model;
DROP TABLE rollup_reconciliation_days;
"""
    )
