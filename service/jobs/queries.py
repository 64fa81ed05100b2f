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


# The jobs of a batch (``wanted``; $1 for LOCKED_JOBS), each row locked until the batch
# commits, in job order (as the rollups are locked), with its customer and that customer's
# plan: a batch prices its events for the customer its job has when it commits, since a
# change of the job's customer (a PATCH, another batch's first event naming one) waits for
# the row, or the row for it. Every row is taken in job order by the INSERT alone: a
# missing row is made (and so held), an existing one locked by the conflict's DO UPDATE
# (whose WHERE false rewrites nothing; PostgreSQL locks the row before it tests the WHERE),
# also one another batch made after this statement's snapshot. Made first and locked
# after, as this was, two batches making the same new jobs each held one the other waited
# for, and PostgreSQL failed one of them (a 500 for valid events). ``held`` then reads the
# visible rows again FOR NO KEY UPDATE, which waits for nothing now (the rows are this
# batch's) but answers each as it stands after any change committed while the INSERT
# waited. A row another batch made after the snapshot is held but not seen here: the
# caller reads those with LOCK_MADE_JOBS (rare: two batches making one job at once).
def locked_jobs(wanted: str) -> str:
    """Common table expressions (for a ``WITH``) ending in ``locked_jobs``: the jobs that
    ``wanted`` (a query of one ``job_id`` column, each once) names, held as above."""
    return f"""
wanted AS (
    {wanted}
), made AS (
    INSERT INTO jobs (job_id)
    SELECT job_id FROM wanted ORDER BY job_id
    ON CONFLICT (job_id) DO UPDATE SET customer_id = jobs.customer_id WHERE false
    RETURNING job_id, customer_id
), held AS (
    SELECT j.job_id, j.customer_id
    FROM jobs AS j
    JOIN wanted USING (job_id)
    ORDER BY j.job_id
    FOR NO KEY UPDATE OF j
), locked_jobs AS (
    SELECT l.job_id, l.customer_id, c.plan_id
    FROM (SELECT job_id, customer_id FROM made
          UNION ALL SELECT job_id, customer_id FROM held) AS l
    LEFT JOIN customers AS c ON c.id = l.customer_id
)"""


LOCKED_JOBS = locked_jobs("SELECT DISTINCT job_id FROM unnest($1::text[]) AS w (job_id)")
"""Common table expressions (for a ``WITH``) ending in ``locked_jobs``: the statement that
opens a batch, ``recording.queries.OPEN_BATCH``, holds its jobs with them."""

# Of the jobs of a batch ($1, as for LOCKED_JOBS), those with a customer, as they stand,
# without locking or making any: a common table expression ``customer_jobs`` (job,
# customer, plan) for a look before the locks (``recording.queries.PEEK_BATCH``). A job
# missing from it has no customer, or no row yet.
CUSTOMER_JOBS = """
customer_jobs AS (
    SELECT j.job_id, j.customer_id, c.plan_id
    FROM unnest($1::text[]) AS w (job_id)
    JOIN jobs AS j USING (job_id)
    LEFT JOIN customers AS c ON c.id = j.customer_id
    WHERE j.customer_id IS NOT NULL
)"""

LOCK_MADE_JOBS = """
SELECT j.job_id, j.customer_id, c.plan_id
FROM jobs AS j
LEFT JOIN customers AS c ON c.id = j.customer_id
WHERE j.job_id = ANY($1::text[])
ORDER BY j.job_id
FOR NO KEY UPDATE OF j
"""

# The first customer named for each job without one, in the batch's transaction, on rows
# LOCKED_JOBS holds: ($1 event ids, $2 job ids, $3 customer ids) of the batch's events that
# name a customer for such a job, in batch order. An event already stored is left out (a
# replay names what it named the first time, and was judged then).
CLAIM_JOB_CUSTOMERS = """
WITH first_named AS (
    SELECT DISTINCT ON (n.job_id) n.job_id, n.customer_id
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
         AS n (event_id, job_id, customer_id, position)
    WHERE NOT EXISTS (SELECT 1 FROM event_keys AS k WHERE k.event_id = n.event_id)
    ORDER BY n.job_id, n.position
), claimed AS (
    UPDATE jobs AS j SET customer_id = f.customer_id
    FROM first_named AS f
    WHERE j.job_id = f.job_id AND j.customer_id IS NULL
    RETURNING j.job_id, j.customer_id
)
SELECT l.job_id, l.customer_id, c.plan_id
FROM claimed AS l
LEFT JOIN customers AS c ON c.id = l.customer_id
"""
