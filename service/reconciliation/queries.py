"""SQL owned by reconciliation (table ``rollup_reconciliation_days``, migration 0013).

The rollup holds ``models.MEASURES`` per UTC day × model × provider, upserted by the
statement that appends ledger entries (``service.recording.queries``), after the other
rollups, so every writer still visits the tables in one order. Over a month a group is
about thirty rows of it, so a reconciliation on UTC-day bounds and the /metrics window
never read the ledger. Any other range is summed from the ledger itself: its month
partitions and its ``occurred_at`` index keep that to the entries of the range.

The reasons of a drifting group are read from the ledger (and, for the answering model,
from the few charges whose event's attributes name one: index
``ledger_entries_upstream_model``), only when some group drifts.

Group keys are interpolated only from ``KEYS`` (a fixed set); every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.reconciliation.models import MEASURE_NAMES, MEASURES

TABLE = "rollup_reconciliation_days"

KEYS = {"model": "model", "provider": "provider", "day": "billing_day"}
"""group key → the ledger column it is (the rollup names its columns as the keys)."""

_ROLLUP_KEYS = "day, model, provider"  # its primary key, in order


def upsert(source: str, *, one_entry: bool = False) -> str:
    """Adds the entries of ``source`` (a relation with the ledger's columns) to the rollup;
    rows in key order, as every rollup upsert, so concurrent batches cannot deadlock.
    ``one_entry``: ``source`` holds at most one entry, added as it is (no grouping)."""
    added = ",\n    ".join(f"{name} = r.{name} + EXCLUDED.{name}" for name in MEASURE_NAMES)
    if one_entry:
        return f"""
INSERT INTO {TABLE} AS r ({_ROLLUP_KEYS}, {", ".join(MEASURE_NAMES)})
SELECT billing_day, model, provider, {", ".join(m.of_entry() for m in MEASURES)}
FROM {source}
ON CONFLICT ({_ROLLUP_KEYS}) DO UPDATE SET {added}
"""
    return f"""
INSERT INTO {TABLE} AS r ({_ROLLUP_KEYS}, {", ".join(MEASURE_NAMES)})
SELECT billing_day, model, provider,
       {", ".join(m.over_ledger() for m in MEASURES)}
FROM {source}
GROUP BY billing_day, model, provider
ORDER BY billing_day, model, provider
ON CONFLICT ({_ROLLUP_KEYS}) DO UPDATE SET {added}
"""


def upsert_appended(*, one_entry: bool = False) -> str:
    """The upsert as a common table expression over ``appended``, the entries the
    statement appends (``service.recording.queries``)."""
    return f"rollup_reconciliation AS ({upsert('appended', one_entry=one_entry)})"


def _sums() -> str:
    return ", ".join(f"COALESCE(sum({name}), 0) AS {name}" for name in MEASURE_NAMES)


def from_rollup(keys: Sequence[str]) -> str:
    """The groups of ``keys`` over the UTC days [$1, $2) (either open when NULL)."""
    columns = ", ".join(keys)
    return f"""
SELECT {columns}, {_sums()}
FROM {TABLE}
WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day < $2)
GROUP BY {columns}
ORDER BY {columns}
"""


def from_ledger(keys: Sequence[str]) -> str:
    """The groups of ``keys`` over the entries of events in [$1, $2) (either open)."""
    columns = ", ".join(KEYS[k] for k in keys)
    named = ", ".join(f"{KEYS[k]} AS {k}" for k in keys)
    return f"""
SELECT {named}, {", ".join(f"{m.over_ledger()} AS {m.name}" for m in MEASURES)}
FROM ledger_entries
WHERE ($1::timestamptz IS NULL OR occurred_at >= $1)
  AND ($2::timestamptz IS NULL OR occurred_at < $2)
GROUP BY {columns}
ORDER BY {columns}
"""


# The entries that are compared: those of reported, priced events (see models.MEASURES).
_COMPARED = "l.provider_cost_usd IS NOT NULL AND l.cost_usd IS NOT NULL"
_IN_RANGE = """($1::timestamptz IS NULL OR {t}.occurred_at >= $1)
  AND ($2::timestamptz IS NULL OR {t}.occurred_at < $2)"""


def reason_counts(keys: Sequence[str]) -> str:
    """Per group and (catalog version, model) the compared events that hold what a reason
    names (``reasons.COUNTS``). $3 is the common long-context threshold; $4–$6 the
    (version, model, threshold) triples that differ from it.

    Counts are sums of ``event_count`` over entries whose token counts match: a reversal
    carries its charge's counts negated and its version's prices, so an event re-rated to
    another version counts under the version that prices it now, once."""
    named = "".join(f"l.{KEYS[k]} AS {k}, " for k in keys)
    grouped = "".join(f"l.{KEYS[k]}, " for k in keys)
    return f"""
SELECT {named}l.catalog_version, l.model AS priced_model,
       COALESCE(sum(l.event_count) FILTER (
           WHERE l.cached_input_tokens <> 0 AND l.price_cache_read = l.price_input
             AND l.price_input <> 0), 0) AS cache_read_at_input,
       COALESCE(sum(l.event_count) FILTER (
           WHERE l.cache_write_tokens <> 0 AND l.price_cache_write = l.price_input
             AND l.price_input <> 0), 0) AS cache_write_at_input,
       COALESCE(sum(l.event_count) FILTER (
           WHERE abs(l.input_tokens) >= COALESCE(t.min_input_tokens, $3)), 0) AS long_context,
       COALESCE(sum(l.event_count) FILTER (WHERE l.reasoning_tokens <> 0), 0) AS reasoning
FROM ledger_entries AS l
LEFT JOIN unnest($4::bigint[], $5::text[], $6::bigint[])
          AS t(catalog_version, model, min_input_tokens)
       ON t.catalog_version = l.catalog_version AND t.model = l.model
WHERE {_IN_RANGE.format(t="l")}
  AND {_COMPARED}
GROUP BY {grouped}l.catalog_version, l.model
"""


def upstream_models(keys: Sequence[str]) -> str:
    """Per group, (catalog version, model) and answering model, the compared events whose
    attributes name the model that answered (``attributes.upstream_model``)."""
    named = "".join(f"l.{KEYS[k]} AS {k}, " for k in keys)
    grouped = "".join(f"l.{KEYS[k]}, " for k in keys)
    return f"""
SELECT {named}l.catalog_version, l.model AS priced_model,
       e.attributes ->> 'upstream_model' AS upstream_model, sum(l.event_count) AS events
FROM ledger_entries AS e
JOIN ledger_entries AS l
  -- an entry's occurred_at is its event's: the equality lets each probe skip other months
  ON l.event_id = e.event_id AND l.occurred_at = e.occurred_at
WHERE e.kind = 'charge' AND e.attributes ? 'upstream_model'
  AND {_IN_RANGE.format(t="e")}
  AND {_COMPARED}
GROUP BY {grouped}l.catalog_version, l.model, e.attributes ->> 'upstream_model'
HAVING sum(l.event_count) <> 0
"""


# /metrics: the current and the previous UTC day, per model and provider. Day-first primary
# key: a scrape reads two days' rows, however long the ledger.
DRIFT_WINDOW_DAYS = 2
DRIFT_WINDOW = f"""
SELECT model, provider, {_sums()}
FROM {TABLE}
WHERE day > (now() AT TIME ZONE 'UTC')::date - {DRIFT_WINDOW_DAYS}
GROUP BY model, provider
ORDER BY model, provider
"""
