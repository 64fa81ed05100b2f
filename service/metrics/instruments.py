"""The service's registry and the instruments that count what this process did.

Under ``luc serve --workers N`` each worker counts in prometheus-client's multiprocess
files (``PROMETHEUS_MULTIPROC_DIR``, set by the parent before it spawns them), and a scrape,
whichever worker answers it, sums the files of all of them; the ledger's series come from
the database, once, beside them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from service.metrics.exposition import generate_text
from service.metrics.rollup_series import LedgerCollector, LedgerSnapshot
from service.metrics.worker_files import WorkerFiles

BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2000, 5000, 10000)


class Metrics:
    """One per app: its own registry, so two apps in one process (tests) never collide."""

    def __init__(self) -> None:
        # The *_created series double the output and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        # Everything /metrics shows: the ledger's series, then this process's instruments
        # (``process``, a registry of its own so that render can write the ledger's text
        # straight from its rows and only this process's series through families).
        self.registry = CollectorRegistry(auto_describe=False)
        self.ledger = LedgerCollector()
        self.registry.register(self.ledger)
        self.process = CollectorRegistry(auto_describe=False)
        self.registry.register(self.process)
        # prometheus-client reads its own variable when it is imported; so does LUC here.
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.workers = WorkerFiles(folder) if folder else None
        self.events = Counter(
            "luc_events",
            "Events received by this process, by ingest outcome",
            ["outcome"],
            registry=self.process,
        )
        for outcome in ("accepted", "duplicate", "conflict", "rejected"):
            self.events.labels(outcome)
        self.batch_events = Histogram(
            "luc_ingest_batch_events",
            "Events per ingest transaction: a batch request, or single events and proxied calls "
            "committed together by the group commit",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.process,
        )
        self.ingest_seconds = Histogram(
            "luc_ingest_duration_seconds",
            "Time to price and commit one ingest transaction (the wait of a single event for its "
            "group is in luc_http_request_duration_seconds)",
            registry=self.process,
        )
        self.http_seconds = Histogram(
            "luc_http_request_duration_seconds",
            "HTTP request duration by route template, method and status",
            ["route", "method", "status"],
            registry=self.process,
        )

        # The proxy's usage that is not on the ledger (yet): service.recording.sink.
        self.gateway_spooled = Counter(
            "luc_gateway_usage_spooled",
            "Proxied calls whose usage went to the local spool instead of the ledger, by cause",
            ["cause"],
            registry=self.process,
        )
        for cause in ("database_unavailable", "timeout", "error", "cancelled"):
            self.gateway_spooled.labels(cause)
        self.gateway_parked = Counter(
            "luc_gateway_usage_parked",
            "Proxied calls whose usage the ledger refused (conflict, rejected) or that kept "
            "failing on its own (failed), parked for an operator",
            ["status"],
            registry=self.process,
        )
        for status in ("conflict", "rejected", "failed"):
            self.gateway_parked.labels(status)
        self.gateway_unrecorded = Counter(
            "luc_gateway_usage_unrecorded",
            "Proxied calls whose usage could be neither recorded nor spooled (only in the log)",
            registry=self.process,
        )
        self.gateway_calls_estimated = Counter(
            "luc_gateway_calls_estimated",
            "Proxied calls a process ended before reading their answer (a crash, a SIGKILL "
            "while the provider thought), booked by the replay on the prompt's estimate: no "
            "output and no provider cost known, so the provider's bill for them may be higher",
            registry=self.process,
        )
        self.gateway_replay_failures = Counter(
            "luc_gateway_spool_replay_failures",
            "Attempts to replay the spool that placed nothing (each is retried with backoff)",
            registry=self.process,
        )
        # Read from the spool file (shared by the workers) by the process that is scraped,
        # just before it renders: its reading is the most recent.
        self.gateway_spool_pending = Gauge(
            "luc_gateway_spool_pending_events",
            "Usage events waiting in the local spool to be recorded",
            registry=self.process,
            multiprocess_mode="mostrecent",
        )
        self.gateway_parked_events = Gauge(
            "luc_gateway_parked_events",
            "Usage events parked in the local spool until an operator replays or discards them",
            registry=self.process,
            multiprocess_mode="mostrecent",
        )
        self.gateway_journal_unreadable = Gauge(
            "luc_gateway_journal_unreadable_files",
            "Usage journal files that cannot be read (set aside as <spool>.unreadable-journal-*, "
            "or where they lie): their usage is not replayed until an operator acts",
            registry=self.process,
            multiprocess_mode="mostrecent",
        )

        # Heuristic mode must be visible: a stub answer is no LLM call and is never billed.
        self.gateway_stub_mode = Gauge(
            "luc_gateway_stub_mode",
            "1 when no LLM provider is configured and every chat completion is a stub answer "
            "(heuristic mode: no LLM called, recorded at zero cost, never billed), else 0",
            registry=self.process,
            multiprocess_mode="max",  # the same in every worker
        )
        self.gateway_stub_answers = Counter(
            "luc_gateway_stub_answers",
            "Chat completions this process answered with the stub (no LLM called, never "
            "billed), by cause: stub_mode (no provider configured) or fallback (the "
            "providers before the stub failed)",
            ["cause"],
            registry=self.process,
        )
        for cause in ("stub_mode", "fallback"):
            self.gateway_stub_answers.labels(cause)

    def render(self, snapshot: LedgerSnapshot) -> bytes:
        """``generate_latest(self.registry)`` (or, with workers, of every worker's series
        and then the ledger's), byte for byte."""
        self.ledger.update(snapshot)  # for the registry's readers (collect, get_sample_value)
        ledger = self.ledger.text(snapshot).encode("utf-8")
        if self.workers is None:
            return ledger + generate_text(self.process)
        # Every worker's series, summed (histograms, counters) or as their mode says
        # (gauges); the ledger's once.
        return self.workers.text().encode("utf-8") + ledger
