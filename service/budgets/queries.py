"""SQL owned by budgets (``budgets``, ``budget_spend``, ``alerts``, ``alert_outbox``,
``budget_reservations``)."""

BUDGET_COLUMNS = """
id, scope, scope_id, period, limit_usd, thresholds, hard, webhook_url, measure,
webhook_secret IS NOT NULL AS has_own_secret, created_at, updated_at
"""

INSERT_BUDGET = f"""
INSERT INTO budgets (scope, scope_id, period, limit_usd, thresholds, hard, webhook_url,
                     webhook_secret, measure)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {BUDGET_COLUMNS}
"""

# What an entry adds to a budget ``b`` (of its measure), for ``entry`` a ledger entry.
_AMOUNT = """
CASE b.measure WHEN 'cost' THEN entry.cost_usd
               WHEN 'actual_cost' THEN entry.actual_cost_usd
               WHEN 'price' THEN entry.price_usd END
"""
# Whether an entry counts towards budget ``b`` by its scope.
_IN_SCOPE = """
(b.scope = 'global'
 OR (b.scope = 'agent' AND b.scope_id = entry.agent)
 OR (b.scope = 'job' AND b.scope_id = entry.job_id)
 OR (b.scope = 'model' AND b.scope_id = entry.model)
 OR (b.scope = 'customer' AND b.scope_id = entry.customer_id))
"""

SELECT_BUDGET = f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1 AND deleted_at IS NULL"

# A model budget is stored under the model's catalog id: $3 is the id that $2 names as a
# model (itself unless $2 is an alias).
SELECT_BUDGETS = f"""
SELECT {BUDGET_COLUMNS} FROM budgets
WHERE deleted_at IS NULL
  AND ($1::text IS NULL OR scope = $1)
  AND ($2::text IS NULL OR scope_id = $2 OR (scope = 'model' AND scope_id = $3))
ORDER BY id
"""

UPDATE_BUDGET = f"""
UPDATE budgets
SET limit_usd = $2, thresholds = $3, hard = $4, webhook_url = $5,
    webhook_secret = COALESCE($6, webhook_secret), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING {BUDGET_COLUMNS}
"""

DELETE_BUDGET = "UPDATE budgets SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL"

SELECT_WEBHOOK_SECRET = "SELECT webhook_secret FROM budgets WHERE id = $1"

# Spend of a new budget ($1) from the ledger as it stands, per period.
BACKFILL_SPEND = f"""
INSERT INTO budget_spend (budget_id, period_start, spent_usd)
SELECT b.id, luc_period_start(b.period, entry.occurred_at), sum({_AMOUNT})
FROM budgets AS b
JOIN ledger_entries AS entry ON {_IN_SCOPE}
WHERE b.id = $1 AND {_AMOUNT} IS NOT NULL
GROUP BY 1, 2
"""


def _alerts_raised(crossed: str) -> str:
    """CTEs ``alerted``, an alert for each row of ``crossed`` (budget_id, period_start,
    threshold, spent_usd, limit_usd, scope, scope_id, webhook_url) not raised before in its
    period (the unique key makes each fire once), made in key order (``created_at`` is the
    clock's as each is made, and lists of alerts follow it); and ``alerts_queued``, their
    deliveries for budgets with a webhook, queued period by period, a budget's thresholds
    lowest first: the order its endpoint gets them in (``CLAIM_DUE`` follows ``seq``,
    numbered in this order)."""
    return f"""
alerted AS (
    INSERT INTO alerts (budget_id, period_start, threshold, spent_usd, limit_usd, scope,
                        scope_id)
    SELECT DISTINCT budget_id, period_start, threshold, spent_usd, limit_usd, scope, scope_id
    FROM {crossed}
    ORDER BY budget_id, period_start, threshold
    ON CONFLICT (budget_id, period_start, threshold) DO NOTHING
    RETURNING id, budget_id, period_start, threshold
),
alerts_queued AS (
    INSERT INTO alert_outbox (alert_id, webhook_url)
    SELECT a.id, hook.webhook_url
    FROM alerted AS a
    JOIN (SELECT DISTINCT budget_id, webhook_url FROM {crossed}) AS hook USING (budget_id)
    WHERE hook.webhook_url IS NOT NULL
    ORDER BY a.period_start, a.threshold, a.budget_id
)"""


