"""SQL owned by the ledger (table ``ledger_entries``, and the staging of a batch).

The statements that append entries are pieces (common table expressions ending in
``appended``, the rows just appended): the write path adds the rollups to the same
statement (``service.recording.queries``), so appending a batch and rolling it up is one
round trip. Token columns come from ``service.tokens``.
"""

from service.ingest.queries import CHARGE_EVENT_COLUMNS, charge_event_values, event_fields
from service.pricing.models import RATE_MARKER
from service.tokens import TOKEN_FIELDS

_TOKENS = ", ".join(TOKEN_FIELDS)


def _prefixed(alias: str) -> str:
    """The token columns of the relation ``alias``: ``e.input_tokens, e.cached_…``."""
    return ", ".join(f"{alias}.{name}" for name in TOKEN_FIELDS)


# The ledger is partitioned by UTC month of occurred_at (migration 0006); this makes the
# partitions of the month before this one, this one and the next $1 when missing, and
# answers how many it made. It runs with its owner's rights (migration 0009), so the
# service's role may call it. The month before: a new installation's first events are
# often of it (stragglers of a month's end, a spool replayed after an outage, a demo's
# last days), and in the default partition they kept that month from ever having its own.
# UTC months: ``now()::date`` is the date in the session's time zone, and connections
# outside LUC's pool (``luc partitions ensure``, migrations) have the server's. Near a month's
# end that is the next month in zones east of UTC, and the month still running was skipped.
ENSURE_MONTHS_AHEAD = """
SELECT luc_ensure_ledger_months(((now() AT TIME ZONE 'UTC') - interval '1 month')::date, $1)
"""
ENSURE_MONTHS_AHEAD_FUNCTION = "luc_ensure_ledger_months(date,integer)"
MONTHS_AHEAD = 2
"""Months made ahead of this one: a process that cannot make them for two months running
still never sends an event of the present into the default partition."""
# Making a partition takes an exclusive lock on the ledger, queued behind its readers and
# ahead of every later writer: a long report would hold up ingest until it ends. Upkeep
# gives up after this long instead, and tries again at its next round.
MONTHS_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', '2s', true)"

# A batch's events with their priced charges, as the recorder sends them. Money is decimal
# text, cast on the way into the tables (see ENTRY_PARAMETERS for why text); attributes are
# JSON text.
STAGED_COLUMNS = (
    ("event_id", "text"),
    ("occurred_at", "timestamptz"),
    ("job_id", "text"),
    ("agent", "text"),
    ("provider", "text"),
    ("sent_model", "text"),
    *((name, "bigint") for name in TOKEN_FIELDS),
    ("provider_cost_usd", "text"),
    ("status", "text"),
    ("attributes", "text"),
    ("reservation_id", "text"),
    ("customer_id", "text"),
    ("model", "text"),
    ("tier", "text"),
    ("catalog_version", "bigint"),
    (RATE_MARKER, "bigint"),
    ("billing_day", "date"),
    ("unpriced_count", "integer"),
    ("cost_usd", "text"),
    ("price_input", "text"),
    ("price_output", "text"),
    ("price_cache_read", "text"),
    ("price_cache_write", "text"),
    ("price_reasoning", "text"),
    ("price_per_request", "text"),
    ("reason", "text"),
    ("price_usd", "text"),
    ("job_customer_id", "text"),
    ("plan_id", "text"),
    ("plan_version", "bigint"),
)
STAGED_NAMES = tuple(name for name, _ in STAGED_COLUMNS)
_STAGED_DEFINITION = ", ".join(f"{name} {kind}" for name, kind in STAGED_COLUMNS)

# Large batches are staged with binary COPY into this per-connection temporary table
# (4 µs of PostgreSQL per event, against 13 µs for parsing the same rows as JSON). ON
# COMMIT DELETE ROWS empties it at each commit, but that truncation costs about 0.3 ms in
# every transaction that touched a temporary table, so small groups go inline instead.
CREATE_STAGING_TABLE = (
    f"CREATE TEMP TABLE IF NOT EXISTS luc_staged_charges ({_STAGED_DEFINITION})"
    " ON COMMIT DELETE ROWS"
)
STAGING_TABLE_READY = "to_regclass('pg_temp.luc_staged_charges') IS NOT NULL"
# A role without TEMPORARY on the database cannot create it: its batches go inline as JSON
# whatever their size (slower, never refused).
STAGING_TABLE_ALLOWED = "has_database_privilege(current_database(), 'TEMPORARY')"
STAGED_FROM_TABLE = "SELECT * FROM luc_staged_charges"
# Staged rows stay until the commit; a batch recorded inside a caller's longer transaction
# clears those of an earlier batch first.
CLEAR_STAGED = "DELETE FROM luc_staged_charges"
# Small groups travel inline, as one JSON parameter (an array of objects).
STAGED_FROM_JSON = f"SELECT * FROM json_to_recordset($1::json) AS s({_STAGED_DEFINITION})"


