"""The migrations spell the token classes, the price classes and the rollup measures out as
columns; this checks a migrated database against their declarations (service.tokens,
pricing.models.PRICE_CLASSES and RATE_MARKER, rollups.models.MEASURES,
reconciliation.models.MEASURES)."""

from __future__ import annotations

import asyncpg

from service.ingest.queries import CHARGE_EVENT_COLUMNS
from service.pricing.models import PRICE_CLASSES, RATE_MARKER, TOKEN_PRICES
from service.reconciliation import models as reconciliation
from service.rollups.models import MEASURE_NAMES
from service.tokens import TOKEN_FIELDS

ROLLUPS = (
    "rollup_jobs",
    "rollup_job_lines",
    "rollup_usage",
    "rollup_agent_days",
    "rollup_model_days",
    "rollup_customer_months",
)
PRICE_COLUMNS = tuple(f"price_{name}" for name in PRICE_CLASSES)

# table → the declared names it must have a column for
EXPECTED = {
    "ledger_entries": (
        *TOKEN_FIELDS,
        *CHARGE_EVENT_COLUMNS,
        *PRICE_COLUMNS,
        RATE_MARKER,
        "price_usd",
        "customer_id",
        "plan_id",
        "plan_version",
    ),
    **{table: MEASURE_NAMES for table in ROLLUPS},
    "invoice_lines": (*TOKEN_FIELDS, *PRICE_COLUMNS, RATE_MARKER),
    "catalog_prices": PRICE_CLASSES,
    "rollup_reconciliation_days": reconciliation.MEASURE_NAMES,
    "catalog_long_context": ("min_input_tokens", *TOKEN_PRICES),
}


async def test_every_table_has_a_column_for_each_declared_class_and_measure(
    db: asyncpg.Connection,
) -> None:
    rows = await db.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = ANY($1::text[])",
        list(EXPECTED),
    )
    columns: dict[str, set[str]] = {}
    for r in rows:
        columns.setdefault(r["table_name"], set()).add(r["column_name"])
    missing = {
        table: sorted(set(names) - columns.get(table, set()))
        for table, names in EXPECTED.items()
        if set(names) - columns.get(table, set())
    }
    assert missing == {}


async def test_the_rate_marker_is_part_of_the_invoice_line_rollups_key(
    db: asyncpg.Connection,
) -> None:
    keys = await db.fetch(
        "SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns"
        " FROM pg_constraint AS c"
        " JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
        " WHERE c.conrelid = 'rollup_job_lines'::regclass AND c.contype = 'u'"
        " GROUP BY c.oid"
    )
    assert [sorted(r["columns"]) for r in keys] == [
        sorted(["job_id", "agent", "model", "provider", "catalog_version", RATE_MARKER])
    ]
