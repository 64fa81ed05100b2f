"""Read-only SQL behind /metrics. Every query reads a table whose size does not grow with
the number of jobs, so a scrape stays cheap as the ledger grows."""

from service.tokens import TOKEN_CLASSES

# Only the columns a series shows (metrics.rollup_series): decoding the rows is a share
# of a scrape's time, and the measures' timestamps (first_event_at, last_event_at) were
# the dearest to decode of columns no series uses. Each as the float the exposition writes:
# PostgreSQL rounds a numeric to the nearest float8 as float(Decimal) does, and the driver
# decodes a float8 in a fraction of the time it takes to build a Decimal from a numeric
# (half of the statement's 0.8 ms for the benchmark's 82 rows).
_USAGE_COLUMNS = ", ".join(
    f"{column}::float8 AS {column}"
    for column in (
        *(t.name for t in TOKEN_CLASSES),
        "cost_usd",
        "provider_cost_usd",
        "actual_cost_usd",
        "price_usd",
        "events",
        "unpriced_events",
        "unknown_price_events",
        "unknown_actual_events",
        "margin_usd",
        "unknown_margin_events",
    )
)

USAGE = f"""
SELECT agent, model, provider, COALESCE(tier, 'unpriced') AS tier, {_USAGE_COLUMNS}
FROM rollup_usage
"""

CATALOG_IN_FORCE = """
SELECT id, COALESCE(label, '') AS label
FROM catalog_versions
WHERE effective_from <= now()
ORDER BY effective_from DESC, id DESC
LIMIT 1
"""

BUDGET_SPEND = """
SELECT b.id, b.scope, b.period, b.limit_usd, COALESCE(s.spent_usd, 0) AS spent_usd
FROM budgets AS b
LEFT JOIN budget_spend AS s
       ON s.budget_id = b.id AND s.period_start = luc_period_start(b.period, now())
WHERE b.deleted_at IS NULL
"""
