"""SQL owned by the rollups (tables ``rollup_*``).

Each upsert reads the entries just appended (in the statement that appends them),
aggregates them per rollup key, and adds the sums. Rows are upserted
in key order, and the tables are always visited in the same order (one statement does
all five), so concurrent batches touching the same keys queue behind each other instead
of deadlocking.
"""

_MEASURES = """
    {cost}, COALESCE(sum(provider_cost_usd), 0), sum(event_count), sum(unpriced_count),
    sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),
    sum(output_tokens), sum(reasoning_tokens), min(occurred_at), max(occurred_at)
"""

_ADD = """
    cost_usd = r.cost_usd + EXCLUDED.cost_usd,
    provider_cost_usd = r.provider_cost_usd + EXCLUDED.provider_cost_usd,
    events = r.events + EXCLUDED.events,
    unpriced_events = r.unpriced_events + EXCLUDED.unpriced_events,
    input_tokens = r.input_tokens + EXCLUDED.input_tokens,
    cached_input_tokens = r.cached_input_tokens + EXCLUDED.cached_input_tokens,
    cache_write_tokens = r.cache_write_tokens + EXCLUDED.cache_write_tokens,
    output_tokens = r.output_tokens + EXCLUDED.output_tokens,
    reasoning_tokens = r.reasoning_tokens + EXCLUDED.reasoning_tokens,
    first_event_at = LEAST(r.first_event_at, EXCLUDED.first_event_at),
    last_event_at = GREATEST(r.last_event_at, EXCLUDED.last_event_at)
"""

_COLUMNS = """
    cost_usd, provider_cost_usd, events, unpriced_events, input_tokens, cached_input_tokens,
    cache_write_tokens, output_tokens, reasoning_tokens, first_event_at, last_event_at
"""

_TOTAL_COST = "COALESCE(sum(cost_usd), 0)"
# A line's cost stays NULL while its entries are unpriced (the key holds no version).
_LINE_COST = "sum(cost_usd)"


def upserts(source: str) -> dict[str, str]:
    """The five upserts, each adding the entries of ``source`` (a relation with the
    ledger's columns, optionally with a WHERE clause) to its rollup."""
    return {
        "jobs": f"""
INSERT INTO rollup_jobs AS r (job_id, {_COLUMNS})
SELECT job_id, {_MEASURES.format(cost=_TOTAL_COST)}
FROM {source}
GROUP BY job_id
ORDER BY job_id
ON CONFLICT (job_id) DO UPDATE SET {_ADD}
""",
        "lines": f"""
INSERT INTO rollup_job_lines AS r (job_id, agent, model, provider, catalog_version, {_COLUMNS})
SELECT job_id, agent, model, provider, catalog_version, {_MEASURES.format(cost=_LINE_COST)}
FROM {source}
GROUP BY job_id, agent, model, provider, catalog_version
ORDER BY job_id, agent, model, provider, catalog_version
ON CONFLICT (job_id, agent, model, provider, catalog_version) DO UPDATE SET {_ADD}
""",
        "usage": f"""
INSERT INTO rollup_usage AS r (agent, model, provider, tier, {_COLUMNS})
SELECT agent, model, provider, tier, {_MEASURES.format(cost=_TOTAL_COST)}
FROM {source}
GROUP BY agent, model, provider, tier
ORDER BY agent, model, provider, tier
ON CONFLICT (agent, model, provider, tier) DO UPDATE SET {_ADD}
""",
        "agent_days": f"""
INSERT INTO rollup_agent_days AS r (agent, day, {_COLUMNS})
SELECT agent, billing_day, {_MEASURES.format(cost=_TOTAL_COST)}
FROM {source}
GROUP BY agent, billing_day
ORDER BY agent, billing_day
ON CONFLICT (agent, day) DO UPDATE SET {_ADD}
""",
        "model_days": f"""
INSERT INTO rollup_model_days AS r (model, day, {_COLUMNS})
SELECT model, billing_day, {_MEASURES.format(cost=_TOTAL_COST)}
FROM {source}
GROUP BY model, billing_day
ORDER BY model, billing_day
ON CONFLICT (model, day) DO UPDATE SET {_ADD}
""",
    }


def upserts_over(source: str) -> str:
    """The five upserts as common table expressions over ``source``, for the statement that
    appends the entries (one round trip, one plan prepared once per connection).

    PostgreSQL runs the data-modifying parts of a statement one after another, always in
    the same order for the same statement, so every writer visits the tables in one order.
    """
    return ",\n".join(f"rollup_{name} AS ({sql})" for name, sql in upserts(source).items())


