"""``GET /metrics`` with 100 and with 100,000 jobs in the ledger: the scrape stays flat.

``python -m bench.metrics`` (part of ``make bench``) starts, per ledger size, a scratch
PostgreSQL (embedded, or a scratch database on ``LUC_DATABASE_URL``'s server) and a
``luc serve`` with ``LUC_METRICS_PUBLIC=1`` (as Prometheus scrapes it), and fills each
ledger straight in SQL:
``INSERT … SELECT`` over ``generate_series`` writes the usage events and their charges
(priced from the catalog, a few unpriced), and the service's own rollup upserts
(``service.rollups.queries``) project them, so the rollups stay what ingest would make.
It then scrapes the sizes' /metrics in turn (3 warm-up scrapes each, then ``--scrapes``
rounds), so load from elsewhere on the machine slows every size alike, and reports p50/p99
scrape time, series count, bytes and CPU per scrape of LUC and of PostgreSQL.

The figure that matters is the ratio of the p50 at the largest size over the p50 at the
smallest, measured in the same run: /metrics reads only ``rollup_usage`` (agents × models ×
providers × tiers), never a per-job table, so it stays near 1. The ledgers are loaded once;
the servers are started once per ``--workers`` count (``LUC_WORKERS``; 1 and 2 by default)
and scraped in turn. Finally it checks in SQL that every rollup equals the sum of its
ledger entries and that each event has one charge; the exit status is non-zero when not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchDatabase,
    CpuMeter,
    machine,
    meets,
    per_worker_count,
    percentile,
    positive_numbers,
    print_table,
    run_loop,
    scratch_database,
)
from bench.ingest import INVARIANT_CHECKS, _rollup_check, check_invariant
from bench.loadgen import Connection
from service.db import connect
from service.reconciliation import queries as reconciliation
from service.rollups.queries import upserts
from tests.support.servers import ServerProcess

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "metrics.json"
FLAT_TARGET = 1.5  # p50 at the largest size over p50 at the smallest
CHUNK_JOBS = 10_000  # jobs per load transaction

# Usage events and their charges for jobs [$1, $2), $3 events each, priced with catalog
# version $4. Four agents, every catalog model, two providers; the first event of 12 jobs
# in 997 names a model the catalog lacks and stays unpriced, as in real traffic (the first
# 12 jobs give every agent × provider some, so the series are alike at each size). Token
# counts are arithmetic on the job and event numbers: the same arguments give the same rows.
LOAD_CHUNK = """
WITH models AS (
    SELECT array_agg(model_id ORDER BY model_id) AS ids FROM catalog_prices WHERE version_id = $4
), events AS (
    SELECT 'bench-' || j || '-' || k AS event_id, t AS occurred_at,
           'job-' || lpad(j::text, 7, '0') AS job_id,
           (ARRAY['ACHEEVY', 'Boomer_Ang', 'ORACLE', 'ByteRover'])[1 + j % 4] AS agent,
           CASE WHEN (j + k) % 3 = 0 THEN 'vertex' ELSE 'openrouter' END AS provider,
           CASE WHEN j % 997 < 12 AND k = 0 THEN 'mistralai/mistral-large-2512'
                ELSE m.ids[1 + (j / 4 + k) % cardinality(m.ids)] END AS model,
           input_tokens, input_tokens * ((j + k) % 5) / 10 AS cached_input_tokens,
           input_tokens * ((j + k) % 7 / 6) / 20 AS cache_write_tokens,
           output_tokens, output_tokens * ((j + k) % 3) / 10 AS reasoning_tokens,
           CASE WHEN (j + k) % 3 = 0 THEN NULL
                ELSE (input_tokens * 3 + output_tokens * 15) * 0.000001 END AS provider_cost_usd
    FROM generate_series($1::int, $2::int - 1) AS j
    CROSS JOIN generate_series(0, $3::int - 1) AS k
    CROSS JOIN models AS m
    CROSS JOIN LATERAL (
        SELECT now() - ((j::bigint * 7919 + k * 104729) % 2592000) * interval '1 second' AS t,
               (1000 + (j::bigint * 7919 + k * 31) % 50000)::bigint AS input_tokens,
               (100 + (j * 131 + k * 17) % 4000)::bigint AS output_tokens
    ) AS v
), keys AS (
    -- an event is its key row and its charge (migration 0028)
    INSERT INTO event_keys (event_id, occurred_at) SELECT event_id, occurred_at FROM events
)
INSERT INTO ledger_entries (
    event_id, kind, job_id, agent, model, provider, tier, catalog_version, occurred_at,
    billing_day, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
    reasoning_tokens, event_count, unpriced_count, cost_usd, provider_cost_usd, price_input,
    price_output, price_cache_read, price_cache_write, price_reasoning, price_per_request)
