"""(f) The metering proxy beside the same calls sent straight to the provider (issue 18).

``python -m bench.proxy`` (part of ``make bench``) starts a scratch PostgreSQL, a fast fake
provider in a process of its own (``bench.fake_upstream``), and two ``luc serve``: one
metered as it runs by default, one with ``LUC_INGEST_PERSIST=0`` (metering off: each call's
usage event is validated and priced, nothing is stored or spooled). It sends the same chat
calls

- straight to the fake provider (the reference),
- through LUC with metering off,
- through LUC metered,

plain and streamed, at 1 and 16 clients, with one worker and with two (``LUC_WORKERS``),
and prints p50, p99 and calls/s of each beside the targets: at one client the proxy adds at
most 1.5 ms p50 and 3 ms p99 over the direct call and metering at most 0.3 ms p50 over the
unmetered proxy; at 16 clients the metered proxy serves at least 0.8 × the unmetered one's
calls/s. The three paths of one setting are measured in alternating rounds, so that a
noisy neighbour on a shared machine weighs on all three alike.

It ends with the exactness check: every call the metered proxy answered is on the ledger
exactly once (its usage event, one charge), nothing else is, and every rollup equals the
sum of its ledger entries. The exit status is non-zero when not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.harness import (
    BenchDatabase,
    CpuMeter,
    machine,
    per_worker_count,
    positive_numbers,
    print_table,
    print_verdicts,
    run_loop,
    scratch_database,
    verdict,
)
from bench.ingest import check_invariant
from bench.loadgen import Answer, Call, Run, closed_loop
from bench.metrics import CHECKS
from service.db import connect
from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.servers import ServerProcess

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "proxy.json"
API_KEY = "sk-or-v1-bench"
MODEL = "google/gemini-3.0-flash"
JOBS = 20

# Issue 18's targets.
TARGET_PROXY_P50_MS = 1.5
TARGET_PROXY_P99_MS = 3.0
TARGET_METERING_P50_MS = 0.3
TARGET_METERED_OVER_UNMETERED = 0.8

PATHS = ("direct", "unmetered", "metered")


# The fake provider ----------------------------------------------------------------------------


@contextmanager
def fake_upstream(log_path: Path) -> Iterator[str]:
    """``bench.fake_upstream`` in a child process; yields its API root."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=log,
        )
    root = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the fake upstream exited: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fake upstream did not start") from None
            time.sleep(0.05)  # polling a child process's readiness, with a deadline
        yield root
    finally:
        process.terminate()
        process.wait(10)


# Calls -----------------------------------------------------------------------------------------


def chat_body(stream: bool) -> bytes:
    return msgspec.json.encode(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "stream": stream,
        }
    )


class _Plain(msgspec.Struct):
    id: str


_plain = msgspec.json.Decoder(_Plain)


def generation_id(answer: Answer, stream: bool) -> str:
    """The id of the generation an answer carries (the usage event's id)."""
    if not stream:
        return _plain.decode(answer.content).id
    first = answer.content.split(b"\n\n", 1)[0].removeprefix(b"data: ")
    return _plain.decode(first).id


@dataclass
class Answered:
    """What the metered proxy answered: every generation id, to find on the ledger."""

    ids: list[str]

    def check(self, stream: bool, keep: bool) -> Any:
        def check(call: Call, answer: Answer) -> None:
            if answer.status_code != 200:
                raise RuntimeError(f"{call.path}: {answer.status_code} {answer.text[:300]}")
            if stream and not answer.content.endswith(b"data: [DONE]\n\n"):
                raise RuntimeError(f"a stream without [DONE]: {answer.text[-300:]}")
            if keep:
                self.ids.append(generation_id(answer, stream))

        return check


# Runs ------------------------------------------------------------------------------------------


@dataclass
class Setting:
    workers: int
    stream: bool
    clients: int

    @property
    def label(self) -> str:
        return (
            f"{'streamed' if self.stream else 'plain'}, ×{self.clients}, "
            f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        )


