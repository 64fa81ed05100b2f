"""SQL owned by jobs (tables ``jobs``, ``job_customer_changes``)."""

_JOB_COLUMNS = "job_id, status, customer, title, reference, updated_at, customer_id"

SELECT_JOB = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = $1"

# Serialises everything that changes a job or issues its invoices: the second of two
# concurrent issues waits here, then sees the first one's entries as invoiced.
ENSURE_JOB = "INSERT INTO jobs (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING"
LOCK_JOB = f"{SELECT_JOB.strip()} FOR UPDATE"

UPSERT_JOB = f"""
INSERT INTO jobs AS j (job_id, status, customer, title, reference)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (job_id) DO UPDATE SET
    status = EXCLUDED.status,
    customer = EXCLUDED.customer,
    title = EXCLUDED.title,
    reference = EXCLUDED.reference,
    updated_at = now()
RETURNING {_JOB_COLUMNS}
"""

# Run with the job's row locked (LOCK_JOB); the change is recorded beside it.
SET_JOB_CUSTOMER = f"""
WITH changed AS (
    UPDATE jobs SET customer_id = $2, updated_at = now() WHERE job_id = $1
    RETURNING {_JOB_COLUMNS}
), recorded AS (
    INSERT INTO job_customer_changes (job_id, customer_before, customer_after)
    SELECT job_id, $3, customer_id FROM changed
)
SELECT {_JOB_COLUMNS} FROM changed
"""

# The customer of every job of a batch, claimed and locked in the batch's transaction:
# ($1 event ids, $2 job ids, $3 customer ids or NULL) of its events, in batch order. A job
# that has a customer keeps it; one that has none takes the customer of its first event
# that names one and is not already stored (a replay names what it named the first time,
# and was judged then). Every job of the batch gets a row (made if missing), locked until
# the commit, in job order (as the rollups are locked): of two batches naming different
# customers for a new job the second waits, then reads the first one's customer, so a job
# never gets two; and a batch prices its events for the customer its job has when it
# commits, since a change of customer (a PATCH, or another batch's first naming) waits for
# it, or it for the change. ON CONFLICT DO UPDATE answers each row as it stands after the
# wait (the latest committed customer); ``before`` is what the statement's snapshot held,
# to tell a customer this batch set (which may be stale only towards "set now": harmless,
# see recording.service). The plan is the customer's (none for an unregistered one).
LOCK_JOB_CUSTOMERS = """
WITH batch AS (
    SELECT n.event_id, n.job_id, n.customer_id, n.position
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
         AS n (event_id, job_id, customer_id, position)
), first_named AS (
    SELECT DISTINCT ON (b.job_id) b.job_id, b.customer_id
    FROM batch AS b
    WHERE b.customer_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM usage_events AS e WHERE e.event_id = b.event_id)
    ORDER BY b.job_id, b.position
), before AS (
    SELECT job_id, customer_id FROM jobs WHERE job_id IN (SELECT job_id FROM batch)
), locked AS (
    INSERT INTO jobs AS j (job_id, customer_id)
    SELECT DISTINCT ON (b.job_id) b.job_id, f.customer_id
    FROM batch AS b
    LEFT JOIN first_named AS f USING (job_id)
    ORDER BY b.job_id
    ON CONFLICT (job_id) DO UPDATE SET customer_id = coalesce(j.customer_id, EXCLUDED.customer_id)
    RETURNING j.job_id, j.customer_id
)
SELECT l.job_id, l.customer_id, c.plan_id,
       l.customer_id IS NOT NULL AND b.customer_id IS NULL AS set_now
FROM locked AS l
LEFT JOIN before AS b USING (job_id)
LEFT JOIN customers AS c ON c.id = l.customer_id
"""
