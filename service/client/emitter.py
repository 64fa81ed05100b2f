"""The emitter: usage events from a gateway running outside LUC, delivered exactly once.

    async with Emitter("https://luc.internal", api_key, spool="/var/lib/aims/luc-spool.db") as sink:
        gateway = Gateway(chain, sink, fixed_catalog(bundled_catalog()))
        ...

``emit`` returns once the event is in the local spool, durably (fsync'd); a background
sender posts spooled events to ``POST /v1/events/batch`` in batches, in order, and
removes them only after LUC answered ``accepted`` or ``duplicate`` (both mean: stored,
once). A ``conflict`` or ``rejected`` answer will never change on retry: such an event is
logged and parked in the spool (``kept_aside()``), not retried forever. Connection
errors, timeouts, 408, 429 and 5xx are retried with backoff (``Retry-After`` honoured);
401/403 too (a key can be fixed) but logged as errors. A LUC outage, or a crash of the
gateway itself, loses nothing: the spool is read again at start. Events re-sent after a
lost answer come back ``duplicate`` and count once — the event id is the idempotency key.

Why SQLite for the spool: appends and acknowledgements are small atomic transactions
(``synchronous=FULL``: on disk when ``emit`` returns), an acknowledged batch disappears
in one statement, and no compaction or offset file is needed, as append-only JSONL
files would require. It is local to the gateway's machine; the ledger stays in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import msgspec
import structlog

from service.gateway.ports import BudgetVerdict
from service.ingest.models import UsageEventIn

log = structlog.get_logger("luc.client")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id  TEXT NOT NULL UNIQUE,
    body      BLOB NOT NULL,
    added_at  REAL NOT NULL
);
-- Usage LUC will not take as it is. Keyed by its own seq, not the event id: two reports
-- of one id with different content are both kept for the operator.
CREATE TABLE IF NOT EXISTS parked (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id  TEXT NOT NULL,
    body      BLOB NOT NULL,
    status    TEXT NOT NULL,
    reason    TEXT,
    at        REAL NOT NULL,
    UNIQUE (event_id, body)
);
"""
# Spools written before ``parked`` existed kept one row per event id in ``kept_aside``.
_UPGRADE = """
INSERT OR IGNORE INTO parked (event_id, body, status, reason, at)
    SELECT event_id, body, status, reason, at FROM kept_aside ORDER BY at;
DROP TABLE kept_aside;
"""
SETTLED = ("accepted", "duplicate")
KEPT_ASIDE = ("conflict", "rejected")
# A row to park: (event_id, body, status, reason).
ParkRow = tuple[str, bytes, str, "str | None"]
_WAITING_CONFLICT = (
    "another report of this id, with other content, waits in the spool; replay this one "
    "once that one is on the ledger to see how they differ"
)


@dataclass(frozen=True, slots=True)
class Parked:
    """Usage LUC answered ``conflict`` or ``rejected`` for: kept for a human, not resent."""

    id: int
    """The spool's own number for it (an event id may be parked twice, with two bodies)."""
    event_id: str
    status: str
    reason: str | None
    body: bytes
    parked_at: float
    """Unix time it was parked (again, after a replay that was refused once more)."""


KeptAside = Parked  # the emitter's name for it


