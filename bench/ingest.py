"""Batch ingest over HTTP against a raw ``COPY`` of the same rows, in the same run.

``make bench`` (``python -m bench.ingest``) starts a scratch PostgreSQL (embedded, or a
scratch database on ``LUC_DATABASE_URL``'s server), migrates it, starts ``luc serve`` in
its own process and sends it batches of realistic usage events over loopback, first from
one sender, then from several at once. Beside each run it measures its references on the
same database with asyncpg ``copy_records_to_table`` of the identical rows, one
transaction per batch, over as many connections as there are senders:

- ``copy_events`` (the reference of the ratio): the events as rows of a table shaped as
  ``usage_events`` was until migration 0028 (every field, its primary key), a fixed
  reference across versions;
- ``copy_ledger``: the charges the service appends for them, into a table ``LIKE
  ledger_entries INCLUDING ALL`` (the reference that issue 9 calls B1);
- ``copy_events_and_ledger``: both, in one transaction: the raw volume ingest writes.

All of it once per ``--workers`` count (``LUC_WORKERS`` of ``luc serve``; 1 and 2 by
default), each on a database of its own. It prints a markdown table (events/s, ratio to
COPY, CPU per event for the Python side and for PostgreSQL), writes the figures as JSON,
and finally checks in SQL that every rollup equals the sum of its ledger entries and that
each event sent has one charge; the exit status is non-zero when not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec

from bench.harness import (
    BenchDatabase,
    CpuMeter,
    collector_paused,
    machine,
    positive_numbers,
    print_table,
    run_loop,
    scratch_database,
)
from service.catalog.service import load_catalog
from service.db import Connection, connect
from service.ingest.models import UsageEvent
from service.ledger.service import INSERT_FIELDS, charge_for
from service.pricing.catalog import Catalog
from service.wire import instant_text, money_text
from tests.support.events import usage_event, wire_event
from tests.support.servers import ServerProcess

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "ingest.json"
TARGET_RATIO = 0.5

# The workload: the four AIMS agents, every catalog model (and an alias), two providers.
AGENTS = ("ACHEEVY", "Boomer_Ang", "ORACLE", "ByteRover")
MODELS = (
    "anthropic/claude-opus-4.6",
    "anthropic/claude-opus-4.5",
    "openai/gpt-5.2",
    "anthropic/claude-sonnet-4.5",
    "openai/gpt-5.1",
    "google/gemini-3-pro-preview",
    "google/gemini-3.0-flash",
    "gemini-3.0-flash",
    "anthropic/claude-haiku-4.5",
    "google/gemini-2.5-flash-preview",
    "meta-llama/llama-3.3-70b-instruct",
)
REASONING_MODELS = frozenset(MODELS[:6])
UNKNOWN_MODEL = "mistralai/mistral-large-2512"  # rare: kept unpriced, as in real traffic
ACTIVE_JOBS = 300  # jobs in flight at any moment; the window moves as batches go by

# Reference tables: built LIKE the real ones, so they carry the same indexes and checks
# (not the foreign key, nor the append-only triggers). An event row is as usage_events
# held it until migration 0028, with its indexes (events are now stored as their charge
# and a key row): that reference stays the same across versions.
EVENT_ROWS = """
event_id text PRIMARY KEY, occurred_at timestamptz NOT NULL,
received_at timestamptz NOT NULL DEFAULT now(), job_id text NOT NULL, agent text NOT NULL,
provider text NOT NULL, model text NOT NULL, input_tokens bigint NOT NULL,
cached_input_tokens bigint NOT NULL, cache_write_tokens bigint NOT NULL,
output_tokens bigint NOT NULL, reasoning_tokens bigint NOT NULL, provider_cost_usd numeric,
status text NOT NULL, attributes jsonb, reservation_id text, customer_id text
"""
COPY_EVENTS = "bench_copy_ref"
COPY_LEDGER = "bench_copy_ref_ledger"
COPY_PAIR_EVENTS = "bench_copy_ref_pair_events"
COPY_PAIR_LEDGER = "bench_copy_ref_pair_ledger"
CREATE_REFERENCE_TABLES = f"""
CREATE TABLE {COPY_EVENTS} ({EVENT_ROWS});
CREATE INDEX ON {COPY_EVENTS} (occurred_at) WHERE attributes ? 'upstream_model';
CREATE TABLE {COPY_LEDGER} (LIKE ledger_entries INCLUDING ALL);
CREATE TABLE {COPY_PAIR_EVENTS} ({EVENT_ROWS});
CREATE INDEX ON {COPY_PAIR_EVENTS} (occurred_at) WHERE attributes ? 'upstream_model';
CREATE TABLE {COPY_PAIR_LEDGER} (LIKE ledger_entries INCLUDING ALL);
"""
# The columns of the event rows are the reference table's own (``EVENT_ROWS``, fixed), each
# the validated event's field of that name (its id as event_id) but ``received_at``, left
# to its default: a field the event gains later (``reservation_key``) is no column of it.
# Those of a charge are the ones the service itself inserts.
EVENT_COLUMNS = tuple(
    name
    for name in (column.split()[0] for column in EVENT_ROWS.split(","))
    if name != "received_at"
)
assert set(EVENT_COLUMNS) - {"event_id"} <= {f.name for f in fields(UsageEvent)}
LEDGER_COLUMNS = INSERT_FIELDS


# Workload ---------------------------------------------------------------------------------


@dataclass
class Batch:
    body: bytes
    """The ``POST /v1/events/batch`` body, encoded before the clock starts."""
    event_rows: list[tuple[Any, ...]]
    """The same events as event rows (``EVENT_COLUMNS``)."""
    ledger_rows: list[tuple[Any, ...]]
    """The charge the service appends for each (``LEDGER_COLUMNS``)."""


def _event(rng: random.Random, batch_index: int, now: datetime) -> UsageEvent:
    job = batch_index * 20 + rng.randrange(ACTIVE_JOBS)
    model = UNKNOWN_MODEL if rng.random() < 0.002 else MODELS[(job * 7 + rng.randrange(3)) % 11]
    input_tokens = int(rng.lognormvariate(7.5, 1.2)) + 16
    cached = int(input_tokens * rng.uniform(0.3, 0.9)) if rng.random() < 0.5 else 0
    cache_write = int((input_tokens - cached) * rng.uniform(0.1, 0.5)) if rng.random() < 0.1 else 0
    output_tokens = int(rng.lognormvariate(5.5, 1.0)) + 1
    reasoning = int(output_tokens * rng.uniform(0.2, 0.8)) if model in REASONING_MODELS else 0
    provider = "vertex" if model.startswith("google/") and rng.random() < 0.4 else "openrouter"
    provider_cost = (
        Decimal(rng.randrange(1, 5_000_000)).scaleb(-9) if provider == "openrouter" else None
    )
    return usage_event(
        f"gen-{rng.getrandbits(96):024x}",
        occurred_at=(now - timedelta(seconds=rng.uniform(0, 3600))).replace(microsecond=0),
        job_id=f"job-{job:06d}",
        agent=AGENTS[job % 4] if rng.random() < 0.8 else rng.choice(AGENTS),
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        provider_cost_usd=provider_cost,
        status="error" if rng.random() < 0.02 else "ok",
        attributes={
            "request_id": f"req_{rng.getrandbits(64):016x}",
            "route": rng.choice(("/chat", "/plan", "/research", "/code")),
            "customer": f"cust-{job % 37:03d}",
        },
    )


def _wire(e: UsageEvent) -> dict[str, Any]:
    """``e`` as a gateway sends it: token classes it has none of and no provider cost left out."""
    return wire_event(
        e.id,
        occurred_at=instant_text(e.occurred_at),
        job_id=e.job_id,
        agent=e.agent,
        provider=e.provider,
        model=e.model,
        input_tokens=e.input_tokens,
        output_tokens=e.output_tokens,
        status=e.status,
        attributes=e.attributes,
        cached_input_tokens=e.cached_input_tokens or ...,
        cache_write_tokens=e.cache_write_tokens or ...,
        reasoning_tokens=e.reasoning_tokens or ...,
        # money_text: str() may say 5E-9
        provider_cost_usd=... if e.provider_cost_usd is None else money_text(e.provider_cost_usd),
    )


def make_batches(
    catalog: Catalog, count: int, size: int, seed: int, first_batch: int = 0
) -> list[Batch]:
    """``count`` batches of ``size`` fresh events (new ids on every call with a new seed)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    batches = []
    for b in range(first_batch, first_batch + count):
        events = [_event(rng, b, now) for _ in range(size)]
        charges = [charge_for(e, catalog.quote(e.model, e.occurred_at)) for e in events]
        batches.append(
            Batch(
                body=msgspec.json.encode({"events": [_wire(e) for e in events]}),
                event_rows=[
                    tuple(getattr(e, c if c != "event_id" else "id") for c in EVENT_COLUMNS)
                    for e in events
                ],
                ledger_rows=[tuple(getattr(c, name) for name in LEDGER_COLUMNS) for c in charges],
            )
        )
    return batches


