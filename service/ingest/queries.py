"""SQL owned by ingest (table ``usage_events``).

Events are stored together with their charges by the ledger's APPEND_STAGED_CHARGES.
"""

SELECT_EVENTS_BY_ID = """
SELECT event_id, occurred_at, job_id, agent, provider, model,
       input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
       provider_cost_usd, status, attributes, reservation_id
FROM usage_events
WHERE event_id = ANY($1::text[])
"""
