"""SQL owned by ingest (table ``usage_events``).

Events are stored together with their charges by the ledger's APPEND_STAGED_CHARGES.
"""

from service.tokens import TOKEN_FIELDS

SELECT_EVENTS_BY_ID = f"""
SELECT event_id, occurred_at, job_id, agent, provider, model,
       {", ".join(TOKEN_FIELDS)},
       provider_cost_usd, status, attributes, reservation_id, customer_id
FROM usage_events
WHERE event_id = ANY($1::text[])
"""