def spend_counted(entries: str, live_budgets: str) -> str:
    """CTEs adding the cost of freshly appended ledger entries (``entries``, a relation of
    their columns) to every live budget (``live_budgets``, a relation of ``budgets`` rows)
    they count towards, per period of each entry's occurred_at (event time, not the wall
    clock), and raising the alerts of the thresholds this moved past (``alerted``): before
    < threshold × limit ≤ after, exact (numeric: at 28 digits, a 40-digit limit would round
    onto the spend itself). Spend rows are locked in key order; the statement that holds
    these runs them after its rollups, as every writer does."""
    return f"""
spend_delta AS (
    SELECT b.id AS budget_id, luc_period_start(b.period, entry.occurred_at) AS period_start,
           sum({_AMOUNT}) AS amount
    FROM {entries} AS entry
    JOIN {live_budgets} AS b ON {_IN_SCOPE}
    GROUP BY 1, 2
    -- Unknown (unpriced) or nothing: no spend row to touch.
    HAVING COALESCE(sum({_AMOUNT}), 0) <> 0
),
spent AS (
    INSERT INTO budget_spend AS s (budget_id, period_start, spent_usd)
    SELECT budget_id, period_start, amount FROM spend_delta ORDER BY budget_id, period_start
    ON CONFLICT (budget_id, period_start) DO UPDATE SET spent_usd = s.spent_usd + EXCLUDED.spent_usd
    RETURNING s.budget_id, s.period_start, s.spent_usd
),
crossed AS (
    SELECT u.budget_id, u.period_start, t.threshold, u.spent_usd, b.limit_usd, b.scope,
           b.scope_id, b.webhook_url
    FROM spent AS u
    JOIN spend_delta AS d USING (budget_id, period_start)
    JOIN {live_budgets} AS b ON b.id = u.budget_id
    CROSS JOIN LATERAL unnest(b.thresholds) AS t (threshold)
    WHERE u.spent_usd - d.amount < t.threshold * b.limit_usd
      AND t.threshold * b.limit_usd <= u.spent_usd
),
{_alerts_raised("crossed")}"""


def alerts_may_follow(live_budgets: str) -> str:
    """Whether the spend of ``spend_counted``'s ``spend_delta`` may pass a threshold of a
    budget with a webhook: judged on the spend rows as the statement's snapshot holds them,
    so a hint (spend committed meanwhile by others can hide a crossing, or show one that
    was theirs), for a statement that cannot read its ``alerted`` (``recording.queries``):
    the webhook dispatcher then looks at once, and otherwise at its next poll."""
    return f"""EXISTS (
    SELECT 1
    FROM spend_delta AS d
    JOIN {live_budgets} AS b ON b.id = d.budget_id
    CROSS JOIN LATERAL unnest(b.thresholds) AS t (threshold)
    LEFT JOIN budget_spend AS s USING (budget_id, period_start)
    WHERE b.webhook_url IS NOT NULL
      AND COALESCE(s.spent_usd, 0) < t.threshold * b.limit_usd
      AND t.threshold * b.limit_usd <= COALESCE(s.spent_usd, 0) + d.amount
)"""


LIVE_BUDGETS = "(SELECT * FROM budgets WHERE deleted_at IS NULL)"
# The same as one value (``budgets[]``), for a statement that must read them with a
# snapshot of its own (``recording.queries.CREATE_OPEN_RECORDING``).
LIVE_BUDGET_ROWS = "ARRAY(SELECT b FROM budgets AS b WHERE b.deleted_at IS NULL ORDER BY b.id)"

# The long way's: entries appended by an earlier statement of the transaction ($1, their
# ids), counted after the rollups; answers how many alerts are new.
APPLY_ENTRIES = f"""
WITH entry AS (
    SELECT job_id, agent, model, customer_id, occurred_at, cost_usd, actual_cost_usd, price_usd
    FROM ledger_entries
    WHERE id = ANY($1::bigint[])
),
{spend_counted("entry", LIVE_BUDGETS)}
SELECT count(*) FROM alerted
"""