class Spool:
    """The SQLite file; every call runs on one dedicated thread, so none blocks the loop.

    ``pending`` holds usage waiting to be delivered (``add``, ``take``, ``settle``);
    ``parked`` what LUC refused (``settle``'s aside, ``park``), until an operator replays
    it (parked again if refused again) or discards it (``drop_parked``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="luc-spool")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # committed = on disk
        conn.executescript(_SCHEMA)
        with conn:
            conn.execute("BEGIN IMMEDIATE")  # two processes opening one file upgrade it once
            old = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kept_aside'"
            ).fetchone()
            if old:
                for statement in _UPGRADE.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        self._conn = conn

    def _opened(self) -> sqlite3.Connection | None:
        """The connection, opening the file if it exists; ``None`` when it never did."""
        if self._conn is None:
            if not self.path.exists():
                return None
            self._open()
        return self._conn

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "the spool is not open"
        return self._conn

    async def add(self, rows: Sequence[tuple[str, bytes]]) -> None:
        await self._run(self._add, rows)

    def _add(self, rows: Sequence[tuple[str, bytes]]) -> None:
        if self._conn is None:
            self._open()  # opened on first use: a spool that never fills leaves no file
        now = time.time()
        with self.conn:  # one transaction
            self.conn.execute("BEGIN")
            for event_id, body in rows:
                # An id already waiting is not queued twice...
                added = self.conn.execute(
                    "INSERT OR IGNORE INTO pending (event_id, body, added_at) VALUES (?, ?, ?)",
                    (event_id, body, now),
                ).rowcount
                waiting = (
                    None
                    if added
                    else self.conn.execute(
                        "SELECT body FROM pending WHERE event_id = ?", (event_id,)
                    ).fetchone()
                )
                if waiting is not None and bytes(waiting[0]) != body:
                    # ...but another report of it, with other content, is not dropped either.
                    self._park_rows([(event_id, body, "conflict", _WAITING_CONFLICT)], now)

    def _park_rows(self, rows: Sequence[ParkRow], now: float) -> None:
        self.conn.executemany(
            # The same body parked again (a refused replay) keeps one row, reason updated.
            "INSERT INTO parked (event_id, body, status, reason, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (event_id, body) DO UPDATE "
            "SET status = excluded.status, reason = excluded.reason, at = excluded.at",
            [(event_id, body, status, reason, now) for event_id, body, status, reason in rows],
        )

    async def take(self, limit: int) -> list[tuple[int, str, bytes]]:
        result: list[tuple[int, str, bytes]] = await self._run(self._take, limit)
        return result

    def _take(self, limit: int) -> list[tuple[int, str, bytes]]:
        conn = self._opened()
        if conn is None:
            return []
        return conn.execute(
            "SELECT seq, event_id, body FROM pending ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()

    async def settle(
        self, done: Sequence[int], aside: Sequence[tuple[int, str, bytes, str, str | None]]
    ) -> None:
        """Remove delivered rows (``done``) and park refused ones (``aside``) from pending."""
        await self._run(self._settle, done, aside)

    def _settle(
        self, done: Sequence[int], aside: Sequence[tuple[int, str, bytes, str, str | None]]
    ) -> None:
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self._park_rows(
                [(event_id, body, status, reason) for _, event_id, body, status, reason in aside],
                now,
            )
            self.conn.executemany(
                "DELETE FROM pending WHERE seq = ?",
                [(seq,) for seq in [*done, *(a[0] for a in aside)]],
            )

    async def park(self, rows: Sequence[ParkRow]) -> None:
        """Park usage that never waited in ``pending`` (refused on its first attempt)."""
        await self._run(self._park, rows)

    def _park(self, rows: Sequence[ParkRow]) -> None:
        if self._conn is None:
            self._open()
        with self.conn:
            self.conn.execute("BEGIN")
            self._park_rows(rows, time.time())

    async def count(self) -> int:
        """Usage waiting in ``pending``."""
        return (await self.counts())[0]

    async def counts(self) -> tuple[int, int]:
        """(waiting in ``pending``, parked)."""
        result: tuple[int, int] = await self._run(self._counts)
        return result

    def _counts(self) -> tuple[int, int]:
        conn = self._opened()
        if conn is None:
            return 0, 0
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pending), (SELECT count(*) FROM parked)"
        ).fetchone()
        return int(row[0]), int(row[1])

    async def parked(self, after: int = 0, limit: int = 1000) -> list[Parked]:
        """Parked usage in the order it was parked first, from the row after ``after``."""
        result: list[Parked] = await self._run(self._parked, after, limit)
        return result

    def _parked(self, after: int, limit: int) -> list[Parked]:
        conn = self._opened()
        if conn is None:
            return []
        rows = conn.execute(
            "SELECT seq, event_id, status, reason, body, at FROM parked WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Parked(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    async def kept_aside(self) -> list[Parked]:
        return await self.parked()

    async def parked_one(self, parked_id: int) -> Parked | None:
        result: list[Parked] = await self._run(self._parked, parked_id - 1, 1)
        return result[0] if result and result[0].id == parked_id else None

    async def drop_parked(self, parked_id: int) -> Parked | None:
        """Remove one parked row (delivered at last, or discarded) and return it."""
        result: Parked | None = await self._run(self._drop_parked, parked_id)
        return result

    def _drop_parked(self, parked_id: int) -> Parked | None:
        conn = self._opened()
        if conn is None:
            return None
        with conn:
            conn.execute("BEGIN")
            row = conn.execute(
                "DELETE FROM parked WHERE seq = ? "
                "RETURNING seq, event_id, status, reason, body, at",
                (parked_id,),
            ).fetchone()
        return (
            None if row is None else Parked(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)


class Emitter:
    """A ``UsageSink`` for a gateway running outside LUC (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        spool: str | Path,
        *,
        batch_size: int = 500,
        linger_seconds: float = 0.05,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.linger_seconds = linger_seconds
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=4),
        )
        self.spool = Spool(Path(spool))
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._failures = 0

    async def start(self) -> None:
        """Open the spool (events left by an earlier run are sent first) and start sending."""
        await self.spool.open()
        self._sender = asyncio.create_task(self._run(), name="luc-emitter")
        self._wake.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def emit(self, event: UsageEventIn) -> None:
        """Spool one event durably; it is sent in the background."""
        await self.emit_many([event])

    async def emit_many(self, events: Sequence[UsageEventIn]) -> None:
        await self.spool.add([(e.id, msgspec.json.encode(e)) for e in events])
        self._idle.clear()
        self._wake.set()

    async def pending(self) -> int:
        """Events spooled and not yet settled by LUC."""
        return await self.spool.count()

    async def kept_aside(self) -> list[KeptAside]:
        """Events LUC answered ``conflict`` or ``rejected``: kept for a human, not resent."""
        return await self.spool.kept_aside()

    async def flush(self, timeout_seconds: float | None = None) -> bool:
        """Wait until every spooled event is settled; ``False`` if the time ran out."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        while await self.spool.count():
            self._wake.set()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=min(left or 0.2, 0.2))
        return True

    async def aclose(self, flush_seconds: float = 5.0) -> None:
        """Try to deliver what is spooled for a moment, then stop; the rest stays spooled."""
        if self._sender is not None:
            await self.flush(flush_seconds)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._own_http:
            await self._http.aclose()
        await self.spool.close()

    # The sender ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        batch_size = self.batch_size
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.linger_seconds)  # let a burst of emits join one batch
            while rows := await self.spool.take(batch_size):
                try:
                    delay, batch_size = await self._send(rows, batch_size)
                except (ValueError, AttributeError, sqlite3.Error) as exc:
                    # A 200 that is not a batch answer (a proxy's page?), or a spool fault:
                    # keep the events and try again later.
                    delay = self._backoff(f"{type(exc).__name__}: {exc}", None)
                if delay:
                    await asyncio.sleep(delay)
            self._idle.set()

    async def _send(self, rows: list[tuple[int, str, bytes]], batch_size: int) -> tuple[float, int]:
        """Post one batch; the delay before the next attempt, and the next batch size."""
        body = b'{"events":[' + b",".join(r[2] for r in rows) + b"]}"
        try:
            response = await self._http.post(
                f"{self.base_url}/v1/events/batch", content=body, headers=self._headers
            )
        except httpx.HTTPError as exc:
            return self._backoff(f"{type(exc).__name__}: {exc}", None), batch_size
        status = response.status_code
        if status == 200:
            await self._settle(rows, response)
            self._failures = 0
            return 0.0, self.batch_size
        if status == 413 or (status in (400, 422) and len(rows) > 1):
            return 0.0, max(1, len(rows) // 2)  # find the event that spoils the batch
        if status in (400, 422):
            seq, event_id, raw = rows[0]
            reason = response.text[:500]
            log.error("usage_event_refused", event_id=event_id, status=status, reason=reason)
            await self.spool.settle([], [(seq, event_id, raw, "rejected", reason)])
            return 0.0, self.batch_size
        if status in (401, 403):
            log.error(
                "luc_refused_api_key",
                status=status,
                detail="check the emitter's API key (scope ingest); events stay spooled",
            )
        retry_after = response.headers.get("retry-after")
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        return self._backoff(f"HTTP {status}", wait), batch_size

    def _backoff(self, why: str, retry_after: float | None) -> float:
        self._failures += 1
        backoff = min(
            self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (self._failures - 1)
        )
        delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.0)
        log.warning("luc_unreachable_retrying", why=why, attempt=self._failures, delay=delay)
        return min(delay, self.backoff_max_seconds)

    async def _settle(self, rows: list[tuple[int, str, bytes]], response: httpx.Response) -> None:
        results = response.json().get("results", [])
        done: list[int] = []
        aside: list[tuple[int, str, bytes, str, str | None]] = []
        # Answers come in request order, one per event.
        for (seq, event_id, raw), result in zip(rows, results, strict=False):
            status = result.get("status")
            if status in SETTLED and result.get("id") == event_id:
                done.append(seq)
            elif status in KEPT_ASIDE:
                log.error(
                    "usage_event_kept_aside",
                    event_id=event_id,
                    status=status,
                    reason=result.get("reason"),
                )
                aside.append((seq, event_id, raw, status, result.get("reason")))
        await self.spool.settle(done, aside)


class RemoteBudgets:
    """Admission against a remote LUC: ``POST /v1/budgets/reservations`` before each call,
    with a key of scope ``ingest``. The answer's ``reservation_id`` goes on the call's usage
    event (the gateway does that), which settles the reservation once LUC records it.

    When LUC cannot be reached, or answers something other than a verdict, the call is
    allowed (logged), without a reservation: a LUC outage must not stop AIMS, and its usage
    still arrives through the spool."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = http

    async def reserve(
        self, *, job_id: str, agent: str, model: str, estimated_cost_usd: Decimal
    ) -> BudgetVerdict:
        body = {
            "job_id": job_id,
            "agent": agent,
            "model": model,
            "estimated_cost_usd": format(estimated_cost_usd, "f"),
        }
        try:
            response = await self._http.post(
                f"{self.base_url}/v1/budgets/reservations", json=body, headers=self._headers
            )
            if response.status_code not in (200, 201, 402):
                response.raise_for_status()
                raise ValueError(f"unexpected HTTP {response.status_code}")
            data = response.json()
            remaining = data.get("remaining_usd")
            reservation_id = data.get("reservation_id")
            verdict = BudgetVerdict(
                allowed=response.status_code != 402 and data.get("allowed") is True,
                remaining_usd=None if remaining is None else Decimal(remaining),
                reason=data.get("reason"),
                # It travels on the usage event: anything but an id the event can carry
                # would get the call's usage rejected, so it is dropped instead.
                reservation_id=reservation_id
                if isinstance(reservation_id, str) and 0 < len(reservation_id) <= 128
                else None,
            )
        except (httpx.HTTPError, ValueError, ArithmeticError, AttributeError) as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            if status in (401, 403):
                log.error(
                    "budget_reservation_refused_api_key",
                    status=status,
                    detail="check the gateway's LUC key (scope ingest); calls are let through",
                )
            log.warning("budget_reservation_unavailable_allowing", error=str(exc))
            return BudgetVerdict(allowed=True, reason="LUC unreachable; allowed")
        return verdict
