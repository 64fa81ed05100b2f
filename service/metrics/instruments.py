"""The service's registry and the instruments that count what this process did."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from service.metrics.ledger import LedgerCollector, LedgerSnapshot

BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2000, 5000, 10000)


class Metrics:
    """One per app: its own registry, so two apps in one process (tests) never collide."""

    def __init__(self) -> None:
        # The *_created series double the output and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = CollectorRegistry(auto_describe=False)
        self.ledger = LedgerCollector()
        self.registry.register(self.ledger)
        self.events = Counter(
            "luc_events",
            "Events received by this process, by ingest outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("accepted", "duplicate", "conflict", "rejected"):
            self.events.labels(outcome)
        self.batch_events = Histogram(
            "luc_ingest_batch_events",
            "Events per ingest request",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "luc_ingest_duration_seconds",
            "Time to validate, price and commit one ingest request",
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "luc_http_request_duration_seconds",
            "HTTP request duration by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )

    def render(self, snapshot: LedgerSnapshot) -> bytes:
        self.ledger.update(snapshot)
        return generate_latest(self.registry)