async def measure(
    setting: Setting,
    targets: dict[str, tuple[str, ServerProcess | None]],
    db: BenchDatabase,
    answered: Answered,
    calls: int,
    rounds: int,
    job_offset: int,
) -> dict[str, Run]:
    """The three paths of one setting, in ``rounds`` alternating slices each."""
    body = chat_body(setting.stream)
    runs = {path: Run(f"{path} ({setting.label})", setting.clients) for path in PATHS}
    per_round = max(setting.clients, calls // rounds)
    for round_ in range(rounds):
        for path in PATHS:
            base_url, server = targets[path]
            if path == "direct":
                url_path = "/api/v1/chat/completions"
                headers = {"authorization": f"Bearer {API_KEY}"}
            else:
                url_path = "/v1/chat/completions"
                job = f"bench-proxy-{(job_offset + round_) % JOBS}"
                headers = {**db.auth_headers, "x-luc-job": job, "x-luc-agent": "BENCH"}
            meter = CpuMeter(server.pid if server else None, db.postmaster_pid)
            run = await closed_loop(
                runs[path].name,
                base_url,
                [Call("POST", url_path, body, 1)] * per_round,
                setting.clients,
                meter,
                answered.check(setting.stream, keep=path == "metered"),
                headers,
            )
            runs[path].add(run)
    return runs


async def warm_up(
    targets: dict[str, tuple[str, ServerProcess | None]], db: BenchDatabase, answered: Answered
) -> None:
    """Connections, plans and caches of both servers, with a few calls of each kind."""
    for stream in (False, True):
        await measure(Setting(1, stream, 4), targets, db, answered, 200, 1, 0)


# The events on the ledger, by their charges: whatever table keeps the events' own ids.
CHARGED_EVENTS = """
    SELECT {} FROM (SELECT DISTINCT event_id FROM ledger_entries WHERE kind = 'charge') AS e
"""


async def ledger_check(url: str, answered: Answered, seconds: float = 120.0) -> dict[str, Any]:
    """Every answered call on the ledger exactly once, and nothing else; rollups exact.

    The usage of the last calls may still be on its way from the spool to the ledger
    (metering is off the call's path): the check waits for it, up to ``seconds``."""
    expected = set(answered.ids)
    deadline = time.monotonic() + seconds
    conn = await connect(url)
    try:
        while True:
            stored = int(await conn.fetchval(CHARGED_EVENTS.format("count(*)")))
            if stored >= len(expected) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # waiting for the writer, with a deadline
        events = [r["event_id"] for r in await conn.fetch(CHARGED_EVENTS.format("event_id"))]
        charges = int(
            await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'charge'")
        )
    finally:
        await conn.close()
    invariant = await check_invariant(url, len(expected), CHECKS)
    missing, unexpected = expected - set(events), set(events) - expected
    ok = (
        invariant["ok"]
        and len(answered.ids) == len(expected)  # the provider never reused an id
        and not missing
        and not unexpected
        and charges == len(expected)
    )
    return {
        **invariant,
        "ok": ok,
        "calls_answered": len(answered.ids),
        "missing_from_ledger": len(missing),
        "not_answered_but_stored": len(unexpected),
        "charges": charges,
    }


# Report ----------------------------------------------------------------------------------------


def _ms(run: Run, q: float) -> str:
    return f"{run.ms(q):.2f}"


def report(results: list[tuple[Setting, dict[str, Run]]]) -> list[dict[str, Any]]:
    rows: list[list[str]] = []
    verdicts: list[dict[str, Any]] = []
    for setting, runs in results:
        direct, unmetered, metered = (runs[p] for p in PATHS)
        for path in PATHS:
            run = runs[path]
            over = "" if path == "direct" else f"+{run.ms(0.5) - direct.ms(0.5):.2f}"
            ratio = "" if path != "metered" else f"{metered.per_s / unmetered.per_s:.2f}"
            rows.append(
                [run.name, f"{run.requests:,}", f"{run.per_s:,.0f}", _ms(run, 0.5),
                 _ms(run, 0.99), over, ratio,
                 "n/a" if run.cpu.get("server") is None else f"{run.cpu_us('server'):.0f}",
                 "n/a" if run.cpu.get("postgres") is None else f"{run.cpu_us('postgres'):.0f}"]
            )  # fmt: skip
        if setting.clients == 1:
            verdicts.append(
                verdict(
                    f"proxy adds, p50 ms ({setting.label})",
                    metered.ms(0.5) - direct.ms(0.5),
                    TARGET_PROXY_P50_MS,
                    at_most=True,
                )
            )
            verdicts.append(
                verdict(
                    f"proxy adds, p99 ms ({setting.label})",
                    metered.ms(0.99) - direct.ms(0.99),
                    TARGET_PROXY_P99_MS,
                    at_most=True,
                )
            )
            verdicts.append(
                verdict(
                    f"metering adds, p50 ms ({setting.label})",
                    metered.ms(0.5) - unmetered.ms(0.5),
                    TARGET_METERING_P50_MS,
                    at_most=True,
                )
            )
        else:
            verdicts.append(
                verdict(
                    f"metered / unmetered calls/s ({setting.label})",
                    metered.per_s / unmetered.per_s,
                    TARGET_METERED_OVER_UNMETERED,
                    at_most=False,
                )
            )
    print()
    print_table(
        ["path", "calls", "calls/s", "p50 ms", "p99 ms", "p50 over direct", "metered/unmetered",
         "LUC CPU µs/call", "PostgreSQL CPU µs/call"],
        rows,
    )  # fmt: skip
    print("(CPU: luc serve's processes, its workers included, and all of PostgreSQL, per call)")
    print()
    print_verdicts(verdicts)
    return verdicts


# Command line ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy",
        description="Chat calls straight to a fake provider, through LUC unmetered and "
        "through LUC metered: p50, p99, calls/s.",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--calls", type=int, default=4000, help="calls per path and setting")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per setting")
    parser.add_argument("--clients", type=positive_numbers, default=[1, 16])
    parser.add_argument("--workers", type=positive_numbers, default=[1, 2])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.quick:
        args.calls = min(args.calls, 800)
        args.rounds = min(args.rounds, 2)
    return args


