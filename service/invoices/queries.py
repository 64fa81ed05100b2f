"""SQL owned by invoices (tables ``invoice_*`` and ``invoices``)."""

from service.pricing.catalog import STUB_PROVIDER
from service.pricing.models import PRICE_CLASSES, RATE_MARKER
from service.tokens import TOKEN_FIELDS

_TOKEN_SUMS = ", ".join(f"sum(l.{name}) AS {name}" for name in TOKEN_FIELDS)
_PRICES = ", ".join(f"l.price_{name}" for name in PRICE_CLASSES)

# Drafting ----------------------------------------------------------------------------------

JOB_HAS_USAGE = "SELECT EXISTS (SELECT 1 FROM ledger_entries WHERE job_id = $1)"

# The entries the next invoice covers of those ``{scope}`` selects (a job's, a customer's
# month): every entry no invoice covers yet, except the bookings of events unpriced for
# their customer too (no catalog version prices them, and no plan does: price unknown).
# Those wait for a catalog version that prices them, and then go, with their reversal and
# priced re-booking, on a follow-up. An event the catalog cannot price but its customer's
# plan can (the plan's own price for the model, or an ``actual`` basis and a reported
# cost) is billed at that price now; a catalog version that prices it later re-books it,
# and the follow-up bills the reversal and the re-booking: the difference. An event's
# bookings of unknown price hold only entries of unknown price (``ledger.queries``:
# whether the price is known is part of a booking's key), so its unknown-price entries net
# to a live booking exactly while it is unpriced for its customer. (Every entry of an event
# has its instant: the probe reads one month partition.)
_UNINVOICED_ENTRY_IDS = """
SELECT l.id, l.customer_id
FROM ledger_entries AS l
WHERE {scope}
  AND NOT EXISTS (SELECT 1 FROM invoice_entries AS i WHERE i.ledger_entry_id = l.id)
  AND (l.catalog_version IS NOT NULL OR l.price_usd IS NOT NULL OR NOT EXISTS (
        SELECT 1 FROM ledger_entries AS u
        WHERE u.event_id = l.event_id AND u.occurred_at = l.occurred_at
          AND u.price_usd IS NULL
        HAVING sum(u.unpriced_count) > 0))
ORDER BY l.id
"""
# The events of those ``{scope}`` selects that are unpriced for their customer: no catalog
# version prices them and their price is unknown (see above). Events the catalog cannot
# price but a plan does are billed, and not counted here.
_COUNT_UNPRICED_EVENTS = """
SELECT count(*) FROM (
    SELECT l.event_id FROM ledger_entries AS l
    WHERE {scope} AND l.unpriced_count <> 0 AND l.price_usd IS NULL
    GROUP BY l.event_id
    HAVING sum(l.unpriced_count) > 0
) AS still_unpriced
"""

SELECT_UNINVOICED_ENTRY_IDS = _UNINVOICED_ENTRY_IDS.format(scope="l.job_id = $1")

# The entries ``$1`` (priced for no customer: before their job had one) with the invoice
# that last billed their event's entries priced for no customer: what a reversal among them
# takes back was paid on that invoice, by whoever it addressed. NULL: their event's entries
# were never billed (a charge and its reversal, which net to nothing).
SELECT_NO_CUSTOMER_BILLED_IN = """
SELECT l.id, billed.number AS billed_in, billed.issued_at AS billed_at,
       billed.customer AS billed_to
FROM ledger_entries AS l
LEFT JOIN LATERAL (
    SELECT i.number, i.issued_at, i.canonical::jsonb -> 'customer' AS customer
    FROM ledger_entries AS b
    JOIN invoice_entries AS c ON c.ledger_entry_id = b.id
    JOIN invoices AS i ON i.number = c.invoice_number
    WHERE b.event_id = l.event_id AND b.occurred_at = l.occurred_at
      AND b.customer_id IS NULL
    ORDER BY i.issued_at DESC, i.number DESC
    LIMIT 1
) AS billed ON true
WHERE l.id = ANY($1::bigint[])
ORDER BY billed.issued_at, billed.number, l.id
"""