# The ledger columns every append fills (id and recorded_at come from their defaults, and
# actual_cost_usd is generated from the two costs: migration 0012), with the
# type of APPEND_ENTRIES' arrays. Money travels as decimal text cast to numeric: exact
# either way, and asyncpg encodes text several times faster than binary NUMERIC (the ingest
# benchmark's profile showed it).
INSERT_COLUMNS = (
    ("event_id", "text"),
    ("kind", "text"),
    ("job_id", "text"),
    ("agent", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("tier", "text"),
    ("catalog_version", "bigint"),
    (RATE_MARKER, "bigint"),
    ("occurred_at", "timestamptz"),
    ("billing_day", "date"),
    *((name, "bigint") for name in TOKEN_FIELDS),
    ("event_count", "int"),
    ("unpriced_count", "int"),
    ("cost_usd", "numeric"),
    ("provider_cost_usd", "numeric"),
    ("price_input", "numeric"),
    ("price_output", "numeric"),
    ("price_cache_read", "numeric"),
    ("price_cache_write", "numeric"),
    ("price_reasoning", "numeric"),
    ("price_per_request", "numeric"),
    ("reason", "text"),
    ("price_usd", "numeric"),
    ("customer_id", "text"),
    ("plan_id", "text"),
    ("plan_version", "bigint"),
)
INSERT_FIELDS = tuple(name for name, _ in INSERT_COLUMNS)
MONEY_FIELDS = frozenset(name for name, kind in INSERT_COLUMNS if kind == "numeric")
_INSERT_INTO_LEDGER = f"ledger_entries ({', '.join(INSERT_FIELDS)})"
_INSERT_CHARGES = f"ledger_entries ({', '.join((*INSERT_FIELDS, *CHARGE_EVENT_COLUMNS))})"


def append_staged_charges(staged_source: str) -> str:
    """Common table expressions that store the keys of the staged events whose id is new
    and append their charges; ``new_events`` and ``appended`` name what was stored.

    event_keys' primary key is the idempotency key: a replayed id inserts nothing, is not
    returned, and so gets no charge. Keys go in event_id order so that two batches sharing
    ids lock index entries in the same order and cannot deadlock. Each charge carries its
    event's own fields (``ingest.queries.charge_event_values``): the charge is the stored
    event (migration 0028).
    """
    return f"""
staged AS ({staged_source}),
new_events AS (
    INSERT INTO event_keys (event_id, occurred_at)
    SELECT event_id, occurred_at
    FROM staged
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
),
appended AS (
    INSERT INTO {_INSERT_CHARGES}
    SELECT s.event_id, 'charge', s.job_id, s.agent, s.model, s.provider, s.tier,
           s.catalog_version, s.long_context_from, s.occurred_at, s.billing_day,
           {_prefixed("s")}, 1, s.unpriced_count,
           s.cost_usd::numeric, s.provider_cost_usd::numeric,
           s.price_input::numeric, s.price_output::numeric, s.price_cache_read::numeric,
           s.price_cache_write::numeric, s.price_reasoning::numeric,
           s.price_per_request::numeric, s.reason,
           s.price_usd::numeric, s.job_customer_id, s.plan_id, s.plan_version,
           {charge_event_values("s")}
    FROM staged AS s
    JOIN new_events USING (event_id)
    RETURNING *
)"""


# Appends adjustments (re-rating) given as one array per column: a common table expression
# named ``appended``, like append_staged_charges.
_ARRAYS = ", ".join(
    f"${i}::text[]::numeric[]" if kind == "numeric" else f"${i}::{kind}[]"
    for i, (_, kind) in enumerate(INSERT_COLUMNS, start=1)
)
APPEND_ENTRIES = f"""
appended AS (
    INSERT INTO {_INSERT_INTO_LEDGER}
    SELECT *
    FROM unnest({_ARRAYS})
    RETURNING *
)"""

ENTRY_COLUMNS = f"""
id, event_id, kind, job_id, agent, model, provider, tier, catalog_version, long_context_from,
occurred_at, recorded_at, {_TOKENS}, event_count, unpriced_count, cost_usd, provider_cost_usd,
actual_cost_usd, price_input, price_output, price_cache_read, price_cache_write, price_reasoning,
price_per_request, reason, price_usd, customer_id, plan_id, plan_version
"""

SELECT_JOB_ENTRIES = f"""
SELECT {ENTRY_COLUMNS}
FROM ledger_entries
WHERE job_id = $1 AND id > $2
ORDER BY id
LIMIT $3
"""

# Events still unpriced: their entries' unpriced counts do not yet net to zero. The partial
# index ledger_entries_unpriced keeps this to the few entries that matter; every entry of an
# event has its instant, so each charge is found in one month partition. Beside each, its
# live booking's customer and price for that customer (null: unpriced for the customer too,
# as under a catalog-basis plan; known where the plan prices the model itself, or its
# basis is the provider's reported cost). The model is the event's, as sent.
SELECT_UNPRICED = f"""
SELECT e.event_id, COALESCE(e.sent_model, e.model) AS model, e.job_id, e.agent, e.provider,
       e.occurred_at, {_prefixed("e")}, u.reason, b.customer_id, b.price_usd, b.plan_id,
       b.plan_version
FROM (
    SELECT event_id, occurred_at, (array_agg(reason ORDER BY id DESC))[1] AS reason
    FROM ledger_entries
    WHERE unpriced_count <> 0 AND event_id > $1
    GROUP BY event_id, occurred_at
    HAVING sum(unpriced_count) > 0
) AS u
JOIN ledger_entries AS e
  ON e.event_id = u.event_id AND e.occurred_at = u.occurred_at AND e.kind = 'charge'
JOIN LATERAL (
    SELECT l.customer_id, sum(l.price_usd) AS price_usd,
           (array_agg(l.plan_id ORDER BY l.id DESC))[1] AS plan_id,
           (array_agg(l.plan_version ORDER BY l.id DESC))[1] AS plan_version
    FROM ledger_entries AS l
    WHERE l.event_id = e.event_id AND l.occurred_at = e.occurred_at
    GROUP BY l.catalog_version, l.long_context_from, l.model, l.tier, l.customer_id,
             l.price_usd IS NULL
    HAVING sum(l.event_count) = 1
) AS b ON true
WHERE ($2::text IS NULL OR COALESCE(e.sent_model, e.model) = $2)
  AND ($3::text IS NULL OR e.job_id = $3)
  AND ($5::text IS NULL OR b.customer_id = $5)
ORDER BY e.event_id
LIMIT $4
"""

# An event's live booking: the entries of one (version, rate, model, tier, customer, price
# known or not) whose event counts net to one. A charge is a booking; a re-rating reverses
# it and books the event anew, and so does a change of the customer or of whether the
# price is known. A re-pricing for the same customer adds the change of price alone (an
# entry counting no event, no token and no cost) to the booking, so the booking's price is
# the sum of its entries' and its plan version that of the latest one. Whether the price
# is known is part of the key (an unknown price is NULL, never a sum that nets to zero).
_BOOKING_KEY = """l.catalog_version, l.long_context_from, l.model, l.tier, l.customer_id,
             l.price_usd IS NULL"""
_BOOKING_SUMS = """l.catalog_version, l.long_context_from, l.model, l.tier,
           sum(l.cost_usd) AS cost_usd, sum(l.actual_cost_usd) AS actual_cost_usd,
           sum(l.unpriced_count) > 0 AS unpriced,
           sum(l.price_usd) AS price_usd, l.customer_id AS booked_customer_id,
           (array_agg(l.plan_id ORDER BY l.id DESC))[1] AS plan_id,
           (array_agg(l.plan_version ORDER BY l.id DESC))[1] AS plan_version"""
_BOOKED = """b.catalog_version, b.long_context_from, b.model AS booked_model, b.tier, b.cost_usd,
       b.actual_cost_usd, b.unpriced, b.price_usd, b.booked_customer_id, b.plan_id,
       b.plan_version"""

# Beside each booking: the job's customer now, and that customer's plan (what prices it
# today). An event is read off its charge (``e``, one per event); the entries of an event
# share its instant, so each lateral probe reads one month partition. The statements below
# add their conditions (``AND …``) to this one's WHERE. For a few events (a job's, the
# unpriced ones); a page of events since a time reads its bookings by range
# (``_page_of_bookings``).
_BOOKINGS = f"""
SELECT {event_fields("e")},
       {_BOOKED}, j.customer_id AS job_customer_id, c.plan_id AS customer_plan_id
FROM ledger_entries AS e
JOIN LATERAL (
    SELECT {_BOOKING_SUMS}
    FROM ledger_entries AS l
    WHERE l.event_id = e.event_id AND l.occurred_at = e.occurred_at
    GROUP BY {_BOOKING_KEY}
    HAVING sum(l.event_count) = 1
) AS b ON true
LEFT JOIN jobs AS j ON j.job_id = e.job_id
LEFT JOIN customers AS c ON c.id = j.customer_id
WHERE e.kind = 'charge'
"""


def _page_of_bookings(since: str, after: str, limit: str, condition: str = "") -> str:
    """A page of live bookings: the first ``limit`` events (charges) that occurred at or
    after ``since`` and come after the cursor ``after`` (an ``(occurred_at, event_id)`` row)
    in that order and meet ``condition`` (``AND …`` on ``e``, ``j``, ``c``), each with its
    live booking, in the same order. Every event of the page is answered, ``booked`` false
    (and the booking's columns NULL) for one without a live booking: the page is cut by
    events, so its caller pages on by them and a page never comes back short.

    The bookings are read by range, not event by event: every entry of an event has its
    instant, so the entries of the page's events are those between its first and its last
    instant (and, at those two instants, some of other events, which the join drops): one
    index range scan of the instants, grouped. A lateral probe per event (``_BOOKINGS``)
    cost an index search (the hash index on ``event_id`` ANDed with the instant's btree
    once events have several entries) and a heap visit per entry: five times the buffers of
    a page on a ledger re-rated three times.
    """
    return f"""
WITH page AS MATERIALIZED (
    SELECT {event_fields("e")},
           j.customer_id AS job_customer_id, c.plan_id AS customer_plan_id
    FROM ledger_entries AS e
    LEFT JOIN jobs AS j ON j.job_id = e.job_id
    LEFT JOIN customers AS c ON c.id = j.customer_id
    WHERE e.kind = 'charge'
      AND e.occurred_at >= {since}
      AND (e.occurred_at, e.event_id) > {after}
      {condition}
    ORDER BY e.occurred_at, e.event_id
    LIMIT {limit}
),
span AS (
    SELECT min(occurred_at) AS first_at, max(occurred_at) AS last_at FROM page
),
b AS (
    SELECT l.occurred_at, l.event_id, {_BOOKING_SUMS}
    FROM ledger_entries AS l, span
    WHERE l.occurred_at >= span.first_at AND l.occurred_at <= span.last_at
    GROUP BY l.occurred_at, l.event_id, {_BOOKING_KEY}
    HAVING sum(l.event_count) = 1
)
SELECT e.*, {_BOOKED}, b.event_id IS NOT NULL AS booked
FROM page AS e
LEFT JOIN b ON b.occurred_at = e.occurred_at AND b.event_id = e.event_id
ORDER BY e.occurred_at, e.event_id
"""


# Events that occurred since $1, a page at a time in (occurred_at, event_id) order.
SELECT_BOOKINGS_SINCE = _page_of_bookings("$1", "($2::timestamptz, $3::text)", "$4")

COUNT_EVENTS_SINCE = (
    "SELECT count(*) FROM ledger_entries WHERE kind = 'charge' AND occurred_at >= $1"
)

# Every event of the jobs $1, in (occurred_at, event_id) order: re-pricing one job.
SELECT_JOB_BOOKINGS = f"""
{_BOOKINGS}
  AND e.job_id = ANY($1::text[])
ORDER BY e.occurred_at, e.event_id
"""

# The events a re-pricing of plan $2 reaches: those of the jobs whose customer's plan is $2
# (or, when $3, of jobs without a customer or whose customer has no plan: LUC_DEFAULT_PLAN
# prices them), and those an entry of which names plan $2 (a customer that left the plan).
_OF_PLAN = """
(c.plan_id = $2
 OR ($3 AND c.plan_id IS NULL)
 OR EXISTS (SELECT 1 FROM ledger_entries AS p
            WHERE p.event_id = e.event_id AND p.occurred_at = e.occurred_at
              AND p.plan_id = $2))
"""

# The same for a page: an event of another plan's customer is probed alone, its own
# entries, in a scalar subquery. The planner turns an EXISTS under OR into a hashed set of
# every entry naming the plan, read from the whole ledger (every month) for each page: the
# cost of a page grew with the ledger, and a run's with its square.
_PAGE_OF_PLAN = """
AND (c.plan_id = $2
     OR ($3 AND c.plan_id IS NULL)
     OR (SELECT true FROM ledger_entries AS p
         WHERE p.event_id = e.event_id AND p.occurred_at = e.occurred_at
           AND p.plan_id = $2
         LIMIT 1))
"""

# Those that occurred since $1, a page at a time in (occurred_at, event_id) order.
SELECT_PLAN_BOOKINGS = _page_of_bookings("$1", "($4::timestamptz, $5::text)", "$6", _PAGE_OF_PLAN)

# One pass over the ledger: the hashed set of entries naming the plan is read once.
COUNT_PLAN_EVENTS_SINCE = f"""
SELECT count(*)
FROM ledger_entries AS e
LEFT JOIN jobs AS j ON j.job_id = e.job_id
LEFT JOIN customers AS c ON c.id = j.customer_id
WHERE e.kind = 'charge' AND e.occurred_at >= $1 AND {_OF_PLAN}
"""

SELECT_UNPRICED_BOOKINGS = f"""
{_BOOKINGS}
  AND (e.event_id, e.occurred_at) IN (
    SELECT event_id, occurred_at FROM ledger_entries
    WHERE unpriced_count <> 0
    GROUP BY event_id, occurred_at
    HAVING sum(unpriced_count) > 0
)
ORDER BY e.event_id
"""