SELECT e.event_id, 'charge', e.job_id, e.agent, e.model, e.provider, p.tier, p.version_id,
       e.occurred_at, (e.occurred_at AT TIME ZONE 'UTC')::date, e.input_tokens,
       e.cached_input_tokens, e.cache_write_tokens, e.output_tokens, e.reasoning_tokens,
       1, CASE WHEN p.model_id IS NULL THEN 1 ELSE 0 END,
       -- SPEC §3, per 1M tokens (exact: numeric multiplication, no division)
       ((e.input_tokens - e.cached_input_tokens - e.cache_write_tokens) * p.input
        + e.cached_input_tokens * p.cache_read + e.cache_write_tokens * p.cache_write
        + (e.output_tokens - e.reasoning_tokens) * p.output + e.reasoning_tokens * p.reasoning)
        * 0.000001 + p.per_request,
       e.provider_cost_usd, p.input, p.output, p.cache_read, p.cache_write, p.reasoning,
       p.per_request
FROM events AS e
LEFT JOIN catalog_prices AS p ON p.version_id = $4 AND p.model_id = e.model
RETURNING id
"""

# The service's rollup upserts over one loaded chunk's entries (reconciliation's too: the
# scrape reads its last two days).
_CHUNK = "ledger_entries WHERE id = ANY($1::bigint[])"
CHUNK_UPSERTS = (*upserts(_CHUNK).values(), reconciliation.upsert(_CHUNK))

CHECKS = {
    **INVARIANT_CHECKS,
    "rollup_usage": _rollup_check(
        "rollup_usage",
        {c: c for c in ("agent", "model", "provider", "tier")},
    ),
}


@dataclass
class Measurement:
    workers: int
    jobs: int
    events: int
    load_seconds: float
    series: int
    bytes: int
    scrapes: int
    p50_ms: float
    p99_ms: float
    luc_cpu_ms_per_scrape: float | None
    postgres_cpu_ms_per_scrape: float | None


async def load_jobs(url: str, first: int, last: int, events_per_job: int) -> int:
    """Append jobs [first, last) to the ledger and roll them up, a chunk per transaction;
    returns the events written."""
    conn = await connect(url)
    written = 0
    try:
        version = await conn.fetchval("SELECT min(id) FROM catalog_versions")
        for lo in range(first, last, CHUNK_JOBS):
            hi = min(last, lo + CHUNK_JOBS)
            async with conn.transaction():
                rows = await conn.fetch(LOAD_CHUNK, lo, hi, events_per_job, version)
                ids = [r["id"] for r in rows]
                for upsert in CHUNK_UPSERTS:
                    await conn.execute(upsert, ids)
            written += len(ids)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return written


@dataclass
class Ledger:
    """One size: its own database and ``luc serve``, so sizes are scraped side by side."""

    jobs: int
    db: BenchDatabase
    server: ServerProcess | None = None
    events: int = 0
    load_seconds: float = 0.0


def scrape_side_by_side(ledgers: Sequence[Ledger], count: int, workers: int) -> list[Measurement]:
    """Three warm-up scrapes each, then ``count`` rounds scraping every size in turn, so a
    noisy neighbour slows all sizes alike; CPU is read per server (its workers included)
    and per PostgreSQL.

    Scraped with the benchmarks' minimal keep-alive client (``bench.loadgen``): httpx
    spent ≈ 1.3 ms of this process's time reading a 90 KB answer, as much as a third of
    the scrape it timed; Prometheus reads it in a fraction of that."""
    servers = [ledger.server for ledger in ledgers if ledger.server is not None]
    assert len(servers) == len(ledgers), "start the servers first"
    seconds: list[list[float]] = [[] for _ in ledgers]
    bodies = [""] * len(ledgers)
    meters = [
        CpuMeter(server.pid, ledger.db.postmaster_pid)
        for server, ledger in zip(servers, ledgers, strict=True)
    ]

    async def scrape(connection: Connection) -> tuple[float, str]:
        started = time.perf_counter()
        answer = await connection.request("GET", "/metrics")
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"/metrics answered {answer.status_code}: {answer.text[:200]}")
        return elapsed, answer.text

    async def run() -> None:
        connections = [Connection(server.base_url, {}) for server in servers]
        try:
            for connection in connections:
                await connection.open()
                for _ in range(3):
                    await scrape(connection)
            with contextlib.ExitStack() as stack:
                for meter in meters:
                    stack.enter_context(meter)
                for _ in range(count):
                    for i, connection in enumerate(connections):
                        elapsed, bodies[i] = await scrape(connection)
                        seconds[i].append(elapsed)
        finally:
            for connection in connections:
                await connection.close()

    run_loop(run())

    def per_scrape(cpu: float | None) -> float | None:
        return None if cpu is None else cpu / count * 1000

    return [
        Measurement(
            workers=workers,
            jobs=ledger.jobs,
            events=ledger.events,
            load_seconds=round(ledger.load_seconds, 2),
            series=sum(1 for line in body.splitlines() if line and not line.startswith("#")),
            bytes=len(body.encode()),
            scrapes=count,
            p50_ms=percentile(timings, 0.5) * 1000,
            p99_ms=percentile(timings, 0.99) * 1000,
            luc_cpu_ms_per_scrape=per_scrape(meter.server),
            postgres_cpu_ms_per_scrape=per_scrape(meter.postgres),
        )
        for ledger, timings, body, meter in zip(ledgers, seconds, bodies, meters, strict=True)
    ]


def _sizes(text: str) -> list[int]:
    try:
        values = sorted({int(v.replace("_", "")) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 100,100000, got {text!r}"
        ) from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("each size must be at least 1 job")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.metrics",
        description="Scrape /metrics at growing numbers of jobs in the ledger; report render "
        "time and series count at each size and the ratio largest/smallest.",
    )
    parser.add_argument(
        "--jobs",
        type=_sizes,
        default=[100, 100_000],
        help="ledger sizes in jobs, comma-separated (default: 100,100000)",
    )
    parser.add_argument("--events-per-job", type=int, default=3, help="default: 3")
    parser.add_argument("--scrapes", type=int, default=20, help="timed scrapes per size (20)")
    parser.add_argument(
        "--workers",
        type=positive_numbers,
        default=[1, 2],
        help="LUC_WORKERS of luc serve, one series of scrapes each (default: 1,2)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    if args.events_per_job < 1 or args.scrapes < 2:
        parser.error("--events-per-job must be at least 1 and --scrapes at least 2")
    return args


def report(results: Sequence[Measurement], workers_counts: Sequence[int]) -> dict[int, float]:
    """Print the table and, per worker count, p50 at the largest size over the smallest."""

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    print()
    print_table(
        [
            "jobs in the ledger",
            "workers",
            "events",
            "series",
            "bytes",
            "p50 ms",
            "p99 ms",
            "LUC CPU ms/scrape",
            "PostgreSQL CPU ms/scrape",
        ],
        [
            [
                f"{m.jobs:,}",
                str(m.workers),
                f"{m.events:,}",
                str(m.series),
                f"{m.bytes:,}",
                ms(m.p50_ms),
                ms(m.p99_ms),
                ms(m.luc_cpu_ms_per_scrape),
                ms(m.postgres_cpu_ms_per_scrape),
            ]
            for m in results
        ],
    )
    print("(LUC CPU: luc serve's processes, its workers included)")
    ratios = {}
    print()
    for workers in workers_counts:
        sizes = [m for m in results if m.workers == workers]
        first, last = sizes[0], sizes[-1]
        ratio = ratios[workers] = last.p50_ms / first.p50_ms
        verdict = "flat" if meets(ratio, FLAT_TARGET, at_most=True) else "NOT flat"
        print(
            f"{workers} worker{'s' if workers > 1 else ''}: p50 at {last.jobs:,} jobs / p50 at "
            f"{first.jobs:,} jobs = {ratio:.2f} ({verdict}: target ≤ {FLAT_TARGET}); "
            f"series {first.series} → {last.series}"
        )
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    print(
        f"/metrics benchmark: {', '.join(f'{n:,}' for n in args.jobs)} jobs × "
        f"{args.events_per_job} events, {args.scrapes} timed scrapes per size, "
        f"workers {', '.join(map(str, args.workers))}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="luc-bench-")))
        ledgers = [Ledger(size, stack.enter_context(scratch_database())) for size in args.jobs]
        for ledger in ledgers:
            started = time.perf_counter()
            ledger.events = run_loop(load_jobs(ledger.db.url, 0, ledger.jobs, args.events_per_job))
            ledger.load_seconds = time.perf_counter() - started
            print(
                f"  loaded {ledger.jobs:>9,} jobs, {ledger.events:>9,} events "
                f"in {ledger.load_seconds:.1f} s",
                flush=True,
            )

        def servers(workers: int, _: contextlib.ExitStack) -> list[ServerProcess]:
            # The same ledgers, scraped through servers started with this many workers.
            started = [
                ServerProcess(
                    ledger.db.url,
                    tmp / f"server-{ledger.jobs}-{workers}.log",
                    defaults={},
                    LUC_METRICS_PUBLIC="1",
                    LUC_WORKERS=str(workers),
                )
                for ledger in ledgers
            ]
            for ledger, server in zip(ledgers, started, strict=True):
                ledger.server = server
            return started

        results = [
            m
            for _, measured in per_worker_count(
                args.workers,
                servers,
                lambda workers, _: scrape_side_by_side(ledgers, args.scrapes, workers),
            )
            for m in measured
        ]
        checks = {
            ledger.jobs: run_loop(check_invariant(ledger.db.url, ledger.events, CHECKS))
            for ledger in ledgers
        }
        embedded = all(ledger.db.embedded for ledger in ledgers)
        events = sum(ledger.events for ledger in ledgers)

    ratios = report(results, args.workers)
    ok = all(check["ok"] for check in checks.values())
    if ok:
        print(
            f"check: every rollup equals the sum of its ledger entries, every event has one "
            f"charge ({events:,} events): OK"
        )
    else:
        print(f"check FAILED: {json.dumps(checks)}")
    document: dict[str, Any] = {
        "benchmark": "metrics",
        "started_at": started_at.isoformat(),
        "machine": machine(),
        "config": {
            "jobs": args.jobs,
            "events_per_job": args.events_per_job,
            "scrapes": args.scrapes,
            "workers": args.workers,
            "database": "embedded" if embedded else "LUC_DATABASE_URL",
        },
        "measurements": [asdict(m) for m in results],
        "p50_ratio_largest_over_smallest": {w: round(r, 3) for w, r in ratios.items()},
        "target": {
            "p50_ratio_at_most": FLAT_TARGET,
            "met": all(meets(r, FLAT_TARGET, at_most=True) for r in ratios.values()),
        },
        "checks": checks,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
