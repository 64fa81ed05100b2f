"""SQL of the write path: the statements that carry entries through every stage at once.

They are assembled from the pieces the stages own (ledger appends, rollup upserts), so a
batch is stored, appended and rolled up in one statement, one round trip.
"""

from service.budgets import queries as budgets
from service.catalog import queries as catalog
from service.customers import credit_queries as credits
from service.customers import queries as customers
from service.jobs import queries as jobs
from service.ledger import queries as ledger
from service.locks import LOCK_REPRICING_SHARED, REPRICING_SHARED
from service.reconciliation import queries as reconciliation
from service.rollups import queries as rollups

# A recording transaction begins in one round trip that takes the re-pricing lock shared
# (service.locks): the simple query protocol runs both statements in one message.
BEGIN_BATCH = f"BEGIN; {LOCK_REPRICING_SHARED}"

# Asked after the re-pricing lock is held, in a statement of its own: a READ COMMITTED
# statement sees what had committed when it began, so a catalog version committed while
# the batch waited for the lock is seen only by a later statement such as this one. It
# locks the batch's jobs ($1: jobs.service.batch_job_ids) too, with their customers and
# plans, in job order (arrays of one order).
OPEN_BATCH = f"""
WITH {jobs.LOCKED_JOBS}
SELECT stamp.versions, stamp.newest, plans.plan_versions, plans.newest_plan_version,
       {ledger.STAGING_TABLE_READY} AS staging_table_ready,
       {ledger.STAGING_TABLE_ALLOWED} AS staging_table_allowed,
       {budgets.ANY_BUDGETS} AS budgets_exist,
       {credits.ANY_CREDIT_ACCOUNTS} AS credits_exist,
       ARRAY(SELECT job_id FROM locked_jobs ORDER BY job_id) AS job_ids,
       ARRAY(SELECT customer_id FROM locked_jobs ORDER BY job_id) AS customer_ids,
       ARRAY(SELECT plan_id FROM locked_jobs ORDER BY job_id) AS plan_ids
FROM ({catalog.CATALOG_STAMP}) AS stamp, ({customers.PLAN_STAMP}) AS plans
"""

# What a large batch is priced with, read before its jobs are locked, so that its pricing
# and staging run while another batch holds those jobs (``recording.early``): the stamps
# as OPEN_BATCH reads them, and the customer and plan of each of its jobs that has one, as
# they stand (three arrays of one order, or NULL). OPEN_BATCH reads them again under lock;
# the batch is priced again if any differs.
PEEK_BATCH = f"""
WITH {jobs.CUSTOMER_JOBS}
SELECT stamp.versions, stamp.newest, plans.plan_versions, plans.newest_plan_version,
       {ledger.STAGING_TABLE_READY} AS staging_table_ready,
       {ledger.STAGING_TABLE_ALLOWED} AS staging_table_allowed,
       held.job_ids, held.customer_ids, held.plan_ids
FROM ({catalog.CATALOG_STAMP}) AS stamp, ({customers.PLAN_STAMP}) AS plans,
     (SELECT array_agg(job_id) AS job_ids, array_agg(customer_id) AS customer_ids,
             array_agg(plan_id) AS plan_ids
      FROM customer_jobs) AS held
"""


def _recording(staged_source: str, *, one_entry: bool = False) -> str:
    return f"""
WITH {ledger.append_staged_charges(staged_source)},
{rollups.upserts_over("appended", one_entry=one_entry)},
{reconciliation.upsert_appended(one_entry=one_entry)}
SELECT event_id, id FROM appended
"""


# A batch's new events with the id of their charge; replayed ids are absent.
RECORD_BATCH = {
    ledger.STAGED_FROM_TABLE: _recording(ledger.STAGED_FROM_TABLE),
    ledger.STAGED_FROM_JSON: _recording(ledger.STAGED_FROM_JSON),
}

# The same for a lone event (inline): its rollups take its measures as they are. Most
# groups of single events are one event when the load is light, and grouping one row in
# each of the seven rollups was a third of PostgreSQL's work on the statement.
RECORD_ONE = _recording(ledger.STAGED_FROM_JSON, one_entry=True)


def recording(staged_source: str, staged: int) -> str:
    """The statement that records ``staged`` events staged at ``staged_source``."""
    if staged == 1 and staged_source == ledger.STAGED_FROM_JSON:
        return RECORD_ONE
    return RECORD_BATCH[staged_source]


# Re-rating's adjustments, appended and rolled up; answers their ids.
RECORD_ADJUSTMENTS = f"""
WITH {ledger.APPEND_ENTRIES},
{rollups.upserts_over("appended")},
{reconciliation.upsert_appended()}
SELECT id FROM appended
"""

# Appended entries that draw on prepaid credits: priced, for a customer holding credits.
CREDIT_ENTRIES = """
SELECT id, event_id, customer_id, price_usd, occurred_at
FROM ledger_entries
WHERE id = ANY($1::bigint[]) AND price_usd <> 0
  AND customer_id IN (SELECT customer_id FROM credit_accounts)
ORDER BY id
"""

