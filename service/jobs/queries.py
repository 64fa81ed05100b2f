"""SQL owned by jobs (table ``jobs``)."""

SELECT_JOB = """
SELECT job_id, status, customer, title, reference, updated_at FROM jobs WHERE job_id = $1
"""

# Serialises everything that changes a job or issues its invoices: the second of two
# concurrent issues waits here, then sees the first one's entries as invoiced.
ENSURE_JOB = "INSERT INTO jobs (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING"
LOCK_JOB = f"{SELECT_JOB.strip()} FOR UPDATE"

UPSERT_JOB = """
INSERT INTO jobs AS j (job_id, status, customer, title, reference)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (job_id) DO UPDATE SET
    status = EXCLUDED.status,
    customer = EXCLUDED.customer,
    title = EXCLUDED.title,
    reference = EXCLUDED.reference,
    updated_at = now()
RETURNING job_id, status, customer, title, reference, updated_at
"""