# Alerts of thresholds a budget's new limit or thresholds put behind its spend, given as
# arrays of one order; answers how many are new.
RAISE_ALERTS = f"""
WITH crossed AS (
    SELECT *
    FROM unnest($1::bigint[], $2::timestamptz[], $3::numeric[], $4::numeric[],
                $5::numeric[], $6::text[], $7::text[], $8::text[])
         AS c (budget_id, period_start, threshold, spent_usd, limit_usd, scope, scope_id,
               webhook_url)
),
{_alerts_raised("crossed")}
SELECT count(*) FROM alerted
"""

# Credit alerts' deliveries, in the order given: ``seq`` numbers them so (an endpoint gets
# its alerts in this order).
INSERT_OUTBOX = """
INSERT INTO alert_outbox (alert_id, webhook_url)
SELECT alert_id, webhook_url
FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS o(alert_id, webhook_url, position)
ORDER BY position
"""

# Claims due deliveries for a lease: of each budget (and of each customer, for credit
# alerts), only its oldest undelivered alert (by ``seq``, the order they were raised in),
# and only when that one is due and not leased. So a budget's webhooks go out one at a time
# and in order (its 50 % alert before its 100 % one), a failing one holding back those after
# it through its retries until it is delivered or dead; alerts of other budgets, at the
# same endpoint or not, are not held up by it (their order is no receiver's concern, and
# one alert a receiver keeps refusing would stall every budget behind it for the retry
# window). SKIP LOCKED lets several dispatchers (replicas) share the outbox without
# claiming a row twice; the lease frees rows of a dispatcher that died.
CLAIM_DUE = """
WITH head AS (
    SELECT DISTINCT ON (a.budget_id, a.customer_id) o.alert_id
    FROM alert_outbox AS o
    JOIN alerts AS a ON a.id = o.alert_id
    WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
    ORDER BY a.budget_id, a.customer_id, o.seq
)
UPDATE alert_outbox AS o
SET locked_until = now() + make_interval(secs => $2), attempts = o.attempts + 1,
    retry_until = COALESCE(o.retry_until, now() + make_interval(secs => $3))
FROM (
    SELECT due.alert_id FROM alert_outbox AS due
    JOIN head USING (alert_id)
    -- On the row itself: a head another dispatcher claimed (or delivered) and committed
    -- after this statement's snapshot is re-read when locked, and these re-checked on what
    -- it is now. The alerts behind a head are no heads until it is delivered or dead.
    WHERE due.delivered_at IS NULL AND due.dead_at IS NULL AND due.next_attempt_at <= now()
      AND (due.locked_until IS NULL OR due.locked_until < now())
    ORDER BY due.next_attempt_at
    LIMIT $1
    FOR UPDATE OF due SKIP LOCKED
) AS due
WHERE o.alert_id = due.alert_id
RETURNING o.alert_id, o.webhook_url, o.attempts, o.retry_until
"""

# Credit alerts have no budget: they are signed with LUC_WEBHOOK_SECRET. The webhook the
# budget (or the customer, for a credit alert) has now: where the attempt goes, as its
# secret is the budget's now (an operator who fixes a failing URL means the retries too).
SELECT_DELIVERY_DATA = """
SELECT a.id, a.type, a.budget_id, a.scope, a.scope_id, a.period_start, a.threshold,
       a.spent_usd, a.limit_usd, a.customer_id, a.balance_usd, a.low_balance_usd,
       a.created_at, b.webhook_secret, b.measure,
       CASE WHEN a.budget_id IS NULL THEN c.webhook_url ELSE b.webhook_url END
           AS current_webhook_url
FROM alerts AS a
LEFT JOIN budgets AS b ON b.id = a.budget_id
LEFT JOIN customers AS c ON c.id = a.customer_id
WHERE a.id = ANY($1::uuid[])
"""

MARK_DELIVERED = """
UPDATE alert_outbox SET delivered_at = now(), locked_until = NULL, last_error = NULL
WHERE alert_id = $1
"""

# Schedules the next attempt, or marks the delivery dead once the retry window is spent
# or when the receiver said not to retry ($4).
MARK_FAILED = """
UPDATE alert_outbox
SET last_error = $2, locked_until = NULL,
    next_attempt_at = now() + make_interval(secs => $3),
    dead_at = CASE WHEN $4 OR now() + make_interval(secs => $3) > retry_until THEN now() END
WHERE alert_id = $1
"""

REDELIVER = """
UPDATE alert_outbox
SET dead_at = NULL, delivered_at = NULL, attempts = 0, next_attempt_at = now(),
    locked_until = NULL, retry_until = now() + make_interval(secs => $2)
WHERE alert_id = $1
"""

