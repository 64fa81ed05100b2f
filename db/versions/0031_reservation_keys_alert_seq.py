"""A reservation remembers the API key that made it; the outbox remembers the order its
alerts were raised in.

Revision ID: 0031_reservation_keys_alert_seq
Revises: 0030_unknown_price_counts
Create Date: 2026-12-06

``budget_reservations.api_key_id``: the key that reserved (NULL when LUC's own gateway
reserved in-process, or when authentication is off). Only that key, or an admin key, may
release the reservation (SPEC §9): any ingest key could free another caller's headroom.

``alert_outbox.seq``: the order alerts were raised in (a 50 % alert before the 100 % one
of the same batch), which ``created_at`` cannot tell (rows of one statement may share a
microsecond). Each endpoint's webhooks go out one at a time in this order. Rows already
in the outbox are numbered by when their alerts were raised, then by threshold.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0031_reservation_keys_alert_seq"
down_revision = "0030_unknown_price_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
ALTER TABLE budget_reservations ADD COLUMN api_key_id bigint;

ALTER TABLE alert_outbox ADD COLUMN seq bigint;
UPDATE alert_outbox AS o SET seq = n.position
FROM (
    SELECT o.alert_id,
           row_number() OVER (ORDER BY a.created_at, a.threshold NULLS LAST, a.id) AS position
    FROM alert_outbox AS o JOIN alerts AS a ON a.id = o.alert_id
) AS n
WHERE o.alert_id = n.alert_id;
CREATE SEQUENCE alert_outbox_seq OWNED BY alert_outbox.seq;
SELECT setval('alert_outbox_seq', COALESCE((SELECT max(seq) FROM alert_outbox), 0) + 1, false);
ALTER TABLE alert_outbox ALTER COLUMN seq SET DEFAULT nextval('alert_outbox_seq');
ALTER TABLE alert_outbox ALTER COLUMN seq SET NOT NULL;
"""
    )


def downgrade() -> None:
    run_sql(
        """
ALTER TABLE alert_outbox DROP COLUMN seq;
ALTER TABLE budget_reservations DROP COLUMN api_key_id;
"""
    )