# Read side ---------------------------------------------------------------------------------

TOTALS = """
cost_usd, provider_cost_usd, events, unpriced_events, input_tokens, cached_input_tokens,
cache_write_tokens, output_tokens, reasoning_tokens, first_event_at, last_event_at
"""

SELECT_JOB = f"SELECT job_id, {TOTALS} FROM rollup_jobs WHERE job_id = $1"

SELECT_JOB_LINES = f"""
SELECT l.agent, l.model, l.provider, l.catalog_version, p.tier, p.name AS model_name,
       p.input, p.output, p.cache_read, p.cache_write, p.reasoning, p.per_request,
       {", ".join("l." + c.strip() for c in TOTALS.split(","))}
FROM rollup_job_lines AS l
LEFT JOIN catalog_prices AS p ON p.version_id = l.catalog_version AND p.model_id = l.model
WHERE l.job_id = $1 AND l.events <> 0
ORDER BY l.agent, l.model, l.provider, l.catalog_version NULLS LAST
"""

# Keyset pagination on job_id; the filters keep jobs that had activity in [from, to) and,
# with an agent, jobs that agent worked on.
SELECT_JOBS = f"""
SELECT job_id, {TOTALS}
FROM rollup_jobs AS j
WHERE j.job_id > $1
  AND ($2::timestamptz IS NULL OR j.last_event_at >= $2)
  AND ($3::timestamptz IS NULL OR j.first_event_at < $3)
  -- The span test above is a cheap prefilter; a job whose events fall on both sides of
  -- the range but none inside it must not match, so look for an entry in the range.
  AND (($2::timestamptz IS NULL AND $3::timestamptz IS NULL) OR EXISTS (
        SELECT 1 FROM ledger_entries AS e
        WHERE e.job_id = j.job_id
          AND ($2::timestamptz IS NULL OR e.occurred_at >= $2)
          AND ($3::timestamptz IS NULL OR e.occurred_at < $3)))
  AND ($4::text IS NULL OR EXISTS (
        SELECT 1 FROM rollup_job_lines AS l
        WHERE l.agent = $4 AND l.job_id = j.job_id AND l.events <> 0))
ORDER BY job_id
LIMIT $5
"""

SELECT_AGENTS = """
SELECT agent, COALESCE(sum(cost_usd), 0) AS cost_usd, sum(provider_cost_usd) AS provider_cost_usd,
       sum(events) AS events, sum(unpriced_events) AS unpriced_events,
       sum(input_tokens) AS input_tokens, sum(cached_input_tokens) AS cached_input_tokens,
       sum(cache_write_tokens) AS cache_write_tokens, sum(output_tokens) AS output_tokens,
       sum(reasoning_tokens) AS reasoning_tokens,
       min(first_event_at) AS first_event_at, max(last_event_at) AS last_event_at
FROM rollup_agent_days
GROUP BY agent
ORDER BY agent
"""

SELECT_AGENT_DAYS = f"""
SELECT day, {TOTALS}
FROM rollup_agent_days
WHERE agent = $1
  AND ($2::date IS NULL OR day >= $2)
  AND ($3::date IS NULL OR day < $3)
ORDER BY day
"""

# Exact series for ranges that do not fall on UTC midnights: straight from the ledger.
SELECT_AGENT_DAYS_FROM_LEDGER = """
SELECT billing_day AS day, COALESCE(sum(cost_usd), 0) AS cost_usd,
       COALESCE(sum(provider_cost_usd), 0) AS provider_cost_usd,
       sum(event_count) AS events, sum(unpriced_count) AS unpriced_events,
       sum(input_tokens) AS input_tokens, sum(cached_input_tokens) AS cached_input_tokens,
       sum(cache_write_tokens) AS cache_write_tokens, sum(output_tokens) AS output_tokens,
       sum(reasoning_tokens) AS reasoning_tokens,
       min(occurred_at) AS first_event_at, max(occurred_at) AS last_event_at
FROM ledger_entries
WHERE agent = $1
  AND ($2::timestamptz IS NULL OR occurred_at >= $2)
  AND ($3::timestamptz IS NULL OR occurred_at < $3)
GROUP BY billing_day
ORDER BY billing_day
"""