# The entries ``$1`` with the rate of their plan version's own price for the model
# (``plan_long_context_from``): the highest threshold of its long-context entries that the
# event's input tokens reach, as ``pricing.models.ModelPrice.rate_for`` chooses it when
# pricing the event (the version's ``models`` hold the entries as given). A plan's thresholds
# need not be the catalog's, so the catalog's rate alone does not give one unit price per
# line. A reversal carries its booking's tokens negated, hence ``abs``. NULL: the plan's
# base prices, or no own price for the model (markup, or no plan).
_WITH_PLAN_RATE = """
SELECT l.*,
       (SELECT max((lc ->> 'min_input_tokens')::numeric)
        FROM plan_versions AS pv
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(pv.models -> l.model -> 'long_context') = 'array'
                 THEN pv.models -> l.model -> 'long_context' ELSE '[]'::jsonb END) AS lc
        WHERE pv.id = l.plan_version
          AND (lc ->> 'min_input_tokens')::numeric <= abs(l.input_tokens)
       )::bigint AS plan_long_context_from
FROM ledger_entries AS l
WHERE l.id = ANY($1::bigint[])
"""

# A re-pricing's change of price to an event billed before: no event, no token, no cost
# (``recording.repricing``; every other entry counts its event, +1 or -1). Its own line,
# after the usage of the same key: folded into a line of new usage at the same plan
# version, its amount was added to that usage's, and the line's terms (tokens × unit
# prices, or basis × (1 + markup)) no longer gave its amount.
_PRICE_CHANGE = (
    "(l.event_count = 0 AND COALESCE(l.cost_usd, 0) = 0 AND l.input_tokens = 0"
    " AND l.output_tokens = 0)"
)

# Lines of a draft: one per job × agent × model × provider × catalog version × rate × plan
# version × the plan's own rate (lines at a plan's own price are then made one per rate of
# that price, whatever the catalog's: ``service.draft_lines``) (the rates, the prices and
# the plan version are part of the key so a line can
# only ever have one unit price and one way of pricing: calls at a long-context rate are a
# line apart, and so are entries priced by another plan version, such as a re-pricing's
# change of price). A line bills the customer's price of its entries; their catalog and
# actual costs are kept for the internal view. Entries of events no catalog version
# prices (catalog_version NULL) are a line of their own, billed at their plan's price
# (their unit prices NULL, their cost unknown); an unpriced booking and its reversal on
# the same invoice net to zero and make no line (``service._is_empty``). NULLS FIRST: the
# reversal of an unpriced booking billed before comes just before its priced re-booking.
SELECT_DRAFT_LINES = f"""
SELECT l.job_id, l.agent, l.model, p.name AS model_name, l.provider, l.catalog_version,
       l.long_context_from, l.tier, l.plan_id, l.plan_version, l.plan_long_context_from,
       sum(l.event_count) AS events, {_TOKEN_SUMS}, {_PRICES},
       COALESCE(sum(l.price_usd), 0) AS amount_usd, sum(l.cost_usd) AS cost_usd,
       sum(l.provider_cost_usd) AS provider_cost_usd, sum(l.actual_cost_usd) AS actual_cost_usd
FROM ({_WITH_PLAN_RATE}) AS l
LEFT JOIN catalog_prices AS p ON p.version_id = l.catalog_version AND p.model_id = l.model
GROUP BY l.job_id, l.agent, l.model, p.name, l.provider, l.catalog_version,
         l.long_context_from, l.tier, l.plan_id, l.plan_version, l.plan_long_context_from,
         {_PRICES}, {_PRICE_CHANGE}
ORDER BY l.job_id, l.agent, l.model, l.provider, l.catalog_version NULLS FIRST,
         l.long_context_from NULLS FIRST, l.plan_id NULLS FIRST, l.plan_version NULLS FIRST,
         l.plan_long_context_from NULLS FIRST, {_PRICE_CHANGE}
"""

SELECT_PERIOD = """
SELECT min(occurred_at) AS period_start, max(occurred_at) AS period_end
FROM ledger_entries WHERE id = ANY($1::bigint[])
"""

