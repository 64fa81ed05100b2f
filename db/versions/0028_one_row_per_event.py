"""One row per event: the charge carries the event's own fields, and a narrow key table
holds idempotency; ``usage_events`` goes.

Revision ID: 0028_one_row_per_event
Revises: 0027_monthly_invoices
Create Date: 2026-12-03

Every event was stored twice: as a ``usage_events`` row and as its charge, the ledger
entry that first books it, which already held its instant, job, agent, provider, token
counts and reported cost. The charge now also holds what only the event row had: the model
as sent (NULL when it is the model the charge names, as for every name that is no alias),
the status (NULL for ``ok``), the attributes exactly as sent (NULL when absent, ``{}``
when sent empty: a replay is compared with them), the reservation id and the customer the
event named (``event_customer_id``: the ledger's ``customer_id`` is the job's billing
customer). Its ``recorded_at`` is the event's reception instant (both were ``now()`` of
the same statement). Adjustments leave these NULL.

Idempotency stays in the schema: ``event_keys`` (``event_id`` primary key, and the
instant, so a lookup by id probes one month partition of the ledger). A unique key on the
partitioned ledger must hold ``occurred_at``, so it could not refuse an id at another
instant; the key row can. The write path inserts keys ``ON CONFLICT DO NOTHING`` and
appends charges for the ids it stored, in one statement as before.

The backfill copies the event fields onto the charges that need them, in the migration's
transaction, with the ledger's append-only trigger disabled around that one ``UPDATE``
(no other session can write meanwhile: ``ALTER TABLE`` holds the ledger exclusively until
the commit). The updated charges leave dead row versions behind, which autovacuum
reclaims for reuse; on a large ledger, ``VACUUM ledger_entries`` after the upgrade.

The ledger's index on ``event_id`` becomes a hash index (equality is all it serves, at
half the bytes), rebuilt by the migration: ingest waits for the update and the rebuild.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0028_one_row_per_event"
down_revision = "0027_monthly_invoices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- Nullable and without a default: adding them rewrites no row.
ALTER TABLE ledger_entries
    ADD COLUMN sent_model text,
    ADD COLUMN status text,
    ADD COLUMN attributes jsonb,
    ADD COLUMN reservation_id text,
    ADD COLUMN event_customer_id text;

CREATE TABLE event_keys (
    event_id    text NOT NULL,
    occurred_at timestamptz NOT NULL
);
INSERT INTO event_keys (event_id, occurred_at)
SELECT event_id, occurred_at FROM usage_events ORDER BY event_id;
ALTER TABLE event_keys ADD PRIMARY KEY (event_id);
CREATE TRIGGER event_keys_append_only BEFORE UPDATE OR DELETE ON event_keys
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER event_keys_no_truncate BEFORE TRUNCATE ON event_keys
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();

-- Only charges with something to carry are updated: an event sent under the model its
-- charge names, ok, without attributes, reservation or customer is complete already.
ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only;
UPDATE ledger_entries AS l
SET sent_model = NULLIF(e.model, l.model),
    status = NULLIF(e.status, 'ok'),
    attributes = e.attributes,
    reservation_id = e.reservation_id,
    event_customer_id = e.customer_id
FROM usage_events AS e
WHERE l.event_id = e.event_id
  AND l.occurred_at = e.occurred_at
  AND l.kind = 'charge'
  AND (e.model <> l.model OR e.status <> 'ok' OR e.attributes IS NOT NULL
       OR e.reservation_id IS NOT NULL OR e.customer_id IS NOT NULL);
ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only;

-- Every event has exactly one charge; a key without one would be an event lost.
DO $$
DECLARE
    orphans bigint := (
        SELECT count(*) FROM event_keys AS k
        WHERE NOT EXISTS (
            SELECT 1 FROM ledger_entries AS l
            WHERE l.event_id = k.event_id AND l.occurred_at = k.occurred_at
              AND l.kind = 'charge'));
BEGIN
    IF orphans > 0 THEN
        RAISE EXCEPTION '% usage events have no charge on the ledger: not migrated', orphans;
    END IF;
END;
$$;

DROP TABLE usage_events;

-- Every lookup of an event's entries is by equality (the id, with its instant for the
-- month), never a range or an order: a hash index keeps a 4-byte hash per entry instead of
-- the id, 30-37 bytes per entry against 64 for the b-tree (20,000 to 100,000 entries).
-- Filled to 100 %: a bucket splits later, and the few that overflow meanwhile cost a
-- lookup one more page.
DROP INDEX ledger_entries_event;
CREATE INDEX ledger_entries_event ON ledger_entries USING hash (event_id)
    WITH (fillfactor = 100);

-- The gateway writes attributes.upstream_model when the provider answered with another
-- model than the one asked for: few charges. A reconciliation that drifts looks them up
-- through this index instead of reading every charge's attributes.
CREATE INDEX ledger_entries_upstream_model ON ledger_entries (occurred_at)
    WHERE attributes ? 'upstream_model';
"""
    )


def downgrade() -> None:
    run_sql(
        """
CREATE TABLE usage_events (
    event_id            text NOT NULL,
    occurred_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    job_id              text NOT NULL,
    agent               text NOT NULL,
    provider            text NOT NULL,
    model               text NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens  bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    reasoning_tokens    bigint NOT NULL,
    provider_cost_usd   numeric,
    status              text NOT NULL,
    attributes          jsonb,
    reservation_id      text,
    customer_id         text
);
INSERT INTO usage_events
SELECT l.event_id, l.occurred_at, l.recorded_at, l.job_id, l.agent, l.provider,
       COALESCE(l.sent_model, l.model), l.input_tokens, l.cached_input_tokens,
       l.cache_write_tokens, l.output_tokens, l.reasoning_tokens, l.provider_cost_usd,
       COALESCE(l.status, 'ok'), l.attributes, l.reservation_id, l.event_customer_id
FROM event_keys AS k
JOIN ledger_entries AS l
  ON l.event_id = k.event_id AND l.occurred_at = k.occurred_at AND l.kind = 'charge'
ORDER BY l.event_id;
ALTER TABLE usage_events ADD PRIMARY KEY (event_id);
CREATE TRIGGER usage_events_append_only BEFORE UPDATE OR DELETE ON usage_events
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER usage_events_no_truncate BEFORE TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
CREATE INDEX usage_events_upstream_model ON usage_events (occurred_at)
    WHERE attributes ? 'upstream_model';

DROP TABLE event_keys;
DROP INDEX ledger_entries_upstream_model;
DROP INDEX ledger_entries_event;
CREATE INDEX ledger_entries_event ON ledger_entries (event_id);
ALTER TABLE ledger_entries
    DROP COLUMN sent_model,
    DROP COLUMN status,
    DROP COLUMN attributes,
    DROP COLUMN reservation_id,
    DROP COLUMN event_customer_id;
"""
    )