# The outbox as an operator watches it (/metrics): deliveries pending (not delivered, not
# dead: being retried, or waiting behind their budget's older alert), the age of the oldest
# of them, and deliveries that died (their retry window spent, or a 410). Each count reads
# a partial index.
OUTBOX_STANDING = """
SELECT (SELECT count(*) FROM alert_outbox
        WHERE delivered_at IS NULL AND dead_at IS NULL) AS pending,
       (SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(a.created_at)), 0)
        FROM alert_outbox AS o JOIN alerts AS a ON a.id = o.alert_id
        WHERE o.delivered_at IS NULL AND o.dead_at IS NULL) AS oldest_pending_seconds,
       (SELECT count(*) FROM alert_outbox WHERE dead_at IS NOT NULL) AS dead
"""

SELECT_ALERTS = """
SELECT a.id, a.type, a.budget_id, a.scope, a.scope_id, a.period_start, a.threshold,
       a.spent_usd, a.limit_usd, a.customer_id, a.balance_usd, a.low_balance_usd, a.created_at,
       d.delivery, COALESCE(o.attempts, 0) AS attempts, o.last_error, o.delivered_at, b.measure
FROM alerts AS a
LEFT JOIN budgets AS b ON b.id = a.budget_id  -- credit alerts have none
LEFT JOIN alert_outbox AS o ON o.alert_id = a.id
-- ``models.DELIVERIES``
CROSS JOIN LATERAL (
    SELECT CASE WHEN o.alert_id IS NULL THEN 'none'
                WHEN o.delivered_at IS NOT NULL THEN 'delivered'
                WHEN o.dead_at IS NOT NULL THEN 'dead'
                ELSE 'pending' END AS delivery
) AS d
WHERE ($1::bigint IS NULL OR a.budget_id = $1)
  AND ($2::uuid IS NULL OR a.id = $2)
  AND ($4::text IS NULL OR a.customer_id = $4)
  AND ($5::text IS NULL OR a.type = $5)
  AND ($8::text IS NULL OR d.delivery = $8)
  -- A list holds only alerts no open transaction can still precede. ``created_at`` is
  -- the clock at the alert's insert, not at its commit: an alert inserted at 10:00:01 by
  -- a batch that commits at 10:00:05 appears behind alerts committed in between, and a
  -- client paging with the cursor of one of those never saw it. A transaction can only
  -- insert alerts stamped after it began, so alerts before the start of the oldest open
  -- writing transaction of this database are all there is below that instant. Not one
  -- older than five minutes (an idle session left open would hold every new alert back):
  -- LUC's writing transactions are far shorter.
  AND ($2::uuid IS NOT NULL OR a.created_at < (
      SELECT least(now(), min(xact_start))
      FROM pg_stat_activity
      WHERE datname = current_database() AND backend_xid IS NOT NULL
        AND pid <> pg_backend_pid() AND xact_start > now() - interval '5 minutes'
  ))
  -- The page after the alert ($6, $7) a cursor names, in the listing's order.
  AND ($6::timestamptz IS NULL OR (a.created_at, a.id) > ($6, $7::uuid))
ORDER BY a.created_at, a.id
LIMIT $3
"""

# Credit alerts (SPEC §12), decided by ``credit_alerts`` under the customers' account locks.
INSERT_CREDIT_ALERTS = """
INSERT INTO alerts (type, customer_id, balance_usd, low_balance_usd)
SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[])
RETURNING id, customer_id
"""

# Locks the hard budgets a check reserves against, in id order, so concurrent checks
# queue and each sees the reservations of the ones before it.
LOCK_BUDGETS = "SELECT id FROM budgets WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"

SELECT_STANDING = """
SELECT b.id,
       COALESCE((SELECT spent_usd FROM budget_spend s
                 WHERE s.budget_id = b.id AND s.period_start = $2), 0) AS spent_usd,
       COALESCE((SELECT sum(amount_usd) FROM budget_reservations r
                 WHERE r.budget_id = b.id AND r.period_start = $2
                   AND r.settled_at IS NULL AND r.expires_at > now()), 0) AS reserved_usd
FROM budgets AS b
WHERE b.id = $1
"""