# Runs -------------------------------------------------------------------------------------


@dataclass
class Measurement:
    name: str
    concurrency: int
    events: int
    seconds: float
    cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    """server (luc serve, its workers included), postgres (all its processes), client (this
    process)."""
    workers: int = 1
    """``LUC_WORKERS`` of the server it ran beside."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def cpu_us_per_event(self, who: str) -> float | None:
        value = self.cpu_seconds.get(who)
        return None if value is None else value / self.events * 1e6

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "events_per_s": round(self.events_per_s, 1),
            "cpu_us_per_event": {
                who: None if (v := self.cpu_us_per_event(who)) is None else round(v, 2)
                for who in self.cpu_seconds
            },
        }


class BatchAnswer(msgspec.Struct):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int


_answer_decoder = msgspec.json.Decoder(BatchAnswer)


async def send_batches(
    base_url: str,
    batches: Sequence[Batch],
    concurrency: int,
    meter: CpuMeter,
    headers: dict[str, str] | None = None,
) -> float:
    """POST every batch from ``concurrency`` senders; seconds from first send to last answer.

    Every event must come back ``accepted``: anything else is a broken benchmark."""
    pending = iter(batches)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(300.0),
        limits=limits,
        headers={"content-type": "application/json", **(headers or {})},
    ) as client:

        async def sender() -> None:
            for batch in pending:
                response = await client.post("/v1/events/batch", content=batch.body)
                response.raise_for_status()
                answer = _answer_decoder.decode(response.content)
                if answer.accepted != len(batch.event_rows):
                    raise RuntimeError(f"the service did not accept every event: {answer}")

        # Connect every sender before the clock starts.
        await asyncio.gather(*(client.get("/healthz") for _ in range(concurrency)))
        with collector_paused(), meter:
            started = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(concurrency)))
            return time.perf_counter() - started


# What each reference copies per batch, in one transaction: (table, Batch field, columns).
REFERENCES: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "copy_events": ((COPY_EVENTS, "event_rows", EVENT_COLUMNS),),
    "copy_ledger": ((COPY_LEDGER, "ledger_rows", LEDGER_COLUMNS),),
    "copy_events_and_ledger": (
        (COPY_PAIR_EVENTS, "event_rows", EVENT_COLUMNS),
        (COPY_PAIR_LEDGER, "ledger_rows", LEDGER_COLUMNS),
    ),
}


async def _copy_connection(url: str) -> Connection:
    """A connection that sends jsonb in binary (COPY is binary), encoded by msgspec as in
    the service, so the reference pays for the same encoding of the same Python values."""
    conn = await asyncpg.connect(url)
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + msgspec.json.encode(value),  # jsonb binary version 1
        decoder=lambda data: msgspec.json.decode(data[1:]),
        format="binary",
    )
    return conn


async def copy_batches(
    url: str, batches: Sequence[Batch], concurrency: int, reference: str, meter: CpuMeter
) -> float:
    """COPY every batch into ``reference``'s tables (one transaction per batch) over
    ``concurrency`` connections; seconds from first COPY to last commit."""
    targets = REFERENCES[reference]
    # Opened before and closed after the meter reads, so no backend exits mid-measurement.
    connections = [await _copy_connection(url) for _ in range(concurrency)]
    pending = iter(batches)

    async def copier(conn: Connection) -> None:
        for batch in pending:
            async with conn.transaction():
                for table, rows, columns in targets:
                    await conn.copy_records_to_table(
                        table, records=getattr(batch, rows), columns=columns
                    )

    try:
        with collector_paused(), meter:
            started = time.perf_counter()
            await asyncio.gather(*(copier(c) for c in connections))
            return time.perf_counter() - started
    finally:
        for conn in connections:
            await conn.close()


async def _checkpoint(url: str) -> None:
    """Start each run with no dirty pages left over from the one before (when allowed)."""
    conn = await connect(url)
    try:
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def run_all(
    db: BenchDatabase, server: ServerProcess, args: argparse.Namespace, workers: int
) -> list[Measurement]:
    """Per concurrency: the COPY references, then HTTP ingest of the same events."""
    conn = await connect(db.url)
    try:
        await conn.execute(CREATE_REFERENCE_TABLES)
        catalog = await load_catalog(conn)
    finally:
        await conn.close()

    results: list[Measurement] = []

    async def measure(
        name: str,
        concurrency: int,
        batches: Sequence[Batch],
        work: Callable[[CpuMeter], Awaitable[float]],
    ) -> None:
        await _checkpoint(db.url)
        meter = CpuMeter(server.pid, db.postmaster_pid)
        seconds = await work(meter)
        events = sum(len(b.event_rows) for b in batches)
        cpu = {"server": meter.server, "postgres": meter.postgres, "client": meter.client}
        results.append(Measurement(name, concurrency, events, seconds, cpu, workers))
        rate = results[-1].events_per_s
        print(
            f"  {name:<24} senders={concurrency} workers={workers}  {rate:>10,.0f} events/s",
            flush=True,
        )

    # Warm-up: plans, caches and connections, with rows that are not counted.
    warm = make_batches(catalog, 1, args.batch_size, seed=args.seed * 1000)
    for reference in REFERENCES:
        await copy_batches(db.url, warm, 1, reference, CpuMeter(None, None))
    await send_batches(server.base_url, warm, 1, CpuMeter(None, None), db.auth_headers)

    for round_index, concurrency in enumerate(args.concurrency, start=1):
        batches = make_batches(
            catalog,
            args.batches,
            args.batch_size,
            seed=args.seed * 1000 + round_index,
            first_batch=round_index * args.batches,
        )
        for reference in REFERENCES:
            await measure(
                reference,
                concurrency,
                batches,
                partial(copy_batches, db.url, batches, concurrency, reference),
            )
        await measure(
            "http_batch_ingest",
            concurrency,
            batches,
            partial(send_batches, server.base_url, batches, concurrency, headers=db.auth_headers),
        )
    return results


# The invariant ----------------------------------------------------------------------------

_SUMS = """
    {cost} AS cost_usd, {actual} AS actual_cost_usd,
    COALESCE(sum(provider_cost_usd), 0) AS provider_cost_usd,
    sum(event_count) AS events, sum(unpriced_count) AS unpriced_events,
    sum(input_tokens) AS input_tokens, sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_write_tokens) AS cache_write_tokens, sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    min(occurred_at) AS first_event_at, max(occurred_at) AS last_event_at
