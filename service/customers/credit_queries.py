"""SQL owned by prepaid credits (tables ``credit_accounts``, ``credit_grants``,
``credit_draws``).

Lock order: a customer's ``credit_accounts`` row is locked before its grants are read or
changed, by every writer (a grant, the draws of a batch or of re-pricing), and several
customers' rows in customer id order. A recording transaction takes them last, after the
re-pricing lock, the job rows and the rollup rows, so no cycle can form.
"""

# ``expired``: by the database's clock, the one the balance is read by (SELECT_BALANCES).
GRANT_COLUMNS = (
    "id, customer_id, amount_usd, remaining_usd, expires_at, reference, created_at,"
    " (expires_at IS NOT NULL AND expires_at <= now()) AS expired"
)

# Whether any customer holds credits at all: asked in the query that opens a recording
# transaction, so that batches while no customer has credits pay nothing for them.
ANY_CREDIT_ACCOUNTS = "EXISTS (SELECT 1 FROM credit_accounts)"

# The customer a grant is for (its row kept while the grant is made), with its low balance.
CUSTOMER_TO_GRANT = "SELECT low_balance_usd FROM customers WHERE id = $1 FOR KEY SHARE"

NOW = "SELECT now()"

# The customer's account, made on its first grant, and locked: batches drawing on the
# customer's grants finish first, and later ones see the new grant.
OPEN_ACCOUNT = """
INSERT INTO credit_accounts AS a (customer_id) VALUES ($1)
ON CONFLICT (customer_id) DO UPDATE SET customer_id = a.customer_id
RETURNING a.customer_id
"""

INSERT_GRANT = f"""
INSERT INTO credit_grants (customer_id, amount_usd, remaining_usd, expires_at, reference)
VALUES ($1, $2, $2, $3, $4)
RETURNING {GRANT_COLUMNS}
"""

SELECT_GRANTS = f"SELECT {GRANT_COLUMNS} FROM credit_grants WHERE customer_id = $1 ORDER BY id"

# The customer's grant made under a reference ($2), if any: a reference names one grant.
SELECT_GRANT_BY_REFERENCE = f"""
SELECT {GRANT_COLUMNS} FROM credit_grants
WHERE customer_id = $1 AND reference = $2
ORDER BY id
LIMIT 1
"""

# What the live grants hold now (the balance), per customer; customers without an account
# are absent (their balance is zero).
SELECT_BALANCES = """
SELECT customer_id,
       COALESCE(sum(remaining_usd) FILTER (WHERE expires_at IS NULL OR expires_at > now()), 0)
           AS balance_usd
FROM credit_grants
WHERE customer_id = ANY($1::text[])
GROUP BY customer_id
"""

# A grant re-arms the alerts whose condition it clears (SPEC §12: once per crossing): the
# low alert when the balance is back at or above the customer's low_balance_usd (or none
# is set), the exhausted alert whenever the balance is above zero.
REARM_ALERTS = """
UPDATE credit_accounts
SET low_alert_armed = low_alert_armed OR $2, exhausted_alert_armed = exhausted_alert_armed OR $3
WHERE customer_id = $1
"""

# Sets whether each alert is armed, in the transaction that decided it (the accounts
# locked): disarmed as it fires, armed again once its condition no longer holds.
SET_ALERT_ARMING = """
UPDATE credit_accounts AS a
SET low_alert_armed = f.low, exhausted_alert_armed = f.exhausted
FROM unnest($1::text[], $2::boolean[], $3::boolean[]) AS f(customer_id, low, exhausted)
WHERE a.customer_id = f.customer_id
"""

# The accounts of the customers a recording transaction's entries belong to, locked in
# customer id order (the lock sits above the sort: rows are locked in that order). Their
# grants are read by the next statement, which sees every grant committed before the
# locks were granted.
LOCK_ACCOUNTS = """
SELECT a.customer_id, a.low_alert_armed, a.exhausted_alert_armed,
       c.low_balance_usd, c.webhook_url
FROM credit_accounts AS a
JOIN customers AS c ON c.id = a.customer_id
WHERE a.customer_id = ANY($1::text[])
ORDER BY a.customer_id
FOR NO KEY UPDATE OF a
"""

