"""Series that come from committed ledger data, not from process memory.

Cost and token totals are read from the ``rollup_usage`` projection at scrape time, so
they survive restarts, agree with REST to the last digit the float allows, and are the
same whichever replica or worker answers the scrape. Because every instance reports the
whole ledger, queries must not sum them across instances: dashboards take
``max without (instance)`` first. (Multiprocess mode would instead make each process
count only what it ingested, and lose history at every restart.)

The totals are gauges, not counters: each is the ledger's net for its label set, and
corrections take money back by adjustment entries (a re-rating to a cheaper catalog
version, a re-pricing to a cheaper plan version), or move an event's count, tokens and
reported cost to another label set (its model or tier changes when a version prices it).
A counter that goes down is a reset to Prometheus: ``increase()`` and ``rate()`` would add
its whole value again. The alternative, two counters per total (what was booked and what
was taken back), doubles these series: past the 1,000 a scrape is meant to stay under
(the README's Performance section), and a companion that only appears with its first
correction is a new series whose first value ``increase()`` never counts. Read them with
``delta()`` and ``deriv()``; the net of a label set is its value, to the last digit the
float allows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.customers.credit_queries import CREDIT_STANDINGS
from service.db import Connection
from service.metrics import queries
from service.metrics.drift_series import drift_families
from service.reconciliation import queries as reconciliation
from service.tokens import TOKEN_CLASSES

NET = (
    ": the net of its entries, lower after a correction takes some back or moves it to "
    "another label set (read it with delta(), not increase())"
)


@dataclass
class LedgerSnapshot:
    usage: list[Any] = field(default_factory=list)
    catalog: Any | None = None
    budgets: list[Any] = field(default_factory=list)
    drift: list[Any] = field(default_factory=list)
    """``rollup_reconciliation_days`` over the drift window, per model and provider."""
    tolerance: Decimal | None = None
    """``LUC_RECONCILIATION_TOLERANCE``, shown beside the drift ratios."""
    credits: Any | None = None
    """Prepaid credits across customers: the balance, and customers by state."""
    database_up: bool = False


async def read_snapshot(conn: Connection, tolerance: Decimal | None = None) -> LedgerSnapshot:
    return LedgerSnapshot(
        usage=list(await conn.fetch(queries.USAGE)),
        catalog=await conn.fetchrow(queries.CATALOG_IN_FORCE),
        budgets=list(await conn.fetch(queries.BUDGET_SPEND)),
        drift=list(await conn.fetch(reconciliation.DRIFT_WINDOW)),
        tolerance=tolerance,
        credits=await conn.fetchrow(CREDIT_STANDINGS),
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
        cost = GaugeMetricFamily(
            "luc_cost_usd",
            f"Catalog-priced cost in USD, from the ledger{NET}",
            labels=labels,
        )
        provider_cost = GaugeMetricFamily(
            "luc_provider_cost_usd",
            f"Provider-reported cost in USD, from the ledger{NET}",
            labels=labels,
        )
        actual_cost = GaugeMetricFamily(
            "luc_actual_cost_usd",
            "Actual cost in USD, from the ledger: the provider-reported cost of each event "
            f"where reported, else its catalog-priced cost{NET}",
            labels=labels,
        )
        # The customers' price by the cost series' bounded labels only: never a customer id
        # (customers are as unbounded as jobs; GET /v1/usage?group_by=customer and the
        # customer × month rollup serve them).
        price = GaugeMetricFamily(
            "luc_price_usd",
            "What the customers pay in USD, from the ledger: each event at its customer's "
            "rate plan, else at its catalog-priced cost (an event whose price is unknown "
            f"adds nothing){NET}",
            labels=labels,
        )
        margin = GaugeMetricFamily(
            "luc_margin_usd",
            "Price minus actual cost in USD, from the ledger (negative where usage is sold "
            "below what it cost)",
            labels=labels,
        )
        events = GaugeMetricFamily(
            "luc_ledger_events", f"Events recorded on the ledger{NET}", labels=labels
        )
        tokens = GaugeMetricFamily(
            "luc_tokens",
            f"Tokens recorded on the ledger, by class{NET}",
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
        yield from _credit_families(snap.credits)


# Credit state of a customer holding credits: at zero, below its low_balance_usd, or not.
CREDIT_STATES = ("exhausted", "low", "ok")


def _credit_families(row: Any | None) -> Iterator[Metric]:
    """Prepaid credits without a customer label (the number of customers is unbounded):
    the balance across customers, and how many customers are in each state. A customer's
    own balance is served by REST (``GET /v1/customers/{id}/credits``)."""
    balance = GaugeMetricFamily(
        "luc_customer_credit_balance_usd",
        "Prepaid credits left across all customers (grants not expired), USD",
    )
    states = GaugeMetricFamily(
        "luc_customers_by_credit_state",
        "Customers holding prepaid credits, by state: exhausted (balance zero), low (below "
        "the customer's low_balance_usd), ok",
        labels=["state"],
    )
    if row is not None:
        balance.add_metric([], float(row["balance_usd"]))
        for state in CREDIT_STATES:
            states.add_metric([state], float(row[state]))
    yield balance
    yield states