"""
_MEASURES = (
    "cost_usd, actual_cost_usd, provider_cost_usd, events, unpriced_events, input_tokens, "
    "cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, first_event_at, "
    "last_event_at"
)


def _rollup_check(table: str, keys: dict[str, str], *, keep_unknown: bool = False) -> str:
    """How many rows ``table`` and the ledger grouped by its key disagree on, either way
    (a row missing on one side counts); ``keys`` maps the rollup's key columns to ledger
    expressions. EXCEPT compares NULLs as equal and numerics by value. With
    ``keep_unknown`` (job lines) a cost no entry knows stays NULL, as the service keeps it."""
    ledger_keys = ", ".join(f"{expr} AS {col}" for col, expr in keys.items())
    columns = f"{', '.join(keys)}, {_MEASURES}"

    def summed(column: str) -> str:
        return f"sum({column})" if keep_unknown else f"COALESCE(sum({column}), 0)"

    # SPEC §3's actual cost spelled out, not read from the generated column.
    sums = _SUMS.format(
        cost=summed("cost_usd"), actual=summed("COALESCE(provider_cost_usd, cost_usd)")
    )
    return f"""
        WITH l AS (
            SELECT {ledger_keys}, {sums}
            FROM ledger_entries
            GROUP BY {", ".join(keys.values())}
        ), r AS (
            SELECT {columns} FROM {table}
        )
        SELECT (SELECT count(*) FROM (SELECT * FROM r EXCEPT SELECT * FROM l) AS only_rollup)
             + (SELECT count(*) FROM (SELECT * FROM l EXCEPT SELECT * FROM r) AS only_ledger)
    """


INVARIANT_CHECKS = {
    "rollup_jobs": _rollup_check("rollup_jobs", {"job_id": "job_id"}),
    "rollup_job_lines": _rollup_check(
        "rollup_job_lines",
        {
            c: c
            for c in (
                "job_id",
                "agent",
                "model",
                "provider",
                "catalog_version",
                "long_context_from",
            )
        },
        keep_unknown=True,  # a line stays NULL while unpriced, as the service keeps it
    ),
    "rollup_agent_days": _rollup_check(
        "rollup_agent_days", {"agent": "agent", "day": "billing_day"}
    ),
    "rollup_model_days": _rollup_check(
        "rollup_model_days", {"model": "model", "day": "billing_day"}
    ),
    # Read from the ledger alone, whatever table keeps the events' ids: an event charged
    # twice shows here, one never charged in check_invariant's count of charged events.
    "events_charged_more_than_once": """
        SELECT count(*) FROM (
            SELECT event_id FROM ledger_entries WHERE kind = 'charge'
            GROUP BY event_id HAVING count(*) > 1
        ) AS charged_twice
    """,
}


async def check_invariant(
    url: str, events_sent: int, checks: dict[str, str] | None = None
) -> dict[str, Any]:
    """Every rollup equals the sum of its ledger entries, exactly; each event the service
    accepted (``events_sent``) charged once, and nothing else on the ledger."""
    conn = await connect(url)
    try:
        mismatches = {
            name: int(await conn.fetchval(sql))
            for name, sql in (checks or INVARIANT_CHECKS).items()
        }
        charged = int(
            await conn.fetchval(
                "SELECT count(DISTINCT event_id) FROM ledger_entries WHERE kind = 'charge'"
            )
        )
        entries = int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))
    finally:
        await conn.close()
    ok = not any(mismatches.values()) and charged == entries == events_sent
    return {
        "ok": ok,
        "mismatched_rows": mismatches,
        "events_sent": events_sent,
        "events_charged": charged,
        "ledger_entries": entries,
    }


# Report -----------------------------------------------------------------------------------

LABELS = {
    "copy_events": "COPY event rows (reference)",
    "copy_ledger": "COPY ledger_entries rows",
    "copy_events_and_ledger": "COPY event + ledger rows",
    "http_batch_ingest": "HTTP batch ingest (luc serve)",
}


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _python_cpu(m: Measurement) -> float | None:
    """The Python that did the work: luc serve for ingest, this process for a COPY."""
    return m.cpu_us_per_event("server" if m.name == "http_batch_ingest" else "client")


def report(results: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Print the table and return, per worker count and concurrency, ingest's rate over
    each reference (measured beside it, on the same database)."""
    by_key = {(m.name, m.concurrency, m.workers): m for m in results}
    rows = [
        [
            LABELS.get(m.name, m.name),
            str(m.workers),
            str(m.concurrency),
            f"{m.events:,}",
            f"{m.events_per_s:,.0f}",
            f"{m.events_per_s / by_key['copy_events', m.concurrency, m.workers].events_per_s:.2f}",
            _fmt(_python_cpu(m), ".1f"),
            _fmt(m.cpu_us_per_event("postgres"), ".1f"),
        ]
        for m in results
    ]
    print()
    headers = ["run", "workers", "senders", "events", "events/s", "× COPY", "Python CPU µs/event"]
    print_table([*headers, "PostgreSQL CPU µs/event"], rows)
    print("(× COPY: rate over the COPY of event rows with as many senders; Python CPU:")
    print(" luc serve's processes for ingest, the benchmark's COPY client for the references;")
    print(" workers: LUC_WORKERS of the server, the references measured beside it)")
    ratios: list[dict[str, Any]] = []
    for (name, concurrency, workers), ingest in by_key.items():
        if name != "http_batch_ingest":
            continue
        over = {
            reference: round(
                ingest.events_per_s / by_key[reference, concurrency, workers].events_per_s, 3
            )
            for reference in REFERENCES
            if (reference, concurrency, workers) in by_key
        }
        ratios.append(
            {
                "workers": workers,
                "concurrency": concurrency,
                "ingest_over_copy_events": over["copy_events"],
                "ingest_over": over,
            }
        )
    print()
    for r in ratios:
        verdict = "meets" if r["ingest_over_copy_events"] >= TARGET_RATIO else "misses"
        others = ", ".join(f"over {k}: {v:.2f}" for k, v in r["ingest_over"].items())
        print(
            f"workers={r['workers']} senders={r['concurrency']}: "
            f"ingest / COPY = {r['ingest_over_copy_events']:.2f} "
            f"({verdict} the target of {TARGET_RATIO}); {others}"
        )
    return ratios