# What each event holds of each grant (its draws net of what it gave back), the grant it
# drew on last at the end: what a negative price of the event gives back, and where.
SELECT_HELD = """
SELECT event_id, grant_id, sum(amount_usd) AS held_usd
FROM credit_draws
WHERE event_id = ANY($1::text[])
GROUP BY event_id, grant_id
ORDER BY event_id, max(id)
"""

# The price of each event $1 for each customer $2 before the entries $3 (those being drawn
# for): a fall of price leaves the event a price, which its credits pay first.
SELECT_PRICED_BEFORE = """
SELECT event_id, customer_id, COALESCE(sum(price_usd), 0) AS price_usd
FROM ledger_entries
WHERE event_id = ANY($1::text[]) AND customer_id = ANY($2::text[])
  AND id <> ALL($3::bigint[])
GROUP BY event_id, customer_id
"""

# The grants a recording transaction may change: the live ones with credit left, and those
# its events may give credit back to. ``now()`` is the transaction's start, the instant its
# entries are recorded at (``ledger_entries.recorded_at``).
SELECT_DRAWABLE = f"""
SELECT {GRANT_COLUMNS}, now() AS at
FROM credit_grants
WHERE customer_id = ANY($1::text[])
  AND ((remaining_usd > 0 AND (expires_at IS NULL OR expires_at > now()))
       OR id = ANY($2::bigint[]))
"""

# Appends the draws and moves each grant's remaining credit by their sum. The CHECK on
# remaining_usd is the last word: a grant never goes below zero nor above its amount.
APPLY_DRAWS = """
WITH drawn AS (
    INSERT INTO credit_draws (entry_id, event_id, grant_id, customer_id, amount_usd)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::numeric[])
)
UPDATE credit_grants AS g
SET remaining_usd = g.remaining_usd - d.total
FROM (
    SELECT grant_id, sum(amount) AS total
    FROM unnest($3::bigint[], $5::numeric[]) AS t(grant_id, amount)
    GROUP BY grant_id
) AS d
WHERE g.id = d.grant_id
RETURNING g.id, g.remaining_usd
"""

# The credits drawn by exactly these entries (net of what they gave back): what an invoice
# that bills them applies.
CREDITS_OF_ENTRIES = """
SELECT COALESCE(sum(amount_usd), 0) FROM credit_draws WHERE entry_id = ANY($1::bigint[])
"""

# A reservation's look at its job's customer: the job's customer, else the one the caller
# names (a job's first call, before any event set it).
SELECT_CREDIT_STOP = """
SELECT c.id, c.credit_stop,
       COALESCE((SELECT sum(remaining_usd) FROM credit_grants AS g
                 WHERE g.customer_id = c.id
                   AND (g.expires_at IS NULL OR g.expires_at > now())), 0) AS balance_usd
FROM customers AS c
WHERE c.id = COALESCE((SELECT customer_id FROM jobs WHERE job_id = $1), $2)
"""

# /metrics: the credit left across customers, and how many customers holding credits are
# at zero, below their low balance, or fine. One row, whatever the number of customers.
CREDIT_STANDINGS = """
WITH balances AS (
    SELECT a.customer_id, c.low_balance_usd,
           COALESCE(sum(g.remaining_usd)
                    FILTER (WHERE g.expires_at IS NULL OR g.expires_at > now()), 0) AS balance
    FROM credit_accounts AS a
    JOIN customers AS c ON c.id = a.customer_id
    LEFT JOIN credit_grants AS g ON g.customer_id = a.customer_id
    GROUP BY a.customer_id, c.low_balance_usd
)
SELECT COALESCE(sum(balance), 0) AS balance_usd,
       count(*) FILTER (WHERE balance = 0) AS exhausted,
       count(*) FILTER (WHERE balance > 0 AND balance < low_balance_usd) AS low,
       count(*) FILTER (WHERE balance > 0 AND (low_balance_usd IS NULL
                                               OR balance >= low_balance_usd)) AS ok
FROM balances
"""
