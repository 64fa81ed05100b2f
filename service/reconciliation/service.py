"""Answering a reconciliation: groups of catalog-priced against provider-reported cost,
the ratio of their difference, the drift flag and, for a drifting group, its reasons."""

from __future__ import annotations

import decimal
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from service.db import Connection
from service.errors import InvalidRequestError
from service.money import EXACT
from service.pricing.catalog import Catalog
from service.reconciliation import queries, reasons
from service.reconciliation.models import ReconciliationRow, Totals

GROUP_KEYS = tuple(queries.KEYS)
"""What ``group_by`` may name."""

DRIFT_MIN_EVENTS = 20
"""Drift is flagged over at least this many reported events (SPEC §5: "over at least 20
reported events"), priced or not: fewer are too few to tell a catalog error from a handful
of odd calls. The ratio itself is over the priced ones (``Totals``)."""

RATIO_DIGITS = 20
# Away from zero: a ratio is never shown smaller than it is, so a group whose ratio shows
# above the tolerance drifts, and one that drifts shows above it (for a tolerance of at
# most RATIO_DIGITS significant digits). Half-even showed 0.01 for a ratio of
# 0.0100000000000000000000000001 beside "drift": true at a tolerance of 0.01.
_RATIO = decimal.Context(
    prec=RATIO_DIGITS,
    rounding=decimal.ROUND_UP,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)


def group_keys(group_by: str | None) -> list[str]:
    """The keys of a ``group_by`` parameter (comma-separated, repeats ignored), or
    ``InvalidRequestError`` (400) naming what is wrong."""
    keys = [k.strip() for k in (group_by or "").split(",")]
    if not any(keys):
        raise InvalidRequestError(
            f"group_by is required: one or more of {', '.join(GROUP_KEYS)}, comma-separated",
            status_code=400,
        )
    for key in keys:
        if key not in GROUP_KEYS:
            shown = "an empty key" if not key else f"unknown key {key!r}"
            raise InvalidRequestError(
                f"group_by: {shown}; choose from {', '.join(GROUP_KEYS)}", status_code=400
            )
    return list(dict.fromkeys(keys))


def difference_ratio(totals: Totals) -> Decimal | None:
    """Provider minus catalog cost over catalog cost, to ``RATIO_DIGITS`` significant
    digits, rounded away from zero; None when the catalog cost is zero (no ratio to take)."""
    if not totals.cost_usd:
        return None
    return _RATIO.divide(totals.difference_usd, totals.cost_usd)


def drifts(totals: Totals, tolerance: Decimal) -> bool:
    """|difference| > tolerance × catalog cost over at least ``DRIFT_MIN_EVENTS`` reported
    events: the exact test behind |difference_ratio| > tolerance (no rounded ratio). A
    group of 19 priced and 1 unpriced reported events answered ``reported_events`` 20, a
    ratio beyond the tolerance and no drift, which a reader of SPEC's rule takes for a
    wrong flag."""
    if totals.reported_events < DRIFT_MIN_EVENTS or not totals.cost_usd:
        return False
    # copy_abs, not abs(): abs() rounds to the context's 28 digits.
    return totals.difference_usd.copy_abs() > EXACT.multiply(tolerance, totals.cost_usd.copy_abs())


def _utc_day(value: datetime | None) -> date | None:
    """The UTC date of ``value`` when it is a UTC midnight, else ValueError."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    if utc.time() != time(0):
        raise ValueError("not a UTC midnight")
    return utc.date()


def _is_empty(totals: Totals) -> bool:
    """A group whose entries cancel out entirely (its events re-rated into another group)."""
    return not any(
        (
            totals.events,
            totals.reported_events,
            totals.cost_usd,
            totals.provider_cost_usd,
            totals.unpriced_provider_cost_usd,
        )
    )


async def reconcile(
    conn: Connection,
    *,
    keys: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    tolerance: Decimal,
    catalog: Catalog,
    use_rollup: bool = True,
) -> list[ReconciliationRow]:
    """Every group of ``keys`` with events in [start, end), compared, flagged, explained.

    Served from the rollup when both bounds are UTC midnights (or open), else summed from
    the ledger; both give the same rows to the last digit (``use_rollup=False`` forces the
    ledger, for the tests that compare them).
    """
    try:
        days = (_utc_day(start), _utc_day(end)) if use_rollup else None
    except ValueError:
        days = None
    if days is not None:
        found = await conn.fetch(queries.from_rollup(keys), *days)
    else:
        found = await conn.fetch(queries.from_ledger(keys), start, end)
    groups = [(r, Totals.from_row(r)) for r in found]
    flagged = [
        (r, totals, drifts(totals, tolerance)) for r, totals in groups if not _is_empty(totals)
    ]
    findings = (
        await _findings(conn, keys, start, end, catalog) if any(d for *_, d in flagged) else {}
    )
    rows = []
    for r, totals, drift in flagged:
        group = tuple(r[k] for k in keys)
        compared = totals.reported_events - totals.unpriced_reported_events
        explained = (
            reasons.reasons(findings.get(group, reasons.Findings()), catalog, compared)
            if drift
            else []
        )
        rows.append(
            ReconciliationRow(
                keys={k: r[k] for k in keys},
                totals=totals,
                difference_ratio=difference_ratio(totals),
                drift=drift,
                reasons=explained,
            )
        )
    return rows


async def _findings(
    conn: Connection,
    keys: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    catalog: Catalog,
) -> dict[tuple[Any, ...], reasons.Findings]:
    """What the reason queries find per group (the tuple of its key values)."""
    by_group: dict[tuple[Any, ...], reasons.Findings] = defaultdict(reasons.Findings)
    versions, models, limits = reasons.thresholds(catalog)
    counted = await conn.fetch(
        queries.reason_counts(keys),
        start,
        end,
        reasons.LONG_CONTEXT_INPUT_TOKENS,
        versions,
        models,
        limits,
    )
    for r in counted:
        by_group[tuple(r[k] for k in keys)].add_counts(r)
    for r in await conn.fetch(queries.upstream_models(keys), start, end):
        by_group[tuple(r[k] for k in keys)].add_upstream(r, catalog)
    return by_group
