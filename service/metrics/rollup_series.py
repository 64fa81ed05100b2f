"""Series that come from committed ledger data, not from process memory.

Cost and token totals are read from the ``rollup_usage`` projection at scrape time, so
they survive restarts, agree with REST to the last digit the float allows, and are the
same whichever replica or worker answers the scrape. Because every instance reports the
whole ledger, queries must not sum them across instances: dashboards take
``max without (instance)`` first. (Multiprocess mode would instead make each process
count only what it ingested, and lose history at every restart.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.db import Connection
from service.metrics import queries
from service.metrics.drift_series import drift_families
from service.reconciliation import queries as reconciliation
from service.tokens import TOKEN_CLASSES


@dataclass
class LedgerSnapshot:
    usage: list[Any] = field(default_factory=list)
    catalog: Any | None = None
    budgets: list[Any] = field(default_factory=list)
    drift: list[Any] = field(default_factory=list)
    """``rollup_reconciliation_days`` over the drift window, per model and provider."""
    tolerance: Decimal | None = None
    """``LUC_RECONCILIATION_TOLERANCE``, shown beside the drift ratios."""
    database_up: bool = False


async def read_snapshot(conn: Connection, tolerance: Decimal | None = None) -> LedgerSnapshot:
    return LedgerSnapshot(
        usage=list(await conn.fetch(queries.USAGE)),
        catalog=await conn.fetchrow(queries.CATALOG_IN_FORCE),
        budgets=list(await conn.fetch(queries.BUDGET_SPEND)),
        drift=list(await conn.fetch(reconciliation.DRIFT_WINDOW)),
        tolerance=tolerance,
        database_up=True,
    )


class LedgerCollector(Collector):
    """Yields the latest snapshot; the /metrics handler refreshes it before each render."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = LedgerSnapshot()

    def update(self, snapshot: LedgerSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # series vary with the ledger; describing none skips the eager collect

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self._snapshot
        up = GaugeMetricFamily(
            "luc_database_up", "1 when the last scrape could read the ledger from PostgreSQL"
        )
        up.add_metric([], 1.0 if snap.database_up else 0.0)
        yield up
        if not snap.database_up:
            return
        labels = ["agent", "model", "provider", "tier"]
        cost = CounterMetricFamily(
            "luc_cost_usd", "Catalog-priced cost in USD, from the ledger", labels=labels
        )
        provider_cost = CounterMetricFamily(
            "luc_provider_cost_usd", "Provider-reported cost in USD, from the ledger", labels=labels
        )
        actual_cost = CounterMetricFamily(
            "luc_actual_cost_usd",
            "Actual cost in USD, from the ledger: the provider-reported cost of each event "
            "where reported, else its catalog-priced cost",
            labels=labels,
        )
        # The customers' price by the cost series' bounded labels only: never a customer id
        # (customers are as unbounded as jobs; GET /v1/usage?group_by=customer and the
        # customer × month rollup serve them).
        price = CounterMetricFamily(
            "luc_price_usd",
            "What the customers pay in USD, from the ledger: each event at its customer's "
            "rate plan, else at its catalog-priced cost (an event whose price is unknown "
            "adds nothing)",
            labels=labels,
        )
        margin = GaugeMetricFamily(
            "luc_margin_usd",
            "Price minus actual cost in USD, from the ledger (negative where usage is sold "
            "below what it cost)",
            labels=labels,
        )
        events = CounterMetricFamily(
            "luc_ledger_events", "Events recorded on the ledger", labels=labels
        )
        tokens = CounterMetricFamily(
            "luc_tokens",
            "Tokens recorded on the ledger, by class",
            labels=["agent", "model", "class"],
        )
        unpriced: dict[str, float] = {}
        token_sums: dict[tuple[str, str, str], float] = {}
        for r in snap.usage:
            key = [r["agent"], r["model"], r["provider"], r["tier"]]
            if r["tier"] != "unpriced":  # unpriced cost is unknown, not zero
                cost.add_metric(key, float(r["cost_usd"]))
            provider_cost.add_metric(key, float(r["provider_cost_usd"]))
            # Unpriced rows too: an unpriced event's reported cost is known (and one that
            # reported none adds nothing, as it adds nothing to the REST totals).
            actual_cost.add_metric(key, float(r["actual_cost_usd"]))
            price.add_metric(key, float(r["price_usd"]))
            margin.add_metric(key, float(r["price_usd"] - r["actual_cost_usd"]))
            events.add_metric(key, float(r["events"]))
            unpriced[r["model"]] = unpriced.get(r["model"], 0.0) + float(r["unpriced_events"])
            for token_class in TOKEN_CLASSES:
                token_key = (r["agent"], r["model"], token_class.metric)
                token_sums[token_key] = token_sums.get(token_key, 0.0) + float(r[token_class.name])
        for token_key, value in sorted(token_sums.items()):
            tokens.add_metric(list(token_key), value)
        yield cost
        yield provider_cost
        yield actual_cost
        yield price
        yield margin
        yield events
        yield tokens
        unpriced_gauge = GaugeMetricFamily(
            "luc_unpriced_events",
            "Events kept without a price because no catalog version knows their model",
            labels=["model"],
        )
        for model, count in sorted(unpriced.items()):
            if count:
                unpriced_gauge.add_metric([model], count)
        yield unpriced_gauge
        info = GaugeMetricFamily(
            "luc_catalog_info", "The catalog version in force now", labels=["version", "label"]
        )
        if snap.catalog is not None:
            info.add_metric([str(snap.catalog["id"]), snap.catalog["label"]], 1.0)
        yield info
        ratio = GaugeMetricFamily(
            "luc_budget_spent_ratio",
            "Spend over limit of each budget in its current period (1 = limit reached)",
            labels=["budget_id", "scope", "period"],
        )
        limit = GaugeMetricFamily(
            "luc_budget_limit_usd",
            "Limit of each budget in USD",
            labels=["budget_id", "scope", "period"],
        )
        for b in snap.budgets:
            key = [str(b["id"]), b["scope"], b["period"]]
            ratio.add_metric(key, float(b["spent_usd"] / b["limit_usd"]))
            limit.add_metric(key, float(b["limit_usd"]))
        yield ratio
        yield limit
        yield from drift_families(snap.drift, snap.tolerance)
