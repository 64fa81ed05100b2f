"""SQL owned by the ledger (table ``ledger_entries``)."""

# Money travels as decimal text cast to numeric: exact either way, and asyncpg encodes text
# several times faster than binary NUMERIC, which showed in the ingest benchmark's profile.
INSERT_ENTRIES = """
INSERT INTO ledger_entries (event_id, kind, job_id, agent, model, provider, tier,
                            catalog_version, occurred_at, billing_day,
                            input_tokens, cached_input_tokens, cache_write_tokens,
                            output_tokens, reasoning_tokens, event_count, unpriced_count,
                            cost_usd, provider_cost_usd,
                            price_input, price_output, price_cache_read, price_cache_write,
                            price_reasoning, price_per_request, reason)
SELECT *
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::bigint[], $9::timestamptz[], $10::date[],
            $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
            $16::int[], $17::int[], $18::text[]::numeric[], $19::text[]::numeric[],
            $20::text[]::numeric[], $21::text[]::numeric[], $22::text[]::numeric[],
            $23::text[]::numeric[], $24::text[]::numeric[], $25::text[]::numeric[], $26::text[])
RETURNING id
"""

ENTRY_COLUMNS = """
id, event_id, kind, job_id, agent, model, provider, tier, catalog_version, occurred_at,
recorded_at, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
reasoning_tokens, event_count, unpriced_count, cost_usd, provider_cost_usd,
price_input, price_output, price_cache_read, price_cache_write, price_reasoning,
price_per_request, reason
"""

SELECT_JOB_ENTRIES = f"""
SELECT {ENTRY_COLUMNS}
FROM ledger_entries
WHERE job_id = $1 AND id > $2
ORDER BY id
LIMIT $3
"""

# Events still unpriced: their entries' unpriced counts do not yet net to zero. The partial
# index ledger_entries_unpriced keeps this to the few entries that matter.
SELECT_UNPRICED = """
SELECT e.event_id, e.model, e.job_id, e.agent, e.provider, e.occurred_at,
       e.input_tokens, e.cached_input_tokens, e.cache_write_tokens, e.output_tokens,
       e.reasoning_tokens, u.reason
FROM (
    SELECT event_id, (array_agg(reason ORDER BY id DESC))[1] AS reason
    FROM ledger_entries
    WHERE unpriced_count <> 0
    GROUP BY event_id
    HAVING sum(unpriced_count) > 0
) AS u
JOIN usage_events AS e USING (event_id)
WHERE e.event_id > $1
  AND ($2::text IS NULL OR e.model = $2)
  AND ($3::text IS NULL OR e.job_id = $3)
ORDER BY e.event_id
LIMIT $4
"""

# Serialises everything that re-prices existing events (re-rating, a new catalog version
# pricing unpriced events) against itself; ingest takes the same lock shared, so a batch
# priced with the old catalog has committed before a new version looks for unpriced events.
REPRICING_LOCK_KEY = 0x4C55C1
LOCK_REPRICING = f"SELECT pg_advisory_xact_lock({REPRICING_LOCK_KEY})"
LOCK_REPRICING_SHARED = f"SELECT pg_advisory_xact_lock_shared({REPRICING_LOCK_KEY})"

# An event's live booking: the entries of one (version, model, tier) whose event counts net
# to one. A charge is a booking; a re-rating reverses it and books the event anew.
_BOOKINGS = """
SELECT e.event_id, e.occurred_at, e.job_id, e.agent, e.provider, e.model AS sent_model,
       e.input_tokens, e.cached_input_tokens, e.cache_write_tokens, e.output_tokens,
       e.reasoning_tokens, e.provider_cost_usd,
       b.catalog_version, b.model, b.tier, b.cost_usd, b.unpriced
FROM usage_events AS e
JOIN LATERAL (
    SELECT l.catalog_version, l.model, l.tier, sum(l.cost_usd) AS cost_usd,
           sum(l.unpriced_count) > 0 AS unpriced
    FROM ledger_entries AS l
    WHERE l.event_id = e.event_id
    GROUP BY l.catalog_version, l.model, l.tier
    HAVING sum(l.event_count) = 1
) AS b ON true
"""

# Events that occurred since $1, a page at a time in (occurred_at, event_id) order.
SELECT_BOOKINGS_SINCE = f"""
{_BOOKINGS}
WHERE e.occurred_at >= $1
  AND (e.occurred_at, e.event_id) > ($2::timestamptz, $3::text)
ORDER BY e.occurred_at, e.event_id
LIMIT $4
"""

COUNT_EVENTS_SINCE = "SELECT count(*) FROM usage_events WHERE occurred_at >= $1"

SELECT_UNPRICED_BOOKINGS = f"""
{_BOOKINGS}
WHERE e.event_id IN (
    SELECT event_id FROM ledger_entries
    WHERE unpriced_count <> 0
    GROUP BY event_id
    HAVING sum(unpriced_count) > 0
)
ORDER BY e.event_id
"""