COUNT_UNPRICED_EVENTS = _COUNT_UNPRICED_EVENTS.format(scope="l.job_id = $1")

# A customer's month: the entries priced for the customer (``customer_id``), and entries
# priced for no customer of the jobs it owns now (recorded before the job had one: their
# re-pricing reversals are priced for no customer too, so they net out here, and the job's
# entries re-booked for the customer come with them), unless an entry of their event
# priced for no customer was billed already: the reversal of what was billed is then owed
# to whoever paid it, on the job's credit note (``service._draft``), never netted against
# the customer's re-booking (which would bill the customer nothing and hand back the credits
# the re-booking drew as money). $2, $3: the month's bounds, which prune the ledger's
# monthly partitions.
_CUSTOMER_MONTH = """
  l.occurred_at >= $2 AND l.occurred_at < $3
  AND (l.customer_id = $1
       OR (l.customer_id IS NULL
           AND EXISTS (SELECT 1 FROM jobs AS j WHERE j.job_id = l.job_id AND j.customer_id = $1)
           AND NOT EXISTS (
               SELECT 1 FROM ledger_entries AS b
               JOIN invoice_entries AS c ON c.ledger_entry_id = b.id
               WHERE b.event_id = l.event_id AND b.occurred_at = l.occurred_at
                 AND b.customer_id IS NULL)))
"""

SELECT_UNINVOICED_MONTH_ENTRY_IDS = _UNINVOICED_ENTRY_IDS.format(scope=_CUSTOMER_MONTH)
COUNT_UNPRICED_MONTH_EVENTS = _COUNT_UNPRICED_EVENTS.format(scope=_CUSTOMER_MONTH)

# What the month's earlier invoices billed: its usage, and the minimum top-ups. Its usage
# billed on jobs' invoices (the month's entries of a job invoiced on its own) is the month's
# usage too: the minimum tops the month up, not what its own invoices billed. $4: the month.
SELECT_MONTH_BILLED = f"""
SELECT COALESCE(sum(l.amount_usd) FILTER (WHERE l.line_type = 'usage'), 0)
       + (SELECT COALESCE(sum(l.price_usd), 0)
          FROM ledger_entries AS l
          JOIN invoice_entries AS c ON c.ledger_entry_id = l.id
          JOIN invoices AS j ON j.number = c.invoice_number
          WHERE j.month IS NULL AND {_CUSTOMER_MONTH}) AS usage_usd,
       COALESCE(sum(l.amount_usd) FILTER (WHERE l.line_type = 'minimum'), 0) AS minimum_usd
FROM invoices AS i JOIN invoice_lines AS l ON l.invoice_number = i.number
WHERE i.customer_id = $1 AND i.month = $4
"""

# The plan that prices the month now (NULL: priced by no plan): the plan of the latest
# entry, for the customer, of the month's first event recorded (of those still the
# customer's, when any is; the stub's answers aside). A re-pricing moves it, as it moves
# that event's price; the customer's change of plan alone does not, nor does a late call of
# the month priced under the new plan: read from the month's latest entry, one such call
# made the month follow the new plan's minimum (giving back, or charging, a whole top-up).
# No row: the customer has no entry of its own in the month.
SELECT_MONTH_PLAN = f"""
SELECT (array_agg(l.plan_id ORDER BY l.id DESC))[1] AS plan_id
FROM ledger_entries AS l
WHERE l.customer_id = $1 AND l.occurred_at >= $2 AND l.occurred_at < $3
  -- The stub's answers are priced by no plan (never billed): they say nothing of one.
  AND l.provider <> '{STUB_PROVIDER}'
GROUP BY l.event_id, l.occurred_at
ORDER BY sum(l.event_count) > 0 DESC, min(l.id)
LIMIT 1
"""

# Whether the customer has entries in the month at all, billed anywhere or not.
MONTH_HAS_ENTRIES = f"""
SELECT EXISTS (SELECT 1 FROM ledger_entries AS l WHERE {_CUSTOMER_MONTH})
"""

