"""Every ingest path against its reference, measured in the same run (issue 9 §3, §4).

``python -m bench.ingest_paths`` (part of ``make bench``) starts a scratch PostgreSQL, one
``luc serve`` that stores events and one started with ``LUC_INGEST_PERSIST=0`` (validates,
prices and answers, stores nothing), and drives both over loopback from this process:

- B3: ``GET /healthz`` at one connection, the floor under every latency below;
- B1 (``COPY`` of the identical ledger rows, as ``bench.ingest`` measures it) and B2 (the
  same batches to the server that stores nothing), then batch ingest with keys spread as
  in real traffic, and (c) the same with every event on one job and one agent (hot rows);
- (b) single events (``POST /v1/events``, group commit) at 1, 8 and 64 clients beside B2 at
  the same concurrency, the two alternating in ``--single-rounds`` slices each so that the
  machine's changes of pace fall on both alike, then paced at half the saturated rate for
  the latency target;
- a run where a tenth of every batch replays events already stored (same content: each
  must come back ``duplicate``).

After the batch runs and again after the replays it checks in SQL that every rollup equals
the sum of its ledger entries (EXCEPT both ways) and that each stored event has exactly one
charge; the exit status is non-zero when not.

Storage (issue 18): the bytes on disk of every relation of schema public (heaps, indexes,
TOAST, partitions included), read before and after the batch runs and after the single
events, and the WAL written while the storing runs ran, per event they stored: the event's
own rows (every table but the rollups), the rollups (``rollup_*``), the total against the
target of 400 bytes, and the WAL.

All of it once per ``--workers`` count (``LUC_WORKERS`` of both servers; 1 and 2 by
default), each on a database of its own with the same events. It prints markdown tables
and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from bench.harness import (
    BenchDatabase,
    CpuMeter,
    Storage,
    machine,
    per_worker_count,
    positive_numbers,
    print_table,
    print_verdicts,
    relation_sizes,
    run_loop,
    scratch_database,
    verdict,
    wal_lsn,
)
from bench.ingest import (
    CREATE_REFERENCE_TABLES,
    Batch,
    _checkpoint,
    check_invariant,
    copy_batches,
    make_batches,
)
from bench.loadgen import Answer, Call, Run, closed_loop, expect_status, paced
from bench.metrics import CHECKS
from service.budgets.models import NewBudget
from service.budgets.service import create_budget
from service.catalog.service import load_catalog
from service.db import Connection, connect
from service.pricing.catalog import Catalog
from tests.support.servers import ServerProcess

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "ingest_paths.json"
HOT_JOB, HOT_AGENT = "job-hot", "ACHEEVY"
REPLAY_SHARE = 0.10

# Issue 9 §4.
TARGET_BATCH_OVER_B1 = 0.5
TARGET_SINGLE_OVER_B2 = 0.6
TARGET_SINGLE_P99_MS = 5.0
TARGET_HOT_OVER_SPREAD = 0.9
TARGET_HOT_P99_OVER_SPREAD = 2.0
# Issue 18: tables and indexes on disk per stored event, rollups included.
TARGET_BYTES_PER_EVENT = 400.0


class BatchAnswer(msgspec.Struct):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int


_answer = msgspec.json.Decoder(BatchAnswer)


def expect_batch(duplicate_share: float = 0.0) -> Any:
    """Every event accepted, or exactly the replayed share answered ``duplicate``."""

    def check(call: Call, response: Answer) -> None:
        if response.status_code != 200:
            raise RuntimeError(f"batch: {response.status_code} {response.text[:300]}")
        answer = _answer.decode(response.content)
        duplicates = round(call.events * duplicate_share)
        if (answer.accepted, answer.duplicates) != (call.events - duplicates, duplicates):
            raise RuntimeError(f"batch of {call.events}: unexpected answer {answer}")

    return check


# Workload ---------------------------------------------------------------------------------


def _events(batch: Batch) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = msgspec.json.decode(batch.body)["events"]
    return events


def batch_calls(bodies: Sequence[list[dict[str, Any]]]) -> list[Call]:
    return [
        Call("POST", "/v1/events/batch", msgspec.json.encode({"events": b}), len(b)) for b in bodies
    ]


def hot(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events, all on one job and one agent: every batch upserts the same rows."""
    return [{**e, "job_id": HOT_JOB, "agent": HOT_AGENT} for e in events]