# The opening of a group recorded in one round trip (``recording.one_trip``): the
# re-pricing lock taken shared, then what OPEN_BATCH reads besides the jobs, and the live
# budgets (the spend is counted towards those the lock let in). A function of
# the connection's own (pg_temp, made by its first such group), so that its query reads
# with a snapshot taken after the lock (a VOLATILE function takes one per statement): a
# catalog version or a budget committed while the group waited for the lock is seen, as
# OPEN_BATCH sees it after BEGIN_BATCH. PL/pgSQL rather than SQL: an SQL function parses
# and plans its body at every call (a fifth of the one statement's time in PostgreSQL, at
# 8 clients); PL/pgSQL keeps the plan for the session. ``use_column``: the names of the
# columns it returns are also variables of the body, and the queries mean the columns.
CREATE_OPEN_RECORDING = f"""
CREATE OR REPLACE FUNCTION pg_temp.luc_open_recording()
RETURNS TABLE (versions bigint, newest bigint, plan_versions bigint,
               newest_plan_version bigint, budgets_exist boolean, credits_exist boolean,
               live_budgets budgets[])
LANGUAGE plpgsql VOLATILE AS $body$
#variable_conflict use_column
BEGIN
PERFORM {REPRICING_SHARED};
RETURN QUERY
SELECT stamp.versions, stamp.newest, plans.plan_versions, plans.newest_plan_version,
       {budgets.ANY_BUDGETS}, {credits.ANY_CREDIT_ACCOUNTS},
       {budgets.LIVE_BUDGET_ROWS}
FROM ({catalog.CATALOG_STAMP}) AS stamp, ({customers.PLAN_STAMP}) AS plans;
END
$body$
"""


def _one_trip(*, one_entry: bool, budgets_counted: bool) -> str:
    # $1 the staged rows (JSON, as STAGED_FROM_JSON); $2, $3, $4 each job of the group with
    # the customer and plan its events were priced for (arrays of one order); $5–$8 the
    # catalog's and the plans' stamps they were priced with. Nothing is stored unless every
    # one of those holds under the locks, and no credit account exists (draws want
    # statements of their own); the answer says which, with what the locks found.
    # ``budgets_counted``: the spend is counted towards the live budgets the opening read
    # (and their alerts raised); without, nothing is stored if a budget exists, so a process
    # that knows of none sends none of that work. The spend is listed before the rollups:
    # PostgreSQL runs the data-modifying CTEs that the final SELECT does not read after it,
    # last listed first, so the spend rows are locked after the rollup rows, as the long way
    # locks them (a test pins this).
    spend = (
        f"{budgets.spend_counted('appended', 'unnest((SELECT live_budgets FROM opened))')},"
        if budgets_counted
        else ""
    )
    none_expected = "" if budgets_counted else " AND NOT o.budgets_exist"
    # Read after everything else the final SELECT reads: it takes no lock.
    may_alert = budgets.alerts_may_follow("unnest(o.live_budgets)") if budgets_counted else "false"
    wanted = (
        "SELECT DISTINCT job_id FROM unnest($2::text[]) AS w (job_id) WHERE (SELECT ok FROM fits)"
    )
    return f"""
WITH opened AS MATERIALIZED (SELECT * FROM pg_temp.luc_open_recording()),
fits AS MATERIALIZED (
    SELECT o.versions = $5 AND o.newest IS NOT DISTINCT FROM $6
           AND o.plan_versions = $7 AND o.newest_plan_version IS NOT DISTINCT FROM $8
           AND NOT o.credits_exist{none_expected} AS ok
    FROM opened AS o
),
{jobs.locked_jobs(wanted)},
verdict AS MATERIALIZED (
    SELECT (SELECT ok FROM fits) AND NOT EXISTS (
        SELECT 1
        FROM unnest($2::text[], $3::text[], $4::text[]) AS g (job_id, customer_id, plan_id)
        LEFT JOIN locked_jobs AS l USING (job_id)
        WHERE l.job_id IS NULL
           OR l.customer_id IS DISTINCT FROM g.customer_id
           OR l.plan_id IS DISTINCT FROM g.plan_id
    ) AS stored
),
{ledger.append_staged_charges(f"{ledger.STAGED_FROM_JSON} WHERE (SELECT stored FROM verdict)")},
{spend}
{rollups.upserts_over("appended", one_entry=one_entry)},
{reconciliation.upsert_appended(one_entry=one_entry)}
SELECT v.stored, o.budgets_exist, o.credits_exist,
       ARRAY(SELECT job_id FROM locked_jobs ORDER BY job_id) AS job_ids,
       ARRAY(SELECT customer_id FROM locked_jobs ORDER BY job_id) AS customer_ids,
       ARRAY(SELECT plan_id FROM locked_jobs ORDER BY job_id) AS plan_ids,
       ARRAY(SELECT event_id FROM appended ORDER BY id) AS event_ids,
       ARRAY(SELECT id FROM appended ORDER BY id) AS entry_ids,
       {may_alert} AS may_alert
FROM verdict AS v, opened AS o
"""


# A group's one statement: opened, checked, stored, appended and rolled up, committed
# (alone, outside a transaction block) when PostgreSQL answers; a lone event's rollups take
# its measures as they are, as RECORD_ONE's.
# By (one event, budgets counted).
ONE_TRIPS = {
    (one, counted): _one_trip(one_entry=one, budgets_counted=counted)
    for one in (False, True)
    for counted in (False, True)
}


def one_trip(staged: int, *, budgets_counted: bool) -> str:
    """The one-trip statement for a group of ``staged`` events, counting their spend
    towards budgets or expecting none."""
    return ONE_TRIPS[(staged == 1, budgets_counted)]