# The budgets a call falls under: its job's, its agent's, its customer's, the global ones,
# and those of every model that may answer it ($3: its own, and OpenRouter's fallbacks).
SELECT_APPLICABLE = f"""
SELECT {BUDGET_COLUMNS} FROM budgets
WHERE deleted_at IS NULL
  AND (scope = 'global'
       OR (scope = 'job' AND scope_id = $1)
       OR (scope = 'agent' AND scope_id = $2)
       OR (scope = 'model' AND scope_id = ANY($3::text[]))
       OR (scope = 'customer' AND scope_id = $4))
ORDER BY id
"""

# Whether a call of job $1 by agent $2 on model $3 may be refused: the gateway's one look
# before it bothers to reserve. A hard customer budget of any customer, or any customer
# whose credits stop calls at zero, counts (the job's customer is only resolved by the
# reservation itself), so this may say yes when the full look says no, never the other way.
HARD_BUDGET_MAY_APPLY = """
SELECT EXISTS (
    SELECT 1 FROM budgets
    WHERE deleted_at IS NULL AND hard
      AND (scope IN ('global', 'customer')
           OR (scope = 'job' AND scope_id = $1)
           OR (scope = 'agent' AND scope_id = $2)
           OR (scope = 'model' AND scope_id = $3))
) OR EXISTS (SELECT 1 FROM customers WHERE credit_stop)
"""

# The customer a call of job $1 is for, when the caller does not say: the job's, and its
# plan (what a price budget converts the estimate with).
SELECT_JOB_CUSTOMER = """
SELECT j.customer_id, c.plan_id
FROM jobs AS j LEFT JOIN customers AS c ON c.id = j.customer_id
WHERE j.job_id = $1
"""
SELECT_CUSTOMER_PLAN = "SELECT plan_id FROM customers WHERE id = $1"
SELECT_JOB_CUSTOMER_ID = "SELECT customer_id FROM jobs WHERE job_id = $1"

# One reservation: a row per hard budget of the call, all under one reservation id.
# Each row holds the estimate in its budget's measure (a price budget the price estimate).
INSERT_RESERVATIONS = """
INSERT INTO budget_reservations (reservation_id, budget_id, period_start, job_id, agent, model,
                                 customer_id, amount_usd, expires_at, api_key_id, estimate_usd)
SELECT $1, budget_id, period_start, $4, $5, $6, $7, amount, now() + make_interval(secs => $9),
       $10, $11
FROM unnest($2::bigint[], $3::timestamptz[], $8::numeric[]) AS r(budget_id, period_start, amount)
RETURNING expires_at
"""

# Every hard budget but $1, locked as reservations lock theirs (id order): a reservation
# still being made holds some of them until it commits, so that once these are locked,
# every open reservation is committed and readable (see ``holds``).
LOCK_OTHER_HARD_BUDGETS = """
SELECT id FROM budgets WHERE deleted_at IS NULL AND hard AND id <> $1
ORDER BY id FOR NO KEY UPDATE
"""

# The reservations still holding whose calls fall under budget $1 and that hold nothing
# against it yet, one row each: what it joins (its period of the call's instant), the
# call's estimate (the largest row's amount for a reservation made without one), and the
# plan of its customer (what a price budget's hold is made with).
OPEN_RESERVATIONS_IN_SCOPE = f"""
SELECT DISTINCT ON (entry.reservation_id)
       entry.reservation_id, entry.job_id, entry.agent, entry.model, entry.customer_id,
       entry.expires_at, entry.api_key_id,
       luc_period_start(b.period, entry.created_at) AS period_start,
       COALESCE(entry.estimate_usd,
                max(entry.amount_usd) OVER (PARTITION BY entry.reservation_id)) AS estimate_usd,
       (SELECT plan_id FROM customers AS c WHERE c.id = entry.customer_id) AS plan_id
FROM budgets AS b
JOIN budget_reservations AS entry ON {_IN_SCOPE}
WHERE b.id = $1 AND entry.settled_at IS NULL AND entry.expires_at > now()
  AND NOT EXISTS (SELECT 1 FROM budget_reservations AS held
                  WHERE held.reservation_id = entry.reservation_id AND held.budget_id = b.id)
ORDER BY entry.reservation_id
"""