def with_replays(
    fresh: list[dict[str, Any]], stored: Sequence[dict[str, Any]], offset: int
) -> list[dict[str, Any]]:
    """``fresh`` with its first tenth swapped for events already stored (identical)."""
    count = round(len(fresh) * REPLAY_SHARE)
    replays = [stored[(offset + i) % len(stored)] for i in range(count)]
    return replays + fresh[count:]


# Runs -------------------------------------------------------------------------------------


async def copy_run(db: BenchDatabase, batches: Sequence[Batch], senders: int) -> Run:
    """B1: COPY the identical ledger rows, one transaction per batch (``bench.ingest``)."""
    meter = CpuMeter(None, db.postmaster_pid)
    seconds = await copy_batches(db.url, batches, senders, "copy_ledger", meter)
    events = sum(len(b.ledger_rows) for b in batches)
    run = Run("B1 COPY ledger rows", senders, len(batches), events, seconds)
    # The Python that does the work of a COPY is this process.
    run.cpu = {"server": meter.client, "postgres": meter.postgres, "client": meter.client}
    return run


async def check_ledger(url: str, events_stored: int) -> dict[str, Any]:
    """Every rollup equals its ledger entries exactly; one charge per stored event."""
    return await check_invariant(url, events_stored, CHECKS)


async def run_all(
    db: BenchDatabase, server: ServerProcess, dry: ServerProcess, args: argparse.Namespace
) -> dict[str, Any]:
    conn = await connect(db.url)
    try:
        await conn.execute(CREATE_REFERENCE_TABLES)
        catalog = await load_catalog(conn)
    finally:
        await conn.close()
    # Reads sizes and the WAL position, open throughout: a connection that closes in the
    # middle of a run would bill its backend's exit to that run's PostgreSQL CPU.
    probe = await connect(db.url)
    try:
        return await _run_all(db, server, dry, args, catalog, probe)
    finally:
        await probe.close()


