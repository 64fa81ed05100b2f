"""SQL of the write path: the statements that carry entries through every stage at once.

They are assembled from the pieces the stages own (ledger appends, rollup upserts), so a
batch is stored, appended and rolled up in one statement, one round trip.
"""

from service.budgets import queries as budgets
from service.catalog import queries as catalog
from service.customers import queries as customers
from service.ledger import queries as ledger
from service.reconciliation import queries as reconciliation
from service.rollups import queries as rollups

# Asked after the re-pricing lock is held, in a statement of its own: a READ COMMITTED
# statement sees what had committed when it began, so a catalog version committed while
# the batch waited for the lock is seen only by a later statement such as this one.
OPEN_BATCH = f"""
SELECT stamp.versions, stamp.newest, plans.plan_versions, plans.newest_plan_version,
       {ledger.STAGING_TABLE_READY} AS staging_table_ready,
       {ledger.STAGING_TABLE_ALLOWED} AS staging_table_allowed,
       {budgets.ANY_BUDGETS} AS budgets_exist
FROM ({catalog.CATALOG_STAMP}) AS stamp, ({customers.PLAN_STAMP}) AS plans
"""


def _recording(staged_source: str) -> str:
    return f"""
WITH {ledger.append_staged_charges(staged_source)},
{rollups.upserts_over("appended")},
{reconciliation.UPSERT_APPENDED}
SELECT event_id, id FROM appended
"""


# A batch's new events with the id of their charge; replayed ids are absent.
RECORD_BATCH = {
    ledger.STAGED_FROM_TABLE: _recording(ledger.STAGED_FROM_TABLE),
    ledger.STAGED_FROM_JSON: _recording(ledger.STAGED_FROM_JSON),
}

# Re-rating's adjustments, appended and rolled up; answers their ids.
RECORD_ADJUSTMENTS = f"""
WITH {ledger.APPEND_ENTRIES},
{rollups.upserts_over("appended")},
{reconciliation.UPSERT_APPENDED}
SELECT id FROM appended
"""