SELECT_MONTH_INVOICE_NUMBERS = """
SELECT number FROM invoices WHERE customer_id = $1 AND month = $2 ORDER BY issued_at, number
"""


SELECT_LATEST_MONTH_INVOICE = """
SELECT number FROM invoices WHERE customer_id = $1 AND month = $2 AND kind = 'invoice'
ORDER BY issued_at DESC, number DESC LIMIT 1
"""

# The invoices other than the job's own (its customer's monthly ones) that billed entries of
# job $1, in issue order.
SELECT_JOB_BILLED_ELSEWHERE = """
SELECT i.number
FROM invoices AS i
WHERE i.job_id IS DISTINCT FROM $1
  AND i.number IN (SELECT c.invoice_number
                   FROM ledger_entries AS l
                   JOIN invoice_entries AS c ON c.ledger_entry_id = l.id
                   WHERE l.job_id = $1)
ORDER BY i.issued_at, i.number
"""

SELECT_JOB_INVOICE_NUMBERS = """
SELECT number FROM invoices WHERE job_id = $1 ORDER BY issued_at, number
"""


def _billed_before(kinds: str) -> str:
    """The latest document of ``kinds`` that billed an entry of an event whose later entries
    (re-rating reversals and re-bookings) $1 holds, booked to the same party. Every entry
    of an event has its instant: each probe reads one month partition."""
    return f"""
SELECT i.number
FROM ledger_entries AS mine
JOIN ledger_entries AS earlier
  ON earlier.event_id = mine.event_id AND earlier.occurred_at = mine.occurred_at
 AND earlier.id <> mine.id
JOIN invoice_entries AS c ON c.ledger_entry_id = earlier.id
JOIN invoices AS i ON i.number = c.invoice_number{kinds}
WHERE mine.id = ANY($1::bigint[])
  -- The same party's booking: a job moved to another customer has the event billed to
  -- both, and the credit note corrects the invoice of the party it credits.
  AND earlier.customer_id IS NOT DISTINCT FROM mine.customer_id
ORDER BY i.issued_at DESC, i.number DESC
LIMIT 1
"""


# The invoice a credit note corrects.
SELECT_CORRECTED_INVOICE = _billed_before(" AND i.kind = 'invoice'")

# The document a draft with no earlier invoice of its own follows up (an invoice or a
# credit note of the other route: a job's usage billed on its customer's monthly invoice,
# or a month's on its jobs' invoices), when it re-books calls that document billed.
SELECT_FOLLOWED_INVOICE = _billed_before("")

SELECT_LATEST_JOB_INVOICE = """
SELECT number FROM invoices WHERE job_id = $1 AND kind = 'invoice'
ORDER BY issued_at DESC, number DESC LIMIT 1
"""

# Issuing -----------------------------------------------------------------------------------

# The next number of the series (invoices, credit notes) and year. The upsert takes that
# row's lock until commit: concurrent issues of a series queue here and each sees the number
# the previous one committed (READ COMMITTED re-reads the row after the wait), so numbers
# are consecutive; a rollback returns the number.
# Every issue, of either kind and any year, queues here before it reads the clock: the
# year is not known before the lock (it comes from the instant read after it), so the lock
# cannot be the year's counter row. Self-exclusive; plain reads of the counters pass.
LOCK_COUNTERS = "LOCK TABLE invoice_counters IN SHARE ROW EXCLUSIVE MODE"

NEXT_NUMBER = """
INSERT INTO invoice_counters AS c (series, year, last_number) VALUES ($1, $2, 1)
ON CONFLICT (series, year) DO UPDATE SET last_number = c.last_number + 1
RETURNING last_number
"""

INSERT_INVOICE = """
INSERT INTO invoices (number, kind, year, seq, job_id, customer_id, issued_at, due_date,
                      currency, subtotal_usd, rounding_rule, rounding_usd, total_usd,
                      covered_entries, unpriced_events, follow_up_of, corrects, canonical,
                      digest, month)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20)
"""

