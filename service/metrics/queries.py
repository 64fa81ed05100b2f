"""Read-only SQL behind /metrics. Every query reads a table whose size does not grow with
the number of jobs, so a scrape stays cheap as the ledger grows."""

from service.rollups.queries import TOTALS

USAGE = f"""
SELECT agent, model, provider, COALESCE(tier, 'unpriced') AS tier, {TOTALS}
FROM rollup_usage
"""

CATALOG_IN_FORCE = """
SELECT id, COALESCE(label, '') AS label, effective_from
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