async def _run_all(
    db: BenchDatabase,
    server: ServerProcess,
    dry: ServerProcess,
    args: argparse.Namespace,
    catalog: Catalog,
    probe: Connection,
) -> dict[str, Any]:
    headers = db.auth_headers
    stored: list[dict[str, Any]] = []  # every event the storing server has accepted
    runs: dict[str, list[Run]] = {
        "floor": [],
        "batch": [],
        "single": [],
        "replay": [],
        "budgeted": [],
    }
    checks: dict[str, Any] = {}
    storage = {"batch": Storage(), "single": Storage()}
    seed = args.seed * 1000

    async def storing(into: Storage, run: Awaitable[Run]) -> Run:
        """``run``, with the WAL written while it ran added to ``into``: only the runs
        that store, not the harness's CHECKPOINTs, the COPY references or the checks."""
        start = await wal_lsn(probe)
        done = await run
        into.wal_bytes += await wal_lsn(probe) - start
        return done

    def meter(target: ServerProcess) -> CpuMeter:
        return CpuMeter(target.pid, db.postmaster_pid)

    def show(run: Run, extra: str = "") -> None:
        print(
            f"  {run.name:<34} ×{run.concurrency:<3} {run.per_s:>10,.0f}/s  "
            f"p50 {run.ms(0.5):7.2f} ms  p99 {run.ms(0.99):7.2f} ms {extra} {run.spread}",
            flush=True,
        )

    # Warm-up: plans, caches, connections, the catalog of the server that stores nothing.
    warm = make_batches(catalog, 1, 1000, seed=seed)
    await copy_batches(db.url, warm, 1, "copy_ledger", CpuMeter(None, None))
    for target in (server, dry):
        await closed_loop(
            "warm-up", target.base_url, batch_calls([_events(warm[0])]), 1,
            CpuMeter(None, None), expect_batch(), headers,
        )  # fmt: skip
    stored += _events(warm[0])

    # B3: a no-op round trip at one connection.
    noop = [Call("GET", "/healthz")] * args.noop_requests
    runs["floor"].append(
        await closed_loop("B3 GET /healthz (no-op)", server.base_url, noop, 1, meter(server),
                          expect_status(200), headers)
    )  # fmt: skip
    show(runs["floor"][-1])

    # Batches: B1, B2, spread keys, hot keys; per batch size and number of senders.
    storage["batch"].before = await relation_sizes(probe)
    first = len(stored)
    for size in args.batch_sizes:
        for senders in args.senders:
            seed += 1
            count = max(2 * senders, args.batch_events // size)
            spread = make_batches(catalog, count, size, seed=seed, first_batch=seed * count)
            hot_bodies = [
                hot(_events(b)) for b in make_batches(catalog, count, size, seed=seed + 500_000)
            ]
            bodies = [_events(b) for b in spread]
            await _checkpoint(db.url)  # no dirty pages left from the run before
            measured = [
                await copy_run(db, spread, senders),
                await closed_loop("B2 batch, persistence off", dry.base_url,
                                  batch_calls(bodies), senders, meter(dry), expect_batch(),
                                  headers),
                await storing(storage["batch"], closed_loop(
                    "(a) batch, spread keys", server.base_url, batch_calls(bodies), senders,
                    meter(server), expect_batch(), headers)),
                await storing(storage["batch"], closed_loop(
                    "(c) batch, one job and agent (hot)", server.base_url,
                    batch_calls(hot_bodies), senders, meter(server), expect_batch(), headers)),
            ]  # fmt: skip
            for b in bodies:
                stored += b
            stored += [e for b in hot_bodies for e in b]
            for run in measured:
                run.name = f"{run.name} [{size:,}]"
                runs["batch"].append(run)
                show(run)
    storage["batch"].after = storage["single"].before = await relation_sizes(probe)
    storage["batch"].events = len(stored) - first
    first = len(stored)
    checks["after_batches"] = await check_ledger(db.url, len(stored))
    print(f"  check after the batch runs: {'OK' if checks['after_batches']['ok'] else 'FAILED'}")

    # Single events: B2 and group commit at each concurrency, in alternating slices (the
    # machine's pace changes within minutes: a slow spell then falls on both), then paced
    # at half the best.
    for clients in args.clients:
        await _checkpoint(db.url)
        reference = Run("B2 single, persistence off", clients)
        single = Run("(b) single event", clients)
        per_slice = max(clients, args.single_events // args.single_rounds)
        for _ in range(args.single_rounds):
            seed += 1
            fresh = [e for b in make_batches(catalog, 1, per_slice, seed=seed) for e in
                     _events(b)]  # fmt: skip
            calls = [Call("POST", "/v1/events", msgspec.json.encode(e), 1) for e in fresh]
            reference.add(await closed_loop(reference.name, dry.base_url, calls, clients,
                                            meter(dry), expect_status(201), headers))  # fmt: skip
            single.add(await storing(storage["single"], closed_loop(
                single.name, server.base_url, calls, clients, meter(server),
                expect_status(201), headers)))  # fmt: skip
            stored += fresh
        runs["single"] += [reference, single]
        show(reference)
        show(single)
    best = max((r for r in runs["single"] if r.name.startswith("(b)")), key=lambda r: r.per_s)
    seed += 1
    fresh = [e for b in make_batches(catalog, 1, args.single_events, seed=seed) for e in
             _events(b)]  # fmt: skip
    calls = [Call("POST", "/v1/events", msgspec.json.encode(e), 1) for e in fresh]
    half = await storing(storage["single"], paced(
        "(b) single event at half the best rate", server.base_url, calls, best.per_s / 2,
        max(args.clients), meter(server), expect_status(201), headers,
    ))  # fmt: skip
    stored += fresh
    storage["single"].after = await relation_sizes(probe)
    storage["single"].events = len(stored) - first
    runs["single"].append(half)
    late = f"sent {half.late_ms(0.99):.2f} ms late at p99"
    if half.io_stalled is not None:
        late += f", the machine stalled on IO {half.io_stalled * 1000:.0f} ms"
    show(half, f"(paced at {best.per_s / 2:,.0f}/s, {late})")

    # A tenth of every batch replays stored events: duplicates, counted once.
    seed += 1
    size = min(args.batch_sizes)
    count = max(4, args.batch_events // size)
    bodies = [
        with_replays(_events(b), stored, i * size)
        for i, b in enumerate(make_batches(catalog, count, size, seed=seed))
    ]
    replay = await closed_loop("batch with 10 % replayed duplicates", server.base_url,
                               batch_calls(bodies), max(args.senders), meter(server),
                               expect_batch(REPLAY_SHARE), headers)  # fmt: skip
    replay.name = f"{replay.name} [{size:,}]"
    runs["replay"].append(replay)
    show(replay)
    stored += [e for b in bodies for e in b[round(size * REPLAY_SHARE) :]]
    checks["after_replays"] = await check_ledger(db.url, len(stored))
    print(f"  check after the replays: {'OK' if checks['after_replays']['ok'] else 'FAILED'}")

    # Single events again with two budgets, a deployment's usual case: each group's spend
    # is counted, and its thresholds checked, in the transaction that stores it.
    for budget in BUDGETS:
        await create_budget(probe, budget)
    for clients in args.budget_clients:
        seed += 1
        fresh = [e for b in make_batches(catalog, 1, args.single_events, seed=seed) for e in
                 _events(b)]  # fmt: skip
        calls = [Call("POST", "/v1/events", msgspec.json.encode(e), 1) for e in fresh]
        run = await closed_loop(BUDGETED, server.base_url, calls, clients, meter(server),
                                expect_status(201), headers)  # fmt: skip
        runs["budgeted"].append(run)
        show(run)
        stored += fresh
    if args.budget_clients:
        checks["with_budgets"] = await check_invariant(
            db.url, len(stored), {**CHECKS, "budget_spend": BUDGET_SPEND_CHECK}
        )
        ok = checks["with_budgets"]["ok"]
        print(f"  check with budgets (their spend too): {'OK' if ok else 'FAILED'}")
    return {"runs": runs, "checks": checks, "storage": storage}


BUDGETED = "(b) single event, two budgets"
BUDGETS = [
    NewBudget(scope="global", scope_id=None, period="month", limit_usd=Decimal(1_000_000),
              thresholds=[Decimal("0.5")], hard=False, webhook_url=None, webhook_secret=None),
    NewBudget(scope="agent", scope_id="ACHEEVY", period="day", limit_usd=Decimal(1_000_000),
              thresholds=[Decimal("0.5")], hard=False, webhook_url=None, webhook_secret=None),
]  # fmt: skip
"""What ``BUDGETED`` runs under: spend on every event, and on a quarter of them again."""

# Rows where a budget's spend differs from its entries' cost on the ledger, written apart
# from LUC's own statements (only the two scopes and the one measure BUDGETS use).
BUDGET_SPEND_CHECK = """
WITH truth AS (
    SELECT b.id AS budget_id, luc_period_start(b.period, e.occurred_at) AS period_start,
           sum(e.cost_usd) AS spent_usd
    FROM budgets AS b
    JOIN ledger_entries AS e
      ON b.scope = 'global' OR (b.scope = 'agent' AND e.agent = b.scope_id)
    GROUP BY 1, 2
    HAVING COALESCE(sum(e.cost_usd), 0) <> 0
), kept AS (
    SELECT budget_id, period_start, spent_usd FROM budget_spend
)
SELECT count(*)
FROM ((TABLE truth EXCEPT TABLE kept) UNION ALL (TABLE kept EXCEPT TABLE truth)) AS d
"""


# Report -----------------------------------------------------------------------------------


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _row(run: Run, workers: int, ratio: float | None, over: str) -> list[str]:
    return [
        run.name,
        str(workers),
        str(run.concurrency),
        f"{run.events or run.requests:,}",
        f"{run.per_s:,.0f}",
        _f(ratio, ".2f") + (f" × {over}" if ratio is not None else ""),
        f"{run.ms(0.5):.2f}" if run.latencies else "–",
        f"{run.ms(0.99):.2f}" if run.latencies else "–",
        _f(run.per_core_s if run.events else None, ",.0f"),
        _f(run.cpu_us("server") if run.events else None, ".1f"),
        _f(run.cpu_us("postgres") if run.events else None, ".1f"),
    ]


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n > 1 else ''}"


def report(results: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Print the tables, the runs' then storage's; return each figure with its target."""
    rows: list[list[str]] = []
    verdicts: list[dict[str, Any]] = []

    noop_p99: dict[int, float] = {}
    for workers, result in results:
        runs, w = result["runs"], _workers(workers)
        noop = runs["floor"][0]
        noop_p99[workers] = round(noop.ms(0.99), 3)
        rows.append(_row(noop, workers, None, ""))
        batch = runs["batch"]
        for i in range(0, len(batch), 4):
            b1, b2, spread, hot_run = batch[i : i + 4]
            key = f"{spread.name.split('[')[1].rstrip(']')} events, ×{spread.concurrency}, {w}"
            rows.append(_row(b1, workers, None, ""))
            rows.append(_row(b2, workers, b2.per_s / b1.per_s, "B1"))
            rows.append(_row(spread, workers, spread.per_s / b1.per_s, "B1"))
            rows.append(_row(hot_run, workers, hot_run.per_s / spread.per_s, "(a)"))
            verdicts += [
                verdict(
                    f"(a) batch / B1 ({key})",
                    spread.per_s / b1.per_s,
                    TARGET_BATCH_OVER_B1,
                    at_most=False,
                ),
                verdict(
                    f"(c) hot / spread ({key})",
                    hot_run.per_s / spread.per_s,
                    TARGET_HOT_OVER_SPREAD,
                    at_most=False,
                ),
                verdict(
                    f"(c) hot p99 / spread p99 ({key})",
                    hot_run.ms(0.99) / spread.ms(0.99),
                    TARGET_HOT_P99_OVER_SPREAD,
                    at_most=True,
                ),
            ]
        single = runs["single"]
        for b2, one in zip(single[0:-1:2], single[1:-1:2], strict=True):
            rows.append(_row(b2, workers, None, ""))
            rows.append(_row(one, workers, one.per_s / b2.per_s, "B2"))
            verdicts.append(
                verdict(
                    f"(b) single / B2 (×{one.concurrency}, {w})",
                    one.per_s / b2.per_s,
                    TARGET_SINGLE_OVER_B2,
                    at_most=False,
                )
            )
        half = single[-1]
        rows.append(_row(half, workers, None, ""))
        verdicts.append(
            verdict(
                f"(b) p99 ms at half the saturated rate ({w})",
                half.ms(0.99),
                TARGET_SINGLE_P99_MS,
                at_most=True,
            )
        )
        for run in runs["replay"]:
            rows.append(_row(run, workers, None, ""))
        for run in runs["budgeted"]:
            b2 = next((r for r in single[0:-1:2] if r.concurrency == run.concurrency), None)
            rows.append(_row(run, workers, None if b2 is None else run.per_s / b2.per_s, "B2"))
    print()
    print_table(
        ["run", "workers", "clients", "events", "events/s", "ratio", "p50 ms", "p99 ms",
         "events/s per core", "Python CPU µs/event", "PostgreSQL CPU µs/event"],
        rows,
    )  # fmt: skip
    print(
        "(per core: events per CPU second of luc serve + PostgreSQL; Python CPU: luc serve, "
        "its workers included, or this process for a COPY; p50/p99: per request, a batch "
        "being one request)"
    )
    for workers, p99 in noop_p99.items():
        print(f"B3 no-op p99 at one connection ({_workers(workers)}): {p99:.2f} ms")

    storage = storage_report(results)
    for section, figures in storage.items():
        for workers, pe in figures.items():
            verdicts.append(
                verdict(
                    f"tables + indexes per stored event, bytes ({section} runs, "
                    f"{_workers(workers)})",
                    pe["total"],
                    TARGET_BYTES_PER_EVENT,
                    at_most=True,
                )
            )
    print()
    print_verdicts(verdicts)
    return {"verdicts": verdicts, "noop_p99_ms": noop_p99, "storage": storage}


def storage_report(results: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Print bytes per stored event, the sums and then per table; return them."""
    figures: dict[str, dict[int, dict[str, Any]]] = {}
    rows = []
    for workers, result in results:
        for section, storage in result["storage"].items():
            pe = figures.setdefault(section, {})[workers] = storage.per_event()
            rows.append(
                [f"{section} runs", str(workers), f"{pe['events']:,}",
                 f"{pe['per_event_rows']:.1f}", f"{pe['rollups']:.1f}", f"{pe['total']:.1f}",
                 f"{pe['wal']:.1f}"]
            )  # fmt: skip
    print()
    print_table(
        ["stored by", "workers", "events", "event rows B/event", "rollups B/event",
         "tables + indexes B/event", "WAL B/event"],
        rows,
    )  # fmt: skip
    print(
        "(bytes on disk the runs added, per event they stored: heaps, indexes and TOAST of "
        "schema public, partitions included, not the benchmark's COPY tables; event rows: "
        "every table but rollup_*; WAL: written while the storing runs ran, without the "
        "CHECKPOINT before each batch setting, but with the full-page images it causes at "
        "the first change of each page after it)"
    )
    columns = [(section, workers) for section in figures for workers in figures[section]]
    parts = sorted(
        {
            (table, part)
            for section, workers in columns
            for table, sizes in figures[section][workers]["tables"].items()
            for part in sizes
        }
    )
    detail = [
        [
            table,
            part,
            *(
                f"{figures[section][workers]['tables'].get(table, {}).get(part, 0.0):.1f}"
                for section, workers in columns
            ),
        ]
        for table, part in parts
    ]
    print()
    print_table(
        ["table", "part", *(f"{section}, {_workers(workers)}" for section, workers in columns)],
        detail,
    )
    print("(B per stored event)")
    return figures


# Command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_paths",
        description="Batch, hot-key, single-event and replayed ingest over HTTP beside their "
        "references (COPY, the same server with persistence off, a no-op endpoint).",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--batch-sizes", type=positive_numbers, default=[1000, 5000])
    parser.add_argument("--senders", type=positive_numbers, default=[1, 2], help="batch senders")
    parser.add_argument("--batch-events", type=int, default=40_000, help="events per batch run")
    parser.add_argument("--clients", type=positive_numbers, default=[1, 8, 64], help="single-event")
    parser.add_argument("--single-events", type=int, default=4000, help="per single run")
    parser.add_argument(
        "--single-rounds",
        type=int,
        default=4,
        help="alternating slices of B2 and (b) at each number of clients",
    )
    parser.add_argument("--noop-requests", type=int, default=3000)
    parser.add_argument(
        "--budget-clients",
        type=positive_numbers,
        default=[8],
        help="single-event clients of the runs with two budgets (after the others; compared "
        "with B2 at as many clients when --clients has it)",
    )
    parser.add_argument("--workers", type=positive_numbers, default=[1, 2], help="LUC_WORKERS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.single_rounds < 1:
        parser.error("--single-rounds must be at least 1")
    if args.quick:
        args.batch_events = min(args.batch_events, 10_000)
        args.single_events = min(args.single_events, 1000)
        args.noop_requests = min(args.noop_requests, 1000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    print(
        f"ingest paths: batches of {args.batch_sizes} × senders {args.senders}, "
        f"single events at {args.clients} clients, workers {args.workers}",
        flush=True,
    )
    env = {
        "LUC_MAX_BATCH_EVENTS": str(max(5000, *args.batch_sizes)),
        "LUC_RATE_LIMIT_PER_SECOND": "0",  # a benchmark is not abuse
    }
    databases: dict[int, BenchDatabase] = {}

    def servers(workers: int, stack: contextlib.ExitStack) -> tuple[ServerProcess, ServerProcess]:
        """(storing, persistence off), on a database of its own per worker count: the same
        events (same seeds), stored on the same empty tables, and references (B1, B2, B3)
        measured beside them."""
        print(f"{_workers(workers)} (LUC_WORKERS={workers}):", flush=True)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="luc-bench-")))
        db = databases[workers] = stack.enter_context(scratch_database())
        env["LUC_WORKERS"] = str(workers)
        return (
            ServerProcess(db.url, tmp / "server.log", defaults={}, **env),
            ServerProcess(db.url, tmp / "dry.log", defaults={}, **env, LUC_INGEST_PERSIST="0"),
        )

    results = per_worker_count(
        args.workers,
        servers,
        lambda workers, both: run_loop(run_all(databases[workers], *both, args)),
    )
    embedded = all(db.embedded for db in databases.values())

    summary = report(results)
    checks = {workers: result["checks"] for workers, result in results}
    ok = all(c["ok"] for by_run in checks.values() for c in by_run.values())
    print()
    if ok:
        print(
            "check: every rollup equals the sum of its ledger entries and every stored event "
            "has one charge, after each run, with each worker count: OK"
        )
    else:
        print(f"check FAILED: {json.dumps(checks)}")
    document = {
        "benchmark": "ingest_paths",
        "started_at": started_at.isoformat(),
        "machine": machine(),
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "database": "embedded" if embedded else "LUC_DATABASE_URL",
        },
        "runs": {
            group: [
                {**r.as_json(), "workers": workers}
                for workers, result in results
                for r in result["runs"][group]
            ]
            for group in ("floor", "batch", "single", "replay", "budgeted")
        },
        **summary,
        "storage_target_bytes_per_event": TARGET_BYTES_PER_EVENT,
        "checks": checks,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
