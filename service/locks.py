"""Every advisory lock LUC takes, and who takes it how.

An advisory lock is a PostgreSQL lock on a number, not on a row: it orders work that no
row lock covers (a batch against a catalog version created meanwhile, two processes
seeding one empty ledger). The transaction-level ones (``pg_advisory_xact_lock``) are
released by the commit or the rollback, so none can be left behind.

============  ====================================  =========  ===============================
lock          taken by                              mode       why
============  ====================================  =========  ===============================
re-pricing    ``recording.service.record_batch``    shared     batches record side by side;
(transaction) (and ``recording.one_trip``'s                    a new catalog version waits
              opening function, for a group in                 until the batches priced with
              one statement)                                   the old one have committed
              ``invoices.service.issue_invoice``    shared     re-pricing waits until the
                                                               invoice is issued, so the
                                                               entries it covers and the
                                                               unpriced events it names are
                                                               one picture (ingest does not
                                                               wait)
              ``recording.repricing``: a job's      shared     as ingest: batches of other
              customer changed by PATCH                        jobs go on; the job's own row
              (``change_job_customer``)                        lock orders it with its batches
              ``recording.rerating``: a new         exclusive  re-pricing runs alone: after
              catalog version pricing unpriced                 every batch in flight, before
              events, ``rerate_since``; and                    every later one
              ``recording.repricing.reprice_plan``
              the last two as dry runs              shared     they write nothing: ingest
                                                               goes on beside them
              ``recording.catalog_upgrade``: the    exclusive  one start adds the completed
              completed AIMS catalog at start-up               catalog and re-rates; another
                                                               waits, then finds it done
              ``budgets.service``: creating a       exclusive  batches in flight commit first
              budget, changing its limit or                    (the backfill or re-evaluation
              thresholds                                       sees their spend) and later
                                                               ones see the new budget
month         ``invoices.monthly``: issuing a       exclusive  two issues of one customer's
invoice       customer's month                                 month queue: the second sees
(transaction)                                                  the first's entries and top-up
catalog seed  ``catalog.service.seed_catalog``      exclusive  processes starting together on
(transaction)                                                  an empty ledger make version 1
                                                               once
migrations    ``db/env.py`` (Alembic)               exclusive  processes starting together
(session)                                                      migrate once
============  ====================================  =========  ===============================

Row and table locks are not here: they sit in the SQL of their owner (``LOCK_JOB`` in
``invoices.queries`` numbers invoices per job, ``LOCK_COUNTERS`` there queues every issue
before it reads the clock that dates and numbers it, ``LOCK_BUDGETS`` in ``budgets.queries``
orders reservations against a hard budget, ``LOCKED_JOBS`` in ``jobs.queries`` holds
a batch's jobs and their customers until it commits, ``LOCK_ACCOUNTS`` in
``customers.credit_queries`` orders every draw on a customer's prepaid credits and every
new grant: taken last in a recording transaction, after the jobs and the rollup rows).
"""

from __future__ import annotations

from service.db import Connection

REPRICING_LOCK_KEY = 0x4C55C1
LOCK_REPRICING = f"SELECT pg_advisory_xact_lock({REPRICING_LOCK_KEY})"
# The shared call alone, for a PL/pgSQL body (PERFORM, where SQL says SELECT).
REPRICING_SHARED = f"pg_advisory_xact_lock_shared({REPRICING_LOCK_KEY})"
LOCK_REPRICING_SHARED = f"SELECT {REPRICING_SHARED}"

LOCK_CATALOG_SEED = "SELECT pg_advisory_xact_lock(hashtext('luc.catalog.seed'))"

# A session lock (Alembic runs a transaction per migration): taken and released by
# db/env.py around the whole upgrade.
MIGRATION_LOCK_KEY = 0x1C0FFEE


async def lock_repricing(conn: Connection, *, shared: bool = False) -> None:
    """Take the re-pricing lock for the rest of the transaction (see the table above)."""
    await conn.execute(LOCK_REPRICING_SHARED if shared else LOCK_REPRICING)


async def lock_month_invoice(conn: Connection, customer_id: str, month: str) -> None:
    """One issue of a customer's monthly invoice for ``month`` (YYYY-MM) at a time."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"luc.invoice.month:{customer_id}:{month}",
    )


async def lock_catalog_seed(conn: Connection) -> None:
    """Take the seeding lock for the rest of the transaction."""
    await conn.execute(LOCK_CATALOG_SEED)