def servers(
    db: BenchDatabase, tmp: Path, upstream: str, workers: int
) -> tuple[ServerProcess, ServerProcess]:
    """(metered, unmetered), with ``workers`` workers each."""
    env = {
        "OPENROUTER_API_KEY": API_KEY,
        "LUC_OPENROUTER_BASE_URL": upstream,
        "LUC_GATEWAY_CHAIN": "openrouter",
        "LUC_RATE_LIMIT_PER_SECOND": "0",  # a benchmark is not abuse
        "LUC_WORKERS": str(workers),
    }
    metered = ServerProcess(
        db.url, tmp / f"metered-{workers}.log", defaults={}, **env,
        LUC_DATA_DIR=str(tmp / f"metered-{workers}"),
    )  # fmt: skip
    unmetered = ServerProcess(
        db.url, tmp / f"unmetered-{workers}.log", defaults={}, **env,
        LUC_DATA_DIR=str(tmp / f"unmetered-{workers}"), LUC_INGEST_PERSIST="0",
    )  # fmt: skip
    return metered, unmetered


async def run_setting_group(
    db: BenchDatabase,
    upstream: str,
    metered: ServerProcess,
    unmetered: ServerProcess,
    workers: int,
    args: argparse.Namespace,
    answered: Answered,
) -> list[tuple[Setting, dict[str, Run]]]:
    targets: dict[str, tuple[str, ServerProcess | None]] = {
        "direct": (upstream.removesuffix("/api/v1"), None),
        "unmetered": (unmetered.base_url, unmetered),
        "metered": (metered.base_url, metered),
    }
    await warm_up(targets, db, answered)
    results = []
    offset = 0
    for stream in (False, True):
        for clients in args.clients:
            setting = Setting(workers, stream, clients)
            runs = await measure(setting, targets, db, answered, args.calls, args.rounds, offset)
            offset += args.rounds
            for path in PATHS:
                run = runs[path]
                print(
                    f"  {run.name:<44} {run.per_s:>8,.0f} calls/s  "
                    f"p50 {run.ms(0.5):6.2f} ms  p99 {run.ms(0.99):6.2f} ms  {run.spread}",
                    flush=True,
                )
            results.append((setting, runs))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    print(
        f"proxy: {args.calls:,} calls per path at {args.clients} clients, "
        f"workers {args.workers}, plain and streamed",
        flush=True,
    )
    answered = Answered([])
    with (
        tempfile.TemporaryDirectory(prefix="luc-bench-") as folder,
        scratch_database() as db,
        fake_upstream(Path(folder) / "upstream.log") as upstream,
    ):
        tmp = Path(folder)
        by_workers = per_worker_count(
            args.workers,
            lambda workers, _: servers(db, tmp, upstream, workers),
            lambda workers, both: run_loop(
                run_setting_group(db, upstream, *both, workers, args, answered)
            ),
        )
        results = [result for _, group in by_workers for result in group]
        check = run_loop(ledger_check(db.url, answered))
        embedded = db.embedded

    verdicts = report(results)
    print()
    if check["ok"]:
        print(
            f"check: every proxied call on the ledger exactly once ({check['calls_answered']:,} "
            "calls, one charge each), rollups equal the ledger: OK"
        )
    else:
        print(f"check FAILED: {json.dumps(check)}")
    document = {
        "benchmark": "proxy",
        "started_at": started_at.isoformat(),
        "machine": machine(),
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "database": "embedded" if embedded else "LUC_DATABASE_URL",
        },
        "runs": [
            {"setting": vars(s), "runs": {p: r.as_json() for p, r in runs.items()}}
            for s, runs in results
        ],
        "verdicts": verdicts,
        "check": check,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
