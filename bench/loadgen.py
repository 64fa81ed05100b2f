"""Load from this process over loopback: closed-loop clients, or requests paced at a rate.

Each client holds one keep-alive HTTP/1.1 connection, opened before the clock starts, so
a request never pays a TCP handshake. The client is a few lines over asyncio streams
rather than httpx: on a 2-core machine the load generator shares the cores with the
server and PostgreSQL, and httpx spent about 0.7 ms of CPU per request (several ms in its
pool with 64 connections on one client), as much as the server it measured; this costs a
fraction of that. Latency is measured per request; a paced run measures it from the moment
the request was due, so a server that falls behind is charged for the queue it builds (no
coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.harness import CpuMeter, collector_paused, percentile


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    events: int = 0
    """Events the request carries (0 for a read)."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


Check = Callable[[Call, Answer], None]


def expect_status(status: int) -> Check:
    def check(call: Call, response: Answer) -> None:
        if response.status_code != status:
            raise RuntimeError(
                f"{call.method} {call.path}: {response.status_code} {response.text[:300]}"
            )

    return check


@dataclass
class Run:
    """One measured run: what was sent, how long it took, what it cost."""

    name: str
    concurrency: int
    requests: int = 0
    events: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    """Seconds per request."""
    cpu: dict[str, float | None] = field(default_factory=dict)
    """server (luc serve), postgres (the whole server), client (this process)."""
    late: list[float] = field(default_factory=list, repr=False)
    """A paced run's own lateness, seconds per request: from when it was due until the load
    generator's loop got to send it (before waiting for a free connection, which counts
    as latency). Part of every latency measured; shown so that it is not taken for LUC's."""
    connections: Counter[int] = field(default_factory=Counter)
    """The run's connections per process that answered them (the pid ``/readyz`` names):
    with several workers, how the kernel spread them."""
    io_stalled: float | None = None
    """Seconds during which the whole machine waited for IO at once (``CpuMeter``)."""

    def add(self, other: Run) -> None:
        """Fold another slice of the same run in (reads are measured in rounds)."""
        first = self.requests == 0 and self.events == 0
        self.requests += other.requests
        self.events += other.events
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.late += other.late
        self.connections += other.connections
        for who, value in other.cpu.items():
            mine = self.cpu.get(who, 0.0)
            self.cpu[who] = None if value is None or mine is None else mine + value
        if first:
            self.io_stalled = other.io_stalled
        elif self.io_stalled is not None and other.io_stalled is not None:
            self.io_stalled += other.io_stalled
        else:
            self.io_stalled = None  # a part the kernel did not report: the sum is unknown

    @property
    def per_s(self) -> float:
        """Events per second, or requests per second for reads."""
        return (self.events or self.requests) / self.seconds

    def ms(self, q: float) -> float:
        """A latency percentile in milliseconds; NaN when no request was timed (a COPY)."""
        return percentile(self.latencies, q) * 1000 if self.latencies else math.nan

    def late_ms(self, q: float) -> float:
        """A percentile of a paced run's own lateness in milliseconds (NaN if not paced)."""
        return percentile(self.late, q) * 1000 if self.late else math.nan

    def cpu_us(self, who: str) -> float | None:
        """CPU microseconds per event (per request for reads)."""
        value = self.cpu.get(who)
        return None if value is None else value / (self.events or self.requests) * 1e6

    @property
    def per_core_s(self) -> float | None:
        """Events per CPU second of luc serve and PostgreSQL together: events/s per core."""
        server, postgres = self.cpu.get("server"), self.cpu.get("postgres")
        if server is None or postgres is None or server + postgres <= 0:
            return None
        return (self.events or self.requests) / (server + postgres)

    def as_json(self) -> dict[str, Any]:
        def r(value: float | None, digits: int = 2) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "events": self.events,
            "seconds": r(self.seconds, 3),
            "per_s": r(self.per_s, 1),
            "p50_ms": r(self.ms(0.5), 3) if self.latencies else None,
            "p99_ms": r(self.ms(0.99), 3) if self.latencies else None,
            "generator_late_p99_ms": r(percentile(self.late, 0.99) * 1000, 3)
            if self.late
            else None,
            "per_core_s": r(self.per_core_s, 1),
            "cpu_seconds": {k: r(v, 3) for k, v in self.cpu.items()},
            "cpu_us": {k: r(self.cpu_us(k)) for k in self.cpu},
            "connections_per_worker": sorted(self.connections.values(), reverse=True),
        }

    @property
    def spread(self) -> str:
        """``connections 9/7``: how the run's connections fell on the workers (empty with
        one process)."""
        if len(self.connections) < 2:
            return ""
        return "connections " + "/".join(
            str(n) for n in sorted(self.connections.values(), reverse=True)
        )


