"""``luc_catalog_drift_ratio`` and the series beside it: reconciliation (SPEC §5) on
/metrics, read from ``rollup_reconciliation_days`` at scrape time like the other ledger
series (a scrape reads two days of model × provider rows, however long the ledger).

The window is the current and the previous UTC day (``queries.DRIFT_WINDOW``): between 24
and 48 hours of calls, never the few minutes after midnight alone. ``GET
/v1/reconciliation?group_by=model,provider&from=<yesterday>T00:00:00Z`` gives the same
figures, to the last digit, with the reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from service.metrics.exposition import GaugeFamily, Samples
from service.reconciliation.models import Totals
from service.reconciliation.service import DRIFT_MIN_EVENTS, difference_ratio, drifts

LABELS = ("model", "provider")
RATIO = GaugeFamily(
    "luc_catalog_drift_ratio",
    "(provider-reported - catalog) / catalog cost of the events whose provider reported "
    "a cost and the catalog priced, over the current and previous UTC day; absent when "
    "that catalog cost is 0",
    LABELS,
)
EVENTS = GaugeFamily(
    "luc_catalog_drift_events",
    "Events whose provider reported a cost, priced or not (luc_catalog_drift_ratio is over "
    "the priced ones), current and previous UTC day; a model drifts only over at least "
    f"{DRIFT_MIN_EVENTS}",
    LABELS,
)
DRIFTING = GaugeFamily(
    "luc_catalog_drifting",
    "1 when the model drifts on the provider over the current and previous UTC day, as GET "
    "/v1/reconciliation decides it (exact decimals: beyond the tolerance over at least "
    f"{DRIFT_MIN_EVENTS} reported events), else 0; what LucCatalogDrift fires on",
    LABELS,
)
TOLERANCE = GaugeFamily(
    "luc_reconciliation_tolerance",
    "LUC_RECONCILIATION_TOLERANCE: the share by which provider-reported cost may differ "
    "from the catalog's before a model drifts",
)


def drift_series(
    rows: Iterable[Any], tolerance: Decimal | None
) -> Iterator[tuple[GaugeFamily, Samples]]:
    """The drift series of the window's rows (``queries.DRIFT_WINDOW``)."""
    ratio: Samples = []
    events: Samples = []
    drifting: Samples = []
    for r in rows:
        totals = Totals.from_row(r)
        key = (r["model"], r["provider"])
        if totals.reported_events:
            events.append((key, float(totals.reported_events)))
            if tolerance is not None:
                # Decided here on the exact figures: the ratio as a float compared with the
                # tolerance as a float disagreed with REST at the boundary (a ratio of
                # 0.01000000000000000002 drifts at 0.01, its float does not).
                drifting.append((key, 1.0 if drifts(totals, tolerance) else 0.0))
        value = difference_ratio(totals)
        if value is not None:
            ratio.append((key, float(value)))
    yield RATIO, ratio
    yield EVENTS, events
    yield DRIFTING, drifting
    yield TOLERANCE, [] if tolerance is None else [((), float(tolerance))]
