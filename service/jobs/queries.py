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

# The first customer named for each job of a batch, claimed in the batch's transaction:
# ($1 event ids, $2 job ids, $3 customer ids) of its events that name a customer, in batch
# order. A job that has a customer keeps it; one that has none takes the customer of its
# first event that is not already stored (a replay names what it named the first time,
# and was judged then). The upsert locks each job's row until the commit, in job order
# (as the rollups are locked), so of two batches naming different customers for a new
# job the second waits, then reads the first one's customer: a job never gets two. The
# answer is each job's customer as it stands, the latest committed one.
CLAIM_JOB_CUSTOMERS = """
WITH named AS (
    SELECT n.job_id, n.customer_id, n.position
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
         AS n (event_id, job_id, customer_id, position)
    WHERE NOT EXISTS (SELECT 1 FROM usage_events AS e WHERE e.event_id = n.event_id)
), first_named AS (
    SELECT DISTINCT ON (job_id) job_id, customer_id FROM named ORDER BY job_id, position
)
INSERT INTO jobs AS j (job_id, customer_id)
SELECT job_id, customer_id FROM first_named ORDER BY job_id
ON CONFLICT (job_id) DO UPDATE SET customer_id = coalesce(j.customer_id, EXCLUDED.customer_id)
RETURNING job_id, customer_id
"""
