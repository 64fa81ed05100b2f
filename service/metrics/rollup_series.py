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
correction is a new series whose first value ``increase()`` never counts. What a range
added is the value now less the value at the range's start (``offset``: ``delta()`` sees
nothing of a series born inside the range); the net of a label set is its value, to the
last digit the float allows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from service.budgets import queries as budget_queries
from service.budgets.models import DEAD, PENDING
from service.customers.credit_queries import CREDIT_STANDINGS
from service.db import Connection
from service.metrics import queries
from service.metrics.drift_series import drift_series
from service.metrics.exposition import GaugeFamily, Samples, families, gauges_text
from service.reconciliation import queries as reconciliation
from service.rollups.models import UNKNOWN_WHEN_NO_EVENT_KNOWS
from service.tokens import TOKEN_CLASSES

NET = (
    ": the net of its entries, lower after a correction takes some back or moves it to "
    "another label set (what a range added: its value now less its value at the range's "
    "start, with offset; not increase(), nor delta(), which misses a new series' first value)"
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
    outbox: Any | None = None
    """The alert outbox: deliveries pending, the oldest one's age, deliveries dead."""
    database_up: bool = False


async def read_snapshot(
    conn: Connection, tolerance: Decimal | None = None, within: float | None = None
) -> LedgerSnapshot:
    """The ledger's series as PostgreSQL has them now, its statements answered within
    ``within`` seconds all told (each within the connection's command timeout if None);
    past it asyncpg raises ``TimeoutError``."""
    loop = asyncio.get_running_loop()
    ends = None if within is None else loop.time() + within

    def left() -> float | None:
        return None if ends is None else max(ends - loop.time(), 0.001)

    return LedgerSnapshot(
        usage=list(await conn.fetch(queries.USAGE, timeout=left())),
        catalog=await conn.fetchrow(queries.CATALOG_IN_FORCE, timeout=left()),
        budgets=list(await conn.fetch(queries.BUDGET_SPEND, timeout=left())),
        drift=list(await conn.fetch(reconciliation.DRIFT_WINDOW, timeout=left())),
        tolerance=tolerance,
        credits=await conn.fetchrow(CREDIT_STANDINGS, timeout=left()),
        outbox=await conn.fetchrow(budget_queries.OUTBOX_STANDING, timeout=left()),
        database_up=True,
    )


class LedgerCollector(Collector):
    """Yields the latest snapshot; the /metrics handler refreshes it before each render.

    /metrics writes the text of a snapshot with ``text`` (straight from its rows, a
    scrape's largest share of series); ``collect`` yields the same as prometheus-client
    families, for ``generate_latest`` and the registry's lookups."""

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
        return families(ledger_series(snap))

    @staticmethod
    def text(snapshot: LedgerSnapshot) -> str:
        """What ``generate_text`` writes for ``collect()`` of ``snapshot``, byte for byte."""
        return gauges_text(ledger_series(snapshot))


DATABASE_UP = GaugeFamily(
    "luc_database_up", "1 when the last scrape could read the ledger from PostgreSQL"
)
USAGE_LABELS = ("agent", "model", "provider", "tier")
COST = GaugeFamily(
    "luc_cost_usd", f"Catalog-priced cost in USD, from the ledger{NET}", USAGE_LABELS
)
PROVIDER_COST = GaugeFamily(
    "luc_provider_cost_usd", f"Provider-reported cost in USD, from the ledger{NET}", USAGE_LABELS
)
ACTUAL_COST = GaugeFamily(
    "luc_actual_cost_usd",
    "Actual cost in USD, from the ledger: the provider-reported cost of each event "
    f"where reported, else its catalog-priced cost{NET}",
    USAGE_LABELS,
)
# The customers' price by the cost series' bounded labels only: never a customer id
# (customers are as unbounded as jobs; GET /v1/usage?group_by=customer and the
# customer × month rollup serve them).
PRICE = GaugeFamily(
    "luc_price_usd",
    "What the customers pay in USD, from the ledger: each event at its customer's "
    "rate plan, else at its catalog-priced cost (an event whose price is unknown "
    f"adds nothing; labels none of whose events has one have no series){NET}",
    USAGE_LABELS,
)
# The margin (SPEC §11: price − actual cost wherever both are known) only where it is not
# luc_price_usd − luc_actual_cost_usd: on the label sets some of whose events know both
# and some not (an unpriced model used by customers of an actual-basis plan, whose price
# is known, and of a catalog-basis one, whose price is not). Elsewhere the difference is
# the margin, and a series per label set would take /metrics past the 1,000 series a
# scrape is meant to stay under. The dashboards read it first, the difference otherwise.
MARGIN = GaugeFamily(
    "luc_margin_usd",
    "Margin in USD (price less actual cost, over the events that know both), only for "
    "label sets where some events do not know both; elsewhere it is luc_price_usd less "
    f"luc_actual_cost_usd{NET}",
    USAGE_LABELS,
)
EVENTS = GaugeFamily("luc_ledger_events", f"Events recorded on the ledger{NET}", USAGE_LABELS)
# By the cost's labels too (SPEC §5: cost and tokens by agent, model, provider, tier).
TOKENS = GaugeFamily(
    "luc_tokens", f"Tokens recorded on the ledger, by class{NET}", (*USAGE_LABELS, "class")
)
UNPRICED = GaugeFamily(
    "luc_unpriced_events",
    "Events kept without a price because no catalog version knows their model",
    ("model",),
)
CATALOG_INFO = GaugeFamily(
    "luc_catalog_info", "The catalog version in force now", ("version", "label")
)
BUDGET_LABELS = ("budget_id", "scope", "period")
BUDGET_RATIO = GaugeFamily(
    "luc_budget_spent_ratio",
    "Spend over limit of each budget in its current period (1 = limit reached)",
    BUDGET_LABELS,
)
BUDGET_LIMIT = GaugeFamily("luc_budget_limit_usd", "Limit of each budget in USD", BUDGET_LABELS)


def ledger_series(snap: LedgerSnapshot) -> Iterator[tuple[GaugeFamily, Samples]]:
    """Every ledger family of ``snap`` with its samples, in the order /metrics writes them."""
    yield DATABASE_UP, [((), 1.0 if snap.database_up else 0.0)]
    if not snap.database_up:
        return
    cost: Samples = []
    provider_cost: Samples = []
    actual_cost: Samples = []
    price: Samples = []
    margin: Samples = []
    events: Samples = []
    unpriced: dict[str, float] = {}
    tokens: Samples = []
    token_classes = [(t.name, t.metric) for t in TOKEN_CLASSES]
    for r in snap.usage:
        agent, model, tier = r["agent"], r["model"], r["tier"]
        key = (agent, model, r["provider"], tier)
        if tier != "unpriced":  # unpriced cost is unknown, not zero
            cost.append((key, float(r["cost_usd"])))
        provider_cost.append((key, float(r["provider_cost_usd"])))
        # A measure no event of the row knows is unknown, not zero: no series, as REST
        # answers null (so the dashboard's margin takes the row's actual cost off nothing,
        # SPEC §11). Unpriced rows have an actual cost where their events reported one.
        if not 0 < r["events"] == r[UNKNOWN_WHEN_NO_EVENT_KNOWS["actual_cost_usd"]]:
            actual_cost.append((key, float(r["actual_cost_usd"])))
        if not 0 < r["events"] == r[UNKNOWN_WHEN_NO_EVENT_KNOWS["price_usd"]]:
            price.append((key, float(r["price_usd"])))
        if 0 < r["unknown_margin_events"] < r["events"]:
            margin.append((key, float(r["margin_usd"])))
        events.append((key, float(r["events"])))
        unpriced[model] = unpriced.get(model, 0.0) + float(r["unpriced_events"])
        # One usage row per label set: its tokens are that row's, no sum needed (and in
        # the rows' order, as every family here: Prometheus reads a family in any order).
        tokens += [((*key, label), float(r[column])) for column, label in token_classes]
    yield COST, cost
    yield PROVIDER_COST, provider_cost
    yield ACTUAL_COST, actual_cost
    yield PRICE, price
    yield MARGIN, margin
    yield EVENTS, events
    yield TOKENS, tokens
    yield UNPRICED, [((model,), count) for model, count in sorted(unpriced.items()) if count]
    catalog = snap.catalog
    yield CATALOG_INFO, [] if catalog is None else [((str(catalog["id"]), catalog["label"]), 1.0)]
    ratio: Samples = []
    limit: Samples = []
    for b in snap.budgets:
        budget = (str(b["id"]), b["scope"], b["period"])
        ratio.append((budget, float(b["spent_usd"] / b["limit_usd"])))
        limit.append((budget, float(b["limit_usd"])))
    yield BUDGET_RATIO, ratio
    yield BUDGET_LIMIT, limit
    yield from drift_series(snap.drift, snap.tolerance)
    yield from _credit_series(snap.credits)
    yield from _outbox_series(snap.outbox)


# Credit state of a customer holding credits: at zero, below its low_balance_usd, or not.
CREDIT_STATES = ("exhausted", "low", "ok")
CREDIT_BALANCE = GaugeFamily(
    "luc_customer_credit_balance_usd",
    "Prepaid credits left across all customers (grants not expired), USD",
)
CREDIT_STATE = GaugeFamily(
    "luc_customers_by_credit_state",
    "Customers holding prepaid credits, by state: exhausted (balance zero), low (below "
    "the customer's low_balance_usd), ok",
    ("state",),
)


def _credit_series(row: Any | None) -> Iterator[tuple[GaugeFamily, Samples]]:
    """Prepaid credits without a customer label (the number of customers is unbounded):
    the balance across customers, and how many customers are in each state. A customer's
    own balance is served by REST (``GET /v1/customers/{id}/credits``)."""
    if row is None:
        yield CREDIT_BALANCE, []
        yield CREDIT_STATE, []
        return
    yield CREDIT_BALANCE, [((), float(row["balance_usd"]))]
    yield CREDIT_STATE, [((state,), float(row[state])) for state in CREDIT_STATES]


# Alerts whose webhook delivery is under way or failed for good. Delivered ones are not
# counted (the outbox keeps them all: an ever-growing figure that says nothing).
DELIVERY_STATES = (PENDING, DEAD)
WEBHOOK_DELIVERIES = GaugeFamily(
    "luc_webhook_deliveries",
    "Alerts in the webhook outbox by delivery state: pending (being retried, or waiting "
    "behind their budget's older alert), dead (retries spent or the target answered 410: "
    "never delivered; GET /v1/alerts?delivery=dead lists them, POST "
    "/v1/alerts/{id}/redeliver sends one again)",
    ("state",),
)
WEBHOOK_OLDEST_PENDING = GaugeFamily(
    "luc_webhook_oldest_pending_seconds",
    "Age of the oldest alert whose webhook delivery is pending, in seconds (0: none)",
)


def _outbox_series(row: Any | None) -> Iterator[tuple[GaugeFamily, Samples]]:
    """Both states always, zero included: a rule on the dead count's growth compares it
    with its value an hour before, which must exist."""
    if row is None:
        yield WEBHOOK_DELIVERIES, []
        yield WEBHOOK_OLDEST_PENDING, []
        return
    yield WEBHOOK_DELIVERIES, [((state,), float(row[state])) for state in DELIVERY_STATES]
    yield WEBHOOK_OLDEST_PENDING, [((), float(row["oldest_pending_seconds"]))]
