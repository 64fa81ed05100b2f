"""SQL owned by the ledger (table ``ledger_entries``)."""

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
            $16::int[], $17::int[], $18::numeric[], $19::numeric[],
            $20::numeric[], $21::numeric[], $22::numeric[], $23::numeric[], $24::numeric[],
            $25::numeric[], $26::text[])
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