# Command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Batch ingest over HTTP (luc serve in its own process, load over loopback) "
            "against a raw COPY of the same rows into identically indexed tables, measured "
            "in the same run. Uses LUC_DATABASE_URL's server (in a scratch database) when "
            "set, else a throw-away embedded PostgreSQL."
        ),
    )
    parser.add_argument(
        "--batches", type=int, default=16, help="batches per run (default: 16, ~10 s of ingest)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="events per batch (default: 5000)"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_numbers,
        default=[1, 2],
        help="concurrent senders, one run each, comma-separated (default: 1,2)",
    )
    parser.add_argument(
        "--workers",
        type=positive_numbers,
        default=[1, 2],
        help="LUC_WORKERS of luc serve, one series of runs each (default: 1,2)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default: 1)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1:
        parser.error("--batches and --batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    print(
        f"ingest benchmark: {args.batches} batches × {args.batch_size:,} events per run, "
        f"senders {', '.join(map(str, args.concurrency))}, "
        f"workers {', '.join(map(str, args.workers))}",
        flush=True,
    )
    results: list[Measurement] = []
    checks: dict[int, dict[str, Any]] = {}
    embedded = True
    for workers in args.workers:
        # A database of its own per worker count: the same events (same seed) on empty
        # tables, and the COPY references measured again beside them.
        with tempfile.TemporaryDirectory(prefix="luc-bench-") as tmp, scratch_database() as db:
            server = ServerProcess(
                db.url,
                Path(tmp) / "server.log",
                defaults={},
                LUC_MAX_BATCH_EVENTS=str(max(5000, args.batch_size)),
                LUC_WORKERS=str(workers),
            )
            server.start()
            try:
                results += run_loop(run_all(db, server, args, workers))
            except BaseException:
                print(server.log_tail(), file=sys.stderr)
                raise
            finally:
                server.stop()
            sent = args.batch_size * (1 + args.batches * len(args.concurrency))
            checks[workers] = run_loop(check_invariant(db.url, sent))
            postgres_version = run_loop(_server_version(db.url))
            embedded = embedded and db.embedded

    ratios = report(results)
    print()
    ok = all(check["ok"] for check in checks.values())
    if ok:
        entries = ", ".join(f"{c['ledger_entries']:,}" for c in checks.values())
        print(
            f"check: every rollup equals the sum of its ledger entries "
            f"({entries} entries, one charge per event) with each worker count: OK"
        )
    else:
        print(f"check FAILED: {json.dumps(checks)}")

    document = {
        "benchmark": "ingest",
        "started_at": started_at.isoformat(),
        "machine": machine(),
        "config": {
            "batches": args.batches,
            "batch_size": args.batch_size,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "seed": args.seed,
            "database": "embedded" if embedded else "LUC_DATABASE_URL",
            "postgres": postgres_version,
        },
        "measurements": [m.as_json() for m in results],
        "ratios": ratios,
        "target": {
            "ingest_over_copy_events": TARGET_RATIO,
            "met": all(r["ingest_over_copy_events"] >= TARGET_RATIO for r in ratios),
        },
        "checks": checks,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if ok else 1


async def _server_version(url: str) -> str:
    conn = await connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
