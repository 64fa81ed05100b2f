"""SQL owned by ingest (table ``usage_events``)."""

# The primary key is the idempotency key: a replayed id inserts nothing and is not
# returned. Callers pass rows sorted by event_id so that two batches sharing ids lock
# index entries in the same order and cannot deadlock. provider_cost_usd arrives as decimal
# text (exact; asyncpg encodes text much faster than binary NUMERIC).
INSERT_EVENTS = """
INSERT INTO usage_events (event_id, occurred_at, job_id, agent, provider, model,
                          input_tokens, cached_input_tokens, cache_write_tokens,
                          output_tokens, reasoning_tokens, provider_cost_usd, status, attributes)
SELECT *
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
            $12::text[]::numeric[], $13::text[], $14::jsonb[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

SELECT_EVENTS_BY_ID = """
SELECT event_id, occurred_at, job_id, agent, provider, model,
       input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
       provider_cost_usd, status, attributes
FROM usage_events
WHERE event_id = ANY($1::text[])
"""
