"""Read paths with 10 thousand and with 10 million ledger rows, side by side (issue 9 (d)).

``python -m bench.reads`` (part of ``make bench``) starts, per ledger size, a scratch
PostgreSQL and a ``luc serve``, and fills the ledger straight in SQL: ``INSERT … SELECT``
over ``generate_series`` writes the usage events and their charges (``bench.metrics``'
``LOAD_CHUNK``: four agents, every catalog model, a few unpriced, over the last 30 days),
then each rollup is rebuilt from the whole ledger with the service's own statements
(``service.rollups.queries``, without the batch filter), so the rollups are what ingest
would have made. It checks that every rollup equals its ledger entries (EXCEPT both ways),
vacuums and analyzes, then measures over loopback, at 1 and at 16 connections:

- job detail: ``GET /v1/jobs/{id}`` for random jobs;
- agent series: ``GET /v1/agents/{agent}?from=&to=`` on UTC midnights (31 days);
- usage: ``GET /v1/usage?group_by=agent,day&from=&to=`` on the same midnights.

Sizes are measured in turns (a slice of each query on each size, several rounds), so a
noisy neighbour slows both alike. The figure that matters is p99 at the large size over
p99 at the small one: a read that scans the ledger grows with it; one served from a
rollup or an index does not. The ledgers are loaded once; the servers are started once
per ``--workers`` count (``LUC_WORKERS``; 1 and 2 by default) and measured in turn.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchDatabase,
    CpuMeter,
    machine,
    meets,
    met_word,
    per_worker_count,
    positive_numbers,
    print_table,
    run_loop,
    scratch_database,
)
from bench.ingest import check_invariant
from bench.loadgen import Call, Run, closed_loop, expect_status
from bench.metrics import CHECKS, LOAD_CHUNK
from service.auth.keys import create_key
from service.db import connect
from service.reconciliation import queries as reconciliation
from service.rollups.queries import upserts
from tests.support.servers import ServerProcess

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "reads.json"
EVENTS_PER_JOB = 4
CHUNK_JOBS = 10_000
AGENTS = ("ACHEEVY", "Boomer_Ang", "ORACLE", "ByteRover")
CONNECTIONS = (1, 16)

# Issue 9 §4 (d).
TARGET_P99_RATIO = 1.2
TARGET_P99_MS = {1: 2.0, 16: 10.0}

# The service's rollup upserts over the whole ledger instead of one batch's entries: the
# same GROUP BYs and measures, so a rebuilt rollup is what ingest would have made.
REBUILD_ROLLUPS = (*upserts("ledger_entries").values(), reconciliation.upsert("ledger_entries"))


@dataclass
class Ledger:
    rows: int
    db: BenchDatabase
    server: ServerProcess | None = None
    read_key: str = ""
    jobs: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.rows:,}"


async def _loader(url: str) -> Any:
    conn = await connect(url)
    # A bulk load that a crash may lose: no need to wait for each commit's WAL flush.
    await conn.execute("SET synchronous_commit = off; SET work_mem = '256MB'")
    return conn


async def load(ledger: Ledger, parallel: int = 2) -> None:
    """Events and charges for ``rows // EVENTS_PER_JOB`` jobs, then every rollup rebuilt."""
    ledger.jobs = max(1, ledger.rows // EVENTS_PER_JOB)
    conns = [await _loader(ledger.db.url) for _ in range(parallel)]
    try:
        version = await conns[0].fetchval("SELECT min(id) FROM catalog_versions")
        chunks = iter(range(0, ledger.jobs, CHUNK_JOBS))

        async def fill(conn: Any) -> None:
            for lo in chunks:
                hi = min(ledger.jobs, lo + CHUNK_JOBS)
                await conn.execute(LOAD_CHUNK, lo, hi, EVENTS_PER_JOB, version)

        started = time.perf_counter()
        await asyncio.gather(*(fill(c) for c in conns))
        ledger.timings["load_s"] = time.perf_counter() - started

        started = time.perf_counter()
        statements = iter(REBUILD_ROLLUPS)

        async def rebuild(conn: Any) -> None:
            for sql in statements:
                await conn.execute(sql)

        await asyncio.gather(*(rebuild(c) for c in conns))
        ledger.timings["rollups_s"] = time.perf_counter() - started

        started = time.perf_counter()
        ledger.check = await check_invariant(ledger.db.url, ledger.jobs * EVENTS_PER_JOB, CHECKS)
        ledger.timings["check_s"] = time.perf_counter() - started

        # Set the visibility map and statistics now, so autovacuum does not wake up in the
        # middle of the measurement.
        started = time.perf_counter()
        await conns[0].execute("VACUUM (ANALYZE)")
        with contextlib.suppress(Exception):
            await conns[0].execute("CHECKPOINT")
        ledger.timings["vacuum_s"] = time.perf_counter() - started

        _, ledger.read_key = await create_key(conns[0], "bench-reader", "read")
    finally:
        for c in conns:
            await c.close()


def read_calls(kind: str, ledger: Ledger, count: int, rng: random.Random) -> list[Call]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lo = (today - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hi = (today + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "job detail":
        return [Call("GET", f"/v1/jobs/job-{rng.randrange(ledger.jobs):07d}") for _ in range(count)]
    if kind == "agent series":
        return [Call("GET", f"/v1/agents/{AGENTS[i % 4]}?from={lo}&to={hi}") for i in range(count)]
    return [Call("GET", f"/v1/usage?group_by=agent,day&from={lo}&to={hi}")] * count


KINDS = ("job detail", "agent series", "usage by agent, day")


Cells = dict[tuple[str, int, int, int], Run]
"""(query, connections, ledger rows, workers) → its run."""


async def measure(
    ledgers: Sequence[Ledger],
    requests: int,
    rounds: int,
    cap_seconds: float,
    seed: int,
    workers: int,
) -> Cells:
    """Every (query, connections) on every size, in ``rounds`` turns, with the servers
    running ``workers`` workers each."""
    rng = random.Random(seed)
    cells: Cells = {}
    for kind in KINDS:
        # Warm-up at each connection count measured: plans, caches and the key in every
        # worker, and each worker's pool grown to what the load keeps open (with only one
        # connection, one worker was warmed and the pool's growth, a connection and its
        # prepared statements at a time, fell in the first 16-connection cell's p99).
        for connections in CONNECTIONS:
            for ledger in ledgers:
                assert ledger.server is not None
                await closed_loop(
                    "warm-up", ledger.server.base_url,
                    read_calls(kind, ledger, 50 * connections, rng), connections,
                    CpuMeter(None, None), expect_status(200),
                    {"authorization": f"Bearer {ledger.read_key}"}, max_seconds=cap_seconds,
                )  # fmt: skip
        for connections in CONNECTIONS:
            for _ in range(rounds):
                for ledger in ledgers:
                    assert ledger.server is not None
                    run = await closed_loop(
                        kind,
                        ledger.server.base_url,
                        read_calls(kind, ledger, max(connections, requests // rounds), rng),
                        connections,
                        CpuMeter(ledger.server.pid, ledger.db.postmaster_pid),
                        expect_status(200),
                        {"authorization": f"Bearer {ledger.read_key}"},
                        max_seconds=cap_seconds,
                    )
                    cell = cells.setdefault(
                        (kind, connections, ledger.rows, workers), Run(kind, connections)
                    )
                    cell.add(run)
            small, large = (cells[kind, connections, ledger.rows, workers] for ledger in ledgers)
            print(
                f"  {kind:<20} ×{connections:<3} workers={workers} p99 {small.ms(0.99):8.2f} ms → "
                f"{large.ms(0.99):8.2f} ms  {large.spread}",
                flush=True,
            )
    return cells


def report(ledgers: Sequence[Ledger], cells: Cells, workers_counts: Sequence[int]) -> list[Any]:
    small, large = ledgers
    rows: list[list[str]] = []
    verdicts: list[dict[str, Any]] = []
    for workers in workers_counts:
        for kind in KINDS:
            for connections in CONNECTIONS:
                a = cells[kind, connections, small.rows, workers]
                b = cells[kind, connections, large.rows, workers]
                ratio = b.ms(0.99) / a.ms(0.99)
                server, postgres = b.cpu_us("server"), b.cpu_us("postgres")
                rows.append(
                    [kind, str(workers), str(connections), f"{a.ms(0.5):.2f}",
                     f"{a.ms(0.99):.2f}", f"{b.ms(0.5):.2f}", f"{b.ms(0.99):.2f}",
                     f"{ratio:.2f}", f"{b.per_s:,.0f}",
                     "n/a" if server is None else f"{server:,.0f}",
                     "n/a" if postgres is None else f"{postgres:,.0f}",
                     f"{a.requests:,} / {b.requests:,}"]
                )  # fmt: skip
                met = meets(ratio, TARGET_P99_RATIO, at_most=True) and meets(
                    b.ms(0.99), TARGET_P99_MS[connections], at_most=True
                )
                verdicts.append(
                    {
                        "query": kind,
                        "workers": workers,
                        "connections": connections,
                        "p99_ratio": round(ratio, 3),
                        "p99_ms_large": round(b.ms(0.99), 3),
                        "met": met,
                    }
                )
    print()
    s, g = small.label, large.label
    print_table(
        ["query", "workers", "connections", f"p50 ms @{s}", f"p99 ms @{s}", f"p50 ms @{g}",
         f"p99 ms @{g}", "p99 ratio", f"req/s @{g}", f"LUC CPU µs/req @{g}",
         f"PostgreSQL CPU µs/req @{g}", "requests"],
        rows,
    )  # fmt: skip
    print(
        f"(targets: p99 @{g} ≤ {TARGET_P99_RATIO} × p99 @{s}, and ≤ "
        f"{TARGET_P99_MS[1]} ms at one connection, ≤ {TARGET_P99_MS[16]} ms at 16; "
        "LUC CPU: luc serve's processes, its workers included)"
    )
    for v in verdicts:
        print(
            f"{v['query']} ×{v['connections']}, {v['workers']} worker"
            f"{'s' if v['workers'] > 1 else ''}: p99 ratio {v['p99_ratio']:.2f}, "
            f"p99 {v['p99_ms_large']:.2f} ms: {met_word(v['met'])}"
        )
    return verdicts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reads",
        description="Job detail, agent series and usage p50/p99 at 1 and 16 connections with "
        "a small and a large ledger, loaded in SQL, side by side.",
    )
    parser.add_argument("--quick", action="store_true", help="100,000 rows, fewer requests")
    parser.add_argument(
        "--ledger-rows",
        type=lambda v: int(v.replace("_", "").replace(",", "")),
        default=None,
        help="rows of the large ledger (default 10,000,000; 100,000 with --quick)",
    )
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=None, help="per cell (1000; quick 200)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--cap-seconds", type=float, default=None, help="longest slice (10 s; quick 3 s)"
    )
    parser.add_argument("--workers", type=positive_numbers, default=[1, 2], help="LUC_WORKERS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.ledger_rows is None:
        args.ledger_rows = 100_000 if args.quick else 10_000_000
    if args.requests is None:
        args.requests = 200 if args.quick else 1000
    if args.cap_seconds is None:
        args.cap_seconds = 3.0 if args.quick else 10.0
    if args.ledger_rows <= args.small_rows:
        parser.error("--ledger-rows must exceed --small-rows")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    print(
        f"reads: ledgers of {args.small_rows:,} and {args.ledger_rows:,} rows, "
        f"{args.requests} requests per query and connection count, workers {args.workers}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="luc-bench-")))
        ledgers = [
            Ledger(rows, stack.enter_context(scratch_database()))
            for rows in (args.small_rows, args.ledger_rows)
        ]
        for ledger in ledgers:
            run_loop(load(ledger))
            t = ledger.timings
            print(
                f"  {ledger.rows:>12,} rows: loaded in {t['load_s']:.1f} s, rollups rebuilt in "
                f"{t['rollups_s']:.1f} s, checked in {t['check_s']:.1f} s, vacuumed in "
                f"{t['vacuum_s']:.1f} s",
                flush=True,
            )

        def servers(workers: int, _: contextlib.ExitStack) -> list[ServerProcess]:
            # The same ledgers, read through servers started with this many workers.
            started = [
                ServerProcess(
                    ledger.db.url,
                    tmp / f"server-{ledger.rows}-{workers}.log",
                    defaults={},
                    LUC_RATE_LIMIT_PER_SECOND="0",
                    LUC_WORKERS=str(workers),
                )
                for ledger in ledgers
            ]
            for ledger, server in zip(ledgers, started, strict=True):
                ledger.server = server
            return started

        cells: Cells = {}
        for _, cells_of_count in per_worker_count(
            args.workers,
            servers,
            lambda workers, _: run_loop(
                measure(ledgers, args.requests, args.rounds, args.cap_seconds, args.seed, workers)
            ),
        ):
            cells |= cells_of_count
        embedded = all(ledger.db.embedded for ledger in ledgers)

    verdicts = report(ledgers, cells, args.workers)
    ok = all(ledger.check["ok"] for ledger in ledgers)
    print()
    if ok:
        print(
            "check: every rollup equals the sum of its ledger entries, every event has one "
            "charge, at each size: OK"
        )
    else:
        print(f"check FAILED: {json.dumps({ledger.rows: ledger.check for ledger in ledgers})}")
    document = {
        "benchmark": "reads",
        "started_at": started_at.isoformat(),
        "machine": machine(),
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "events_per_job": EVENTS_PER_JOB,
            "database": "embedded" if embedded else "LUC_DATABASE_URL",
        },
        "ledgers": [
            {"rows": ledger.rows, "jobs": ledger.jobs, "timings_s": ledger.timings}
            for ledger in ledgers
        ],
        "cells": [
            {"ledger_rows": rows, "workers": workers, **run.as_json()}
            for (_, _, rows, workers), run in cells.items()
        ],
        "verdicts": verdicts,
        "targets": {"p99_ratio_at_most": TARGET_P99_RATIO, "p99_ms_at_most": TARGET_P99_MS},
        "check": {ledger.rows: ledger.check for ledger in ledgers},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
