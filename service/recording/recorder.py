"""``Recorder.record_events``: where every usage event enters the write path.

``POST /v1/events/batch`` calls it, the group commit calls it for the single events of
``POST /v1/events``, and the gateway's in-process sink calls it for proxied calls, so the
three are recorded, counted and answered alike: validated events go to ``record_batch``
(one transaction, split by ``record_apart`` around an event PostgreSQL refuses), the
ingest metrics count each outcome, and raised budget alerts wake the webhook dispatcher.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from service.budgets.delivery import Dispatcher
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import on_connection
from service.ingest.models import Rejection, UsageEvent
from service.metrics.instruments import Metrics
from service.recording.models import STATUSES, BatchOutcome
from service.recording.one_trip import OneTrip
from service.recording.service import price_only, record_apart, record_batch, rejected_only
from service.settings import IngestSettings


@dataclass(frozen=True)
class Recorder:
    """The process's write path: its pool, catalog cache, ingest settings and metrics."""

    pool: asyncpg.Pool
    catalog_cache: CatalogCache
    plan_cache: PlanCache
    """The rate plans and LUC_DEFAULT_PLAN: every event is priced for its customer."""
    settings: IngestSettings
    metrics: Metrics
    dispatcher: Dispatcher | None = None
    """Woken when a batch raised budget alerts, so their webhooks go out at once."""
    one_trip: OneTrip = field(default_factory=OneTrip)
    """What this process's openings found: small groups they still describe take one
    round trip (``recording.one_trip``)."""

    async def record_events(
        self, items: Sequence[UsageEvent | Rejection], *, one_event_per_request: bool = False
    ) -> BatchOutcome:
        """Record a batch with the ingest metrics; outcomes in order, after the commit.
        ``one_event_per_request``: the group commit's single events, each of its own
        request (a conflict names an earlier request, never "this batch")."""
        started = time.perf_counter()
        if not any(isinstance(i, UsageEvent) for i in items):
            outcome = rejected_only(items)  # nothing to store: answers even with the database down
        elif not self.settings.persist:  # a benchmark's reference (B2): nothing is stored
            catalog = self.catalog_cache.loaded
            if catalog is None:
                catalog = await on_connection(self.pool, self.catalog_cache.get)
            outcome = price_only(catalog, items, one_event_per_request=one_event_per_request)
        else:
            # A batch (or a group of single events) that PostgreSQL refuses because of one
            # event's values is recorded without that event, which alone is rejected.
            outcome = await record_apart(
                lambda part: on_connection(
                    self.pool,
                    lambda conn: record_batch(
                        conn,
                        self.catalog_cache,
                        part,
                        plan_cache=self.plan_cache,
                        one_event_per_request=one_event_per_request,
                        one_trip=self.one_trip,
                    ),
                ),
                items,
            )
        self.metrics.ingest_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_events.observe(len(items))
        for status in STATUSES:
            if count := outcome.count(status):
                self.metrics.events.labels(status).inc(count)
        if outcome.alerts and self.dispatcher is not None:
            self.dispatcher.wake()
        return outcome
