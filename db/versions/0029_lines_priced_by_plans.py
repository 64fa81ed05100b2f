"""An invoice line may bill calls no catalog version prices, at their plan's price.

Revision ID: 0029_lines_priced_by_plans
Revises: 0028_one_row_per_event
Create Date: 2026-12-04

An event whose model the catalog cannot price (yet) can still have a price for its
customer (SPEC §11): its plan's own price for the model, or an ``actual`` basis and the
provider's reported cost. Invoices bill it: a usage line without a catalog version, whose
unit prices are unknown (NULL) unless the plan's own. Priced lines keep every unit price
(the check says so); a minimum line keeps its zeros. Issued invoices are not touched (DDL
only).
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0029_lines_priced_by_plans"
down_revision = "0028_one_row_per_event"
branch_labels = None
depends_on = None

# As they are at this revision (a migration does not follow later code).
_PRICES = [
    f"price_{name}"
    for name in ("input", "output", "cache_read", "cache_write", "reasoning", "per_request")
]


def upgrade() -> None:
    run_sql(
        "".join(f"ALTER TABLE invoice_lines ALTER COLUMN {c} DROP NOT NULL;\n" for c in _PRICES)
        + f"""
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_usage_has_catalog;
-- Lines issued before line types (no line_type) all name a catalog version.
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_usage_has_catalog
    CHECK (catalog_version IS NOT NULL OR line_type IS NOT NULL);
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_priced_has_prices
    CHECK (catalog_version IS NULL OR ({" AND ".join(f"{c} IS NOT NULL" for c in _PRICES)}));
"""
    )


def downgrade() -> None:
    # Issued lines are append-only and the older schema cannot hold these: refuse while
    # there are any.
    run_sql(
        """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM invoice_lines
               WHERE line_type = 'usage' AND catalog_version IS NULL) THEN
        RAISE EXCEPTION 'invoices bill calls no catalog version prices: this schema cannot '
                        'be downgraded';
    END IF;
END $$;
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_priced_has_prices;
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_usage_has_catalog;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_usage_has_catalog
    CHECK (line_type = 'minimum' OR catalog_version IS NOT NULL);
"""
        + "".join(f"ALTER TABLE invoice_lines ALTER COLUMN {c} SET NOT NULL;\n" for c in _PRICES)
    )
