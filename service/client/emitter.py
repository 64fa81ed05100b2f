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
The spool is ``service.client.spool`` (why SQLite: there).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import msgspec
import structlog

from service.client.spool import Parked, Spool
from service.ingest.models import UsageEventIn

log = structlog.get_logger("luc.client")

SETTLED = ("accepted", "duplicate")
KEPT_ASIDE = ("conflict", "rejected")


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

    async def emit(self, event: UsageEventIn, supersedes: int | None = None) -> None:
        """Spool one event durably; it is sent in the background."""
        await self.emit_many([event])

    def hold(self, event: UsageEventIn, supersedes: int | None = None) -> int | None:
        """No holds here: the spool is written when a call's usage is known (a gateway
        process that dies mid-call loses that call's usage; LUC's own proxy keeps it)."""
        return None

    def release(self, held: int) -> None:
        """Nothing is held (``hold``)."""

    async def emit_many(self, events: Sequence[UsageEventIn]) -> None:
        await self.spool.add([(e.id, msgspec.json.encode(e)) for e in events])
        self._idle.clear()
        self._wake.set()

    async def pending(self) -> int:
        """Events spooled and not yet settled by LUC."""
        return await self.spool.count()

    async def kept_aside(self) -> list[Parked]:
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
                if warning := result.get("warning"):
                    # Recorded, but its reservation_id settled nothing (another key's, one
                    # expired…): the hold lasts until it expires. Said, not retried.
                    log.warning("usage_event_warning", event_id=event_id, warning=warning)
            elif status in KEPT_ASIDE:
                log.error(
                    "usage_event_kept_aside",
                    event_id=event_id,
                    status=status,
                    reason=result.get("reason"),
                )
                aside.append((seq, event_id, raw, status, result.get("reason")))
        await self.spool.settle(done, aside)