INSERT_LOGO = """
INSERT INTO invoice_logos (sha256, media_type, data) VALUES ($1, $2, $3)
ON CONFLICT (sha256) DO NOTHING
"""

# Columns of an invoice line, with the type of INSERT_LINES' arrays. Token sums are numeric
# (migration 0007): a line may sum more than bigint holds.
LINE_COLUMNS = (
    ("position", "int"),
    ("agent", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("catalog_version", "bigint"),
    (RATE_MARKER, "bigint"),
    ("tier", "text"),
    ("events", "bigint"),
    *((name, "numeric") for name in TOKEN_FIELDS),
    *((f"price_{name}", "numeric") for name in PRICE_CLASSES),
    ("amount_usd", "numeric"),
    ("cost_usd", "numeric"),
    ("actual_cost_usd", "numeric"),
    ("line_type", "text"),
    ("job_id", "text"),
    ("plan_id", "text"),
    ("plan_version", "bigint"),
    ("provider_cost_usd", "numeric"),
)
INSERT_LINES = f"""
INSERT INTO invoice_lines (invoice_number, {", ".join(name for name, _ in LINE_COLUMNS)})
SELECT $1, *
FROM unnest({", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(LINE_COLUMNS, start=2))})
"""

INSERT_ENTRIES = """
INSERT INTO invoice_entries (invoice_number, ledger_entry_id)
SELECT $1, unnest($2::bigint[])
"""

# Reading -----------------------------------------------------------------------------------

SELECT_INVOICE = """
SELECT number, kind, job_id, issued_at, total_usd, canonical, digest
FROM invoices WHERE number = $1
"""

# In issue order; keyset on (issued_at, number), the cursor being the last number listed.
# Of one job ($1): its own invoices and every other that billed an entry of it (its
# customer's monthly invoices), as the job's preview names them.
SELECT_INVOICES = """
SELECT number, kind, job_id, customer_id, month, issued_at, due_date, subtotal_usd,
       rounding_usd, total_usd, covered_entries, unpriced_events, follow_up_of, corrects,
       digest,
       -- As the issued document writes them (absent from invoices issued before credits)
       canonical::jsonb ->> 'credits_applied_usd' AS credits_applied_usd,
       canonical::jsonb ->> 'amount_due_usd' AS amount_due_usd
FROM invoices
WHERE ($1::text IS NULL
       OR job_id = $1
       OR number IN (SELECT c.invoice_number
                     FROM ledger_entries AS l
                     JOIN invoice_entries AS c ON c.ledger_entry_id = l.id
                     WHERE l.job_id = $1))
  AND ($2::text IS NULL
       OR (issued_at, number) > (SELECT issued_at, number FROM invoices WHERE number = $2))
ORDER BY issued_at, number
LIMIT $3
"""

INVOICE_EXISTS = "SELECT EXISTS (SELECT 1 FROM invoices WHERE number = $1)"

SELECT_INVOICE_COLUMNS = """
SELECT number, kind, job_id, customer_id, issued_at, due_date, currency, subtotal_usd,
       rounding_rule, rounding_usd, total_usd, covered_entries, unpriced_events, follow_up_of,
       corrects
FROM invoices WHERE number = $1
"""

# Lines issued before their catalog cost was recorded apart billed the catalog cost: their
# amount is their cost (they have no line_type: that came later). A line of events no
# catalog version prices has no catalog cost: NULL, never its amount. Lines issued before
# invoices billed the price (no line_type) have no margin to show.
SELECT_INTERNAL_LINES = """
SELECT position,
       CASE WHEN line_type IS NULL THEN COALESCE(cost_usd, amount_usd) ELSE cost_usd END
           AS cost_usd,
       provider_cost_usd, actual_cost_usd, amount_usd, line_type
FROM invoice_lines WHERE invoice_number = $1 ORDER BY position
"""

SELECT_LOGO = "SELECT media_type, data FROM invoice_logos WHERE sha256 = $1"

SELECT_INVOICE_ENTRY_IDS = """
SELECT ledger_entry_id FROM invoice_entries WHERE invoice_number = $1 ORDER BY ledger_entry_id
"""
