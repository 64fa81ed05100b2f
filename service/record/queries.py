"""SQL of the recorder: the question that opens a batch's transaction.

It gathers, in one round trip, what each stage needs to know before the batch is written;
the fragments stay with the stages that own the tables.
"""

from service.budgets import queries as budgets
from service.catalog import queries as catalog
from service.ledger import queries as ledger

# Asked after the re-pricing lock is held, in a statement of its own: a READ COMMITTED
# statement sees what had committed when it began, so a catalog version committed while
# the batch waited for the lock is seen only by a later statement such as this one.
OPEN_BATCH = f"""
SELECT stamp.versions, stamp.newest,
       {ledger.SCRATCH_TABLES_READY} AS scratch_ready,
       {budgets.ANY_BUDGETS} AS budgets_exist,
       {budgets.ANY_OPEN_RESERVATIONS} AS reservations_open
FROM ({catalog.CATALOG_STAMP}) AS stamp
"""
