"""The proxy's usage on its way from the journal to the ledger (``recording.sink``): what
this process journaled is recorded off the calls' path, a batch per transaction, and
resolved in the journal; what cannot be recorded now goes to the spool for the sink's
replay, and what the ledger refuses is parked there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import asyncpg
import structlog

from service.client.spool import ParkRow, Spool
from service.errors import DatabaseUnavailableError, LucError
from service.ingest.models import UsageEvent
from service.metrics.instruments import Metrics
from service.recording.journal import UsageJournal
from service.recording.models import STORED, BatchOutcome

log = structlog.get_logger("luc.gateway")

# Errors of one event's content (a value PostgreSQL refuses, a bug pricing it): a batch they
# spoil is replayed event by event, so the event holds back only itself. Anything else (a
# lost connection, a timeout, a lock, a restart) would fail every event alike.
_EVENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
_SHARED_ERRORS: tuple[type[BaseException], ...] = (
    LucError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def alone(exc: BaseException) -> bool:
    """Whether ``exc`` may come from one event alone (see ``_EVENT_ERRORS``)."""
    return isinstance(exc, _EVENT_ERRORS) or not isinstance(exc, _SHARED_ERRORS)


def cause(exc: BaseException) -> str:
    """A bounded label for the metric: why usage went to the spool."""
    if isinstance(exc, DatabaseUnavailableError):
        return "database_unavailable"
    if isinstance(exc, (TimeoutError, asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)):
        return "timeout"
    return "error"


def why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, LucError) else f"{type(exc).__name__}: {exc}"


LINGER_SECONDS = 0.2
"""How long a journaled event may wait for others to share its transaction: the usage is
durable already, and one transaction for several calls costs a fraction of one each. At
one client, 20 ms halved what metering added to a call beside 5 ms; with calls at 1–2 ms,
50 ms halved PostgreSQL's CPU per call again (0.45 → 0.24 ms). With two workers at 16
clients each, 200 ms instead of 50 took PostgreSQL's CPU per call from 187–244 µs to
129–158 (bench.proxy, alternated runs), and the metered proxy from 0.69–0.78 to
0.79–0.88 × the unmetered one's calls/s, where both cores are busy. The ledger shows a
proxied call that much later; a refused call that waits for this process's usage in
flight (``DatabaseBudgets.settled``) does not wait for the linger (``_hurry``)."""
MAX_BATCH = 500
RETRY_SECONDS = 2.0
"""How long usage that neither the ledger nor the spool took (PostgreSQL away and the
disk full, say) waits in this process's journal before it is tried again; twice as long
after each failure, up to ``MAX_RETRY_SECONDS``. Only a later process would find it there
otherwise (``journal.recover``): a worker that lived on kept it off the ledger."""
MAX_RETRY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Spooled:
    """An event in the journal, on its way to the ledger."""

    seq: int
    """Its seq in the journal."""
    event_id: str
    body: bytes
    event: UsageEvent
    at: float
    """``time.monotonic()`` when it was spooled."""
    waited: float = 0.0
    """How long it last waited to be tried again (``RETRY_SECONDS``), 0 at first."""


Attempt = Callable[[Sequence[UsageEvent]], Awaitable[BatchOutcome]]
"""One attempt at recording events in one transaction (given up after a timeout)."""


class UsageWriter:
    """Records the events this process journaled, a batch at a time, and resolves them."""

    def __init__(
        self,
        spool: Spool | None,
        journal: UsageJournal | None,
        attempt: Attempt,
        metrics: Metrics,
        linger_seconds: float = LINGER_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.spool = spool
        self.journal = journal
        self._attempt = attempt
        self.metrics = metrics
        self.linger_seconds = linger_seconds
        self._queue: list[_Spooled] = []
        """Spooled by this process, waiting for the writer."""
        self.in_flight: set[int] = set()
        """Journal seqs queued or being recorded."""
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._batch_done = asyncio.Condition()
        self.retry_seconds = retry_seconds
        self._retries: set[asyncio.TimerHandle] = set()
        """Usage left in the journal, to be tried again (cancelled at ``aclose``: the
        journal keeps it for the next process)."""
        self._closing = False

    def add(self, seq: int, event_id: str, body: bytes, event: UsageEvent) -> None:
        """Record ``event`` (journaled as ``seq``) with the next batch."""
        self._enqueue([_Spooled(seq, event_id, body, event, time.monotonic())])

    def _enqueue(self, items: Sequence[_Spooled]) -> None:
        self._queue.extend(items)
        self.in_flight.update(item.seq for item in items)
        if len(self._queue) >= MAX_BATCH:
            self._full.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="luc-gateway-usage-writer")

    async def _write(self) -> None:
        """Record what this process spooled, off the calls' path, a batch per transaction:
        what arrives while one commits goes in the next. Runs until the queue is empty."""
        while self._queue:
            linger = self.linger_seconds - (time.monotonic() - self._queue[0].at)
            if linger > 0 and len(self._queue) < MAX_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), linger)
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._full.clear()
            try:
                await self._record_spooled(batch)
            finally:
                self.in_flight.difference_update(item.seq for item in batch)
                async with self._batch_done:
                    self._batch_done.notify_all()

    async def _record_spooled(self, batch: Sequence[_Spooled]) -> None:
        """Record journaled events in one transaction. Stored, they are resolved in the
        journal; refused, parked in the spool first; when the attempt failed, moved to the
        spool for ``run_replay``. Each only once the spool has them on disk: until then
        the journal keeps them, and they are tried again a moment later (``RETRY_SECONDS``)."""
        assert self.spool is not None and self.journal is not None
        try:
            outcome = await self._attempt([item.event for item in batch])
        except Exception as exc:  # whatever it is, the usage waits in the spool
            log.warning(
                "usage_events_spooled",
                events=len(batch),
                error=why(exc),
                exc_info=alone(exc),
            )
            try:
                await self.spool.add([(item.event_id, item.body) for item in batch])
            except Exception as disk:
                self._left_in_journal(batch, disk)
                return
            self.metrics.gateway_spooled.labels(cause(exc)).inc(len(batch))
            self.journal.resolve([item.seq for item in batch])
            return
        aside: list[ParkRow] = [
            (item.event_id, item.body, result.status, result.reason)
            for item, result in zip(batch, outcome.results, strict=True)
            if result.status not in STORED
        ]
        if aside:
            try:
                await self.spool.park(aside)
            except Exception as disk:  # the journal keeps them, and they are tried again
                refused = {event_id for event_id, *_ in aside}
                self.journal.resolve([i.seq for i in batch if i.event_id not in refused])
                self._left_in_journal([i for i in batch if i.event_id in refused], disk)
                return
        self.journal.resolve([item.seq for item in batch])
        for event_id, _, status, reason in aside:
            log.error("usage_event_parked", event_id=event_id, status=status, reason=reason)
            self.metrics.gateway_parked.labels(status).inc()

    def _left_in_journal(self, items: Sequence[_Spooled], disk: BaseException) -> None:
        """``items`` stay in the journal (durable, unresolved) and go to the writer again
        after a wait: the ledger first, then the spool. (Should this process end first, the
        next one finds them in the journal.)"""
        wait = min(max(2 * max(i.waited for i in items), self.retry_seconds), MAX_RETRY_SECONDS)
        log.error(
            "usage_left_in_journal", events=len(items), error=why(disk), retry_in_seconds=wait
        )
        if self._closing:
            return  # for the next process (``journal.recover``)

        def again() -> None:
            self._retries.discard(handle)
            now = time.monotonic()
            self._enqueue([replace(i, at=now, waited=wait) for i in items])

        handle = asyncio.get_running_loop().call_later(wait, again)
        self._retries.add(handle)

    async def idle(self) -> None:
        """Wait until the usage added so far, and since, has been recorded (or left in the
        spool): until the writer has nothing left. What waits to share a transaction goes
        at once (``_hurry``)."""
        while self._writer is not None and not self._writer.done():
            self._hurry()
            await asyncio.wait([self._writer])

    async def settled(self) -> None:
        """Wait until the usage added so far has been recorded (or left in the spool);
        usage added meanwhile is not waited for, so this ends under steady traffic too.
        What waits to share a transaction goes at once (``_hurry``)."""
        before = set(self.in_flight)
        if before:
            self._hurry()
        async with self._batch_done:
            await self._batch_done.wait_for(lambda: before.isdisjoint(self.in_flight))

    def _hurry(self) -> None:
        """End the linger of what is queued: someone waits for the ledger (a call refused
        by a hard budget, to be looked at again once this process's usage has landed), so
        the next batch is taken now rather than up to ``linger_seconds`` later."""
        self._full.set()

    async def aclose(self, grace_seconds: float) -> None:
        """Record what waits at once (up to ``grace_seconds``); the rest stays spooled, or
        journaled for the next process."""
        self._closing = True
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        self.linger_seconds = 0.0
        self._full.set()
        if self._writer is not None and not self._writer.done():
            _, pending = await asyncio.wait([self._writer], timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