class Connection:
    """One keep-alive HTTP/1.1 connection to ``luc serve`` (which always sends a length)."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        url = urlsplit(base_url)
        self._address = (url.hostname or "127.0.0.1", url.port or 80)
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head += f"host: {url.netloc}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(*self._address)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def request(self, method: str, path: str, content: bytes | None = None) -> Answer:
        assert self._reader is not None and self._writer is not None
        body = content or b""
        length = f"content-length: {len(body)}\r\n" if content is not None else ""
        self._writer.write(f"{method} {path} HTTP/1.1\r\n{self._head}{length}\r\n".encode() + body)
        status = int((await self._reader.readline()).split()[1])
        size, chunked = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                size = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if not chunked:
            return Answer(status, await self._reader.readexactly(size))
        parts = []
        while chunk := int((await self._reader.readline()).split(b";")[0], 16):
            parts.append(await self._reader.readexactly(chunk))
            await self._reader.readline()
        await self._reader.readline()
        return Answer(status, b"".join(parts))


@contextlib.asynccontextmanager
async def _clients(
    base_url: str, count: int, headers: dict[str, str], run: Run
) -> AsyncIterator[list[Connection]]:
    """``count`` connections, each opened and used once before the clock starts; which
    process answers each goes to ``run.connections``."""
    clients = [
        Connection(base_url, {"content-type": "application/json", **headers}) for _ in range(count)
    ]
    try:
        for c in clients:
            await c.open()
        await asyncio.gather(*(c.request("GET", "/healthz") for c in clients))
        for answer in await asyncio.gather(*(c.request("GET", "/readyz") for c in clients)):
            pid = _pid(answer)
            if pid is not None:  # luc serve says; a fake provider does not
                run.connections[pid] += 1
        yield clients
    finally:
        for c in clients:
            await c.close()


async def closed_loop(
    name: str,
    base_url: str,
    calls: Sequence[Call],
    concurrency: int,
    meter: CpuMeter,
    check: Check,
    headers: dict[str, str] | None = None,
    max_seconds: float | None = None,
) -> Run:
    """``concurrency`` clients, each sending its next call as soon as the last is answered,
    until ``calls`` run out (or ``max_seconds`` pass: the calls sent by then count)."""
    pending = iter(calls)
    run = Run(name, concurrency)
    async with _clients(base_url, concurrency, headers or {}, run) as clients:
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds

        async def worker(client: Connection) -> None:
            for call in pending:
                started = time.perf_counter()
                response = await client.request(call.method, call.path, content=call.body)
                run.latencies.append(time.perf_counter() - started)
                check(call, response)
                run.requests += 1
                run.events += call.events
                if deadline is not None and time.perf_counter() > deadline:
                    return

        with collector_paused(), meter:
            started = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in clients))
            run.seconds = time.perf_counter() - started
    run.cpu = {"server": meter.server, "postgres": meter.postgres, "client": meter.client}
    run.io_stalled = meter.io_stalled
    return run


async def paced(
    name: str,
    base_url: str,
    calls: Sequence[Call],
    rate: float,
    connections: int,
    meter: CpuMeter,
    check: Check,
    headers: dict[str, str] | None = None,
) -> Run:
    """Send ``calls`` at ``rate`` per second whatever the answers do, over at most
    ``connections`` connections; latency counts from when each call was due."""
    run = Run(name, connections)
    async with _clients(base_url, connections, headers or {}, run) as clients:
        idle: asyncio.Queue[Connection] = asyncio.Queue()
        for c in clients:
            idle.put_nowait(c)

        async def one(call: Call, due: float) -> None:
            run.late.append(time.perf_counter() - due)
            client = await idle.get()  # waiting for a free connection counts as latency
            try:
                response = await client.request(call.method, call.path, content=call.body)
            finally:
                idle.put_nowait(client)
            run.latencies.append(time.perf_counter() - due)
            check(call, response)
            run.requests += 1
            run.events += call.events

        tasks = []
        with collector_paused(), meter:
            started = time.perf_counter()
            for i, call in enumerate(calls):
                due = started + i / rate
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(call, due)))
            await asyncio.gather(*tasks)
            run.seconds = time.perf_counter() - started
    run.cpu = {"server": meter.server, "postgres": meter.postgres, "client": meter.client}
    run.io_stalled = meter.io_stalled
    return run


def _pid(answer: Answer) -> int | None:
    if answer.status_code != 200:
        return None
    try:
        pid = json.loads(answer.content).get("pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None
