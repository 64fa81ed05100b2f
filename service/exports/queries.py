"""SQL of the exports: the ledger grouped as a FOCUS row (UTC day × job × agent × model ×
provider), read through a server-side cursor.

Ledger entries, not rollups: no rollup is keyed by day and job together, and the ledger's
month partitions and ``occurred_at`` index keep a range to its own entries. Token columns
come from ``service.tokens``.
"""

from __future__ import annotations

from service.tokens import TOKEN_FIELDS

_KEYS = "billing_day, job_id, agent, model, provider"

_TOKEN_SUMS = ", ".join(f"sum({name}) AS {name}" for name in TOKEN_FIELDS)

# The rows of [$1, $2), net of adjustments. A re-rating's reversal and new booking carry
# the event's occurred_at, so a correction lands in the event's own day, as it does in every
# rollup and in /v1/usage: the export of a range adds up to what LUC reports for it.
# The inner grouping keeps the catalog version apart, only to name the versions that still
# price something in the row (a reversal cancels its version's events to 0).
# Sums of nothing known stay NULL here; the caller tells "no provider figure" from zero.
FOCUS_ROWS = f"""
WITH per_version AS (
    SELECT {_KEYS}, catalog_version,
           sum(event_count) AS events,
           sum(unpriced_count) AS unpriced_events,
           sum(cost_usd) AS cost_usd,
           sum(provider_cost_usd) AS provider_cost_usd,
           sum(actual_cost_usd) AS actual_cost_usd,
           {_TOKEN_SUMS}
    FROM ledger_entries
    WHERE occurred_at >= $1 AND occurred_at < $2
    GROUP BY {_KEYS}, catalog_version
)
SELECT billing_day AS day, job_id, agent, model, provider,
       array_agg(catalog_version ORDER BY catalog_version)
           FILTER (WHERE events <> 0 AND catalog_version IS NOT NULL) AS catalog_versions,
       sum(events)::bigint AS events,
       sum(unpriced_events)::bigint AS unpriced_events,
       sum(cost_usd) AS cost_usd,
       sum(provider_cost_usd) AS provider_cost_usd,
       sum(actual_cost_usd) AS actual_cost_usd,
       {_TOKEN_SUMS}
FROM per_version
GROUP BY {_KEYS}
-- A group whose entries cancel out entirely (its events re-booked under another model)
-- is no charge: nothing to export.
HAVING sum(events) <> 0
    OR sum(cost_usd) <> 0
    OR sum(actual_cost_usd) <> 0
    OR {" OR ".join(f"sum({name}) <> 0" for name in TOKEN_FIELDS)}
ORDER BY {_KEYS}
"""