# Budget $1's rows of those reservations: each settles, is released and expires with the
# rest of its reservation (by its id), as if the call had been admitted under it.
INSERT_HOLDS = """
INSERT INTO budget_reservations (reservation_id, budget_id, period_start, job_id, agent, model,
                                 customer_id, amount_usd, expires_at, api_key_id, estimate_usd)
SELECT r.reservation_id, $1, r.period_start, r.job_id, r.agent, r.model, r.customer_id,
       r.amount, r.expires_at, r.api_key_id, r.estimate
FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::numeric[], $9::timestamptz[], $10::bigint[], $11::numeric[])
     AS r(reservation_id, period_start, job_id, agent, model, customer_id, amount, expires_at,
          api_key_id, estimate)
"""

# Whether a batch has budget work at all: asked in the query that opens the recorder's
# transaction, so that a batch with no budgets in play pays nothing.
ANY_BUDGETS = "EXISTS (SELECT 1 FROM budgets WHERE deleted_at IS NULL)"

# Settles the reservations that arriving calls name: every row of each, when its job is
# the call's job (an id copied onto another job's usage releases nothing), it was made by
# the key that sent the call (no key, $3 NULL: LUC's own gateway, an admin key, any; a
# reservation made keyless, by LUC's gateway or an admin key, by any key's call), and
# it still holds (an expired or settled one is left as it is). Rows are locked in id order
# first, so two batches that name rows of the same reservations cannot deadlock. Returns
# the reservations settled, each with its job and key, to tell which call settled it.
SETTLE_RESERVATIONS = """
WITH named AS (
    SELECT r.id
    FROM budget_reservations AS r
    JOIN unnest($1::uuid[], $2::text[], $3::bigint[]) AS c(reservation_id, job_id, key_id)
      ON r.reservation_id = c.reservation_id AND r.job_id = c.job_id
     AND (c.key_id IS NULL OR r.api_key_id IS NULL OR r.api_key_id = c.key_id)
    WHERE r.settled_at IS NULL AND r.expires_at > now()
    ORDER BY r.id
    FOR UPDATE OF r
)
UPDATE budget_reservations SET settled_at = now()
WHERE id IN (SELECT id FROM named)
RETURNING reservation_id, job_id, api_key_id
"""

# What became of reservations that calls named and did not settle (the rows of one
# reservation share all of these): why each call's answer says nothing was settled.
SELECT_RESERVATION_STATES = """
SELECT DISTINCT ON (reservation_id)
       reservation_id, job_id, api_key_id, settled_at IS NOT NULL AS settled
FROM budget_reservations
WHERE reservation_id = ANY($1::uuid[])
ORDER BY reservation_id
"""

# A budget's spend in one period, which a limit change re-evaluates its thresholds against.
SELECT_SPEND = """
SELECT spent_usd FROM budget_spend WHERE budget_id = $1 AND period_start = $2
"""

# Releases a reservation whose call spent nothing: it stops holding at once, as if it had
# expired now. A settled one stays settled (its spend is on the ledger), an expired or
# released one is left as it is, so releasing twice is releasing once. With a key id ($2),
# only a reservation that key made: another key's is left alone, and answered as if LUC
# never issued it. Returns whether there was such a reservation.
RELEASE_RESERVATION = """
WITH released AS (
    UPDATE budget_reservations SET expires_at = now()
    WHERE reservation_id = $1 AND ($2::bigint IS NULL OR api_key_id = $2)
      AND settled_at IS NULL AND expires_at > now()
)
SELECT EXISTS (
    SELECT 1 FROM budget_reservations
    WHERE reservation_id = $1 AND ($2::bigint IS NULL OR api_key_id = $2)
)
"""

# Forgets reservations that stopped holding long ago ($1 seconds): settled that long ago,
# or expired or released that long ago; at most $2 rows a round, each round its own short
# transaction. A reservation still holding is never among them (settled_at NULL and
# expires_at past now), nor is anything a later event could still do to one: an expired
# or released reservation settles nothing, a settled one nothing again, and an event seen
# before is a duplicate that settles nothing, whether the row is there or not. Rows taken
# by another pruner are skipped, not waited for.
PRUNE_RESERVATIONS = """
WITH gone AS (
    SELECT id FROM budget_reservations
    WHERE COALESCE(settled_at, expires_at) < now() - make_interval(secs => $1)
      AND (settled_at IS NOT NULL OR expires_at <= now())
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM budget_reservations WHERE id IN (SELECT id FROM gone)
"""
