"""The gateway's usage sink inside LUC. Each proxied call's usage is made durable in the
cheapest way SPEC §8 allows, before the answer's last byte: appended to this process's
journal next to the local spool, in one ``fdatasync`` shared with the calls answered at
the same moment (``recording.journal``). Then, off the call's path, it goes to the ledger
through ``Recorder.record_events`` as ``POST /v1/events/batch`` does, the calls of some
50 milliseconds in one transaction, and is resolved in the journal; what cannot be
recorded now goes to the spool and waits there for ``run_replay``. (A gateway running
elsewhere uses ``service.client.emitter`` instead; the other two ports are in
``recording.adapters``.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog

from service.catalog.service import CatalogCache
from service.client.spool import Parked, Spool
from service.customers.plans import PlanCache
from service.db import on_connection
from service.errors import DatabaseUnavailableError, LucError, NotFoundError
from service.gateway.usage import ESTIMATE
from service.ingest.models import Rejection, UsageEvent, UsageEventIn
from service.ingest.validate import parse_event
from service.metrics.instruments import Metrics
from service.recording.journal import JournalReader, UsageJournal
from service.recording.models import REJECTED, STORED, BatchOutcome, EventOutcome, RecordFn
from service.recording.service import record_batch
from service.recording.usage_writer import LINGER_SECONDS, RETRY_SECONDS, UsageWriter
from service.recording.usage_writer import alone as _alone
from service.recording.usage_writer import cause as _cause
from service.recording.usage_writer import why as _why
from service.settings import IngestSettings

log = structlog.get_logger("luc.gateway")

FAILED = "failed"
"""The parked status of an event that kept failing on its own (a bug, not an outage)."""
PARK_AFTER_FAILURES = 5
REPLAY_AFTER_SECONDS = 1.0
"""How long a spooled event is left to the process that spooled it before a replay takes
it: usage on its way to the ledger is not sent twice (which would only cost a duplicate)."""


class RecordingSink:
    """The proxy's usage sink: every call's usage is durably in the local spool (or on the
    ledger) when ``emit`` returns, whatever fails; ``emit`` never raises. Then it is
    recorded in the background, and:

    - ``accepted`` or ``duplicate``: on the ledger (stored once), it leaves the spool.
    - The recording failed (PostgreSQL away, a statement or lock timeout, an internal error,
      no answer within ``record_timeout_seconds``): it stays spooled (counted in
      ``luc_gateway_usage_spooled_total``); ``run_replay`` records it later.
    - ``conflict`` or ``rejected`` (an answer that will not change on retry): parked in the
      spool, listed by ``GET /v1/usage/parked`` and counted in /metrics, until an operator
      replays it (``replay_parked``, once the cause is fixed) or discards it.
    - ``failed``: a spooled event whose recording failed on its own (see
      ``usage_writer.alone``: a data error, a bug) ``park_after_failures`` replays in a
      row, parked likewise with the error as its reason. An outage (the database away, a
      timeout) never parks anything.

    Without a spool (tests, tools), and with ``LUC_INGEST_PERSIST=0`` (a benchmark's
    reference: nothing is stored, so nothing is spooled), ``emit`` records the event before
    it returns, and spools it only when that fails; so too when the spool cannot be written
    (the disk): then the ledger is where the usage is made durable, before the answer ends.
    What can go nowhere is logged with its body.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        catalog_cache: CatalogCache,
        ingest: IngestSettings,
        record: RecordFn | None = None,
        spool: Spool | None = None,
        *,
        metrics: Metrics | None = None,
        record_timeout_seconds: float | None = None,
        park_after_failures: int = PARK_AFTER_FAILURES,
        plan_cache: PlanCache | None = None,
        replay_after_seconds: float = REPLAY_AFTER_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.pool = pool
        self.catalog_cache = catalog_cache
        # Only the sink's own recording (without ``record``: tests, tools) reads it; LUC
        # passes the recorder's, which knows LUC_DEFAULT_PLAN.
        self.plan_cache = plan_cache or PlanCache()
        self.ingest = ingest
        self._record = record or self._record_batch
        self.spool = spool
        """Where usage that could not be recorded waits, and where what LUC refused is
        parked."""
        self.journal = None if spool is None else UsageJournal(spool.path)
        """Where each call's usage is made durable before its answer ends."""
        self._journals = None if spool is None else JournalReader(spool.path)
        """Every worker's journal files, as far as the last count read them."""
        self.metrics = metrics or Metrics()
        self.record_timeout_seconds = record_timeout_seconds
        """How long one attempt to record a call's usage may take; past it the usage is left
        in the spool, for ``run_replay`` (a held lock never holds up the group commit's
        callers, nor, without a spool, the answer)."""
        self.replay_after_seconds = replay_after_seconds
        self._writer = UsageWriter(
            self.spool, self.journal, self._attempt, self.metrics, linger_seconds, retry_seconds
        )
        self.park_after_failures = park_after_failures
        self.held_usage: Callable[[UsageEventIn], Awaitable[UsageEventIn]] | None = None
        """What a held call that a dead process left is booked as: given the hold, the
        provider's own record of the call (``Gateway.held_usage``, set once the gateway
        exists); without it, the hold as it was written."""
        self._failures: dict[int, int] = {}
        """Spool seq → replays in a row in which that event failed on its own. Kept in
        memory: a restart only grants an event a few more tries before it is parked."""

    async def _record_batch(self, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        return await on_connection(
            self.pool,
            lambda conn: record_batch(conn, self.catalog_cache, items, plan_cache=self.plan_cache),
        )

    def _check(self, body: bytes) -> UsageEvent | str:
        """The event as ``POST /v1/events`` takes it, decoded from its wire form, so the
        type limits (job_id 1–128 characters, agent 1–64…) hold here too; or why not."""
        item = parse_event(body, 0, datetime.now(UTC), self.ingest)
        return item.reason if isinstance(item, Rejection) else item

    # One call's usage -----------------------------------------------------------------------

    def hold(self, event: UsageEventIn, supersedes: int | None = None) -> int | None:
        """Keep ``event`` in the journal for the next process, should this one end before
        the call's own usage comes, in place of the hold ``supersedes`` (``journal.hold``);
        ``None`` without a journal."""
        if self.journal is None or not self.ingest.persist:
            return None
        try:
            return self.journal.hold(event.id, msgspec.json.encode(event), supersedes)
        except Exception as exc:  # the call goes on; its own usage is made durable as ever
            log.error("usage_hold_failed", event_id=event.id, error=_why(exc))
            return None

    def release(self, held: int) -> None:
        """The held call ended without usage of its own: nothing to book for it."""
        if self.journal is not None:
            self.journal.resolve([held])

    async def _settle(self, body: bytes) -> bytes:
        assert self.held_usage is not None
        held = msgspec.json.decode(body, type=UsageEventIn)
        settled = await self.held_usage(held)
        if (settled.attributes or {}).get("usage_source") == ESTIMATE:
            # Booked below what the provider may bill: finance is told (a counter, an alert).
            self.metrics.gateway_calls_estimated.inc()
        return msgspec.json.encode(settled)

    async def emit(self, event: UsageEventIn, supersedes: int | None = None) -> None:
        """Make the call's usage durable, and drop its hold (``supersedes``) with it."""
        body = msgspec.json.encode(event)
        checked = self._check(body)
        if isinstance(checked, str):
            await self._park(event.id, body, REJECTED, checked)
        elif self.journal is None or not self.ingest.persist:
            await self._record_now(event.id, body, checked)
        else:
            try:
                seq = await self.journal.append(event.id, body, supersedes)
            except Exception as exc:  # the local disk failed: the ledger it is, now
                log.error("usage_spool_failed", event_id=event.id, error=_why(exc))
                await self._record_now(event.id, body, checked)
            else:
                self._writer.add(seq, event.id, body, checked)
                return
        if supersedes is not None:  # parked, recorded or spooled: the hold is done
            self.release(supersedes)

    async def _record_one(self, event: UsageEvent) -> EventOutcome:
        """One attempt at recording ``event``, given up after ``record_timeout_seconds``."""
        return (await self._attempt([event])).results[0]

    async def _attempt(self, events: Sequence[UsageEvent]) -> BatchOutcome:
        if self.record_timeout_seconds is None:
            return await self._record(events)
        return await asyncio.wait_for(self._record(events), self.record_timeout_seconds)

    async def _record_now(self, event_id: str, body: bytes, checked: UsageEvent) -> None:
        """Record before ``emit`` returns; spool (or log) what cannot be recorded now."""
        try:
            result = await self._record_one(checked)
        except asyncio.CancelledError:
            # Shut down past the gateway's grace period: the call was paid for all the same.
            await self._spool(event_id, body, "cancelled", "recording cancelled at shutdown")
            raise
        except Exception as exc:  # whatever it is, the usage must not be lost
            await self._spool(event_id, body, _cause(exc), _why(exc), unexpected=_alone(exc))
            return
        if result.status not in STORED:
            await self._park(event_id, body, result.status, result.reason)

    async def idle(self) -> None:
        """Wait until the usage emitted so far, and since, has been recorded (or left in the
        spool)."""
        await self._writer.idle()

    async def settled(self) -> None:
        """Wait until the usage emitted so far has been recorded (or left in the spool)."""
        await self._writer.settled()

    async def aclose(self, grace_seconds: float) -> None:
        """Record what waits at once (up to ``grace_seconds``); the rest stays journaled,
        for the next process to recover."""
        await self._writer.aclose(grace_seconds)
        if self.journal is not None:
            await self.journal.aclose()

    async def _spool(
        self, event_id: str, body: bytes, cause: str, why: str, *, unexpected: bool = False
    ) -> None:
        if self.spool is not None:
            try:
                await self.spool.add([(event_id, body)])
            except Exception as exc:  # the local disk failed too
                why = f"{why}; and the spool failed: {type(exc).__name__}: {exc}"
            else:
                # An unexpected error (a bug?) keeps its traceback in the log.
                log.warning(
                    "usage_event_spooled", event_id=event_id, error=why, exc_info=unexpected
                )
                self.metrics.gateway_spooled.labels(cause).inc()
                return
        self._unrecorded(event_id, body, why)

    async def _park(self, event_id: str, body: bytes, status: str, reason: str | None) -> None:
        if self.spool is not None:
            try:
                await self.spool.park([(event_id, body, status, reason)])
            except Exception as exc:
                reason = f"{reason}; and the spool failed: {type(exc).__name__}: {exc}"
            else:
                log.error("usage_event_parked", event_id=event_id, status=status, reason=reason)
                self.metrics.gateway_parked.labels(status).inc()
                return
        self._unrecorded(event_id, body, f"{status}: {reason}")

    def _unrecorded(self, event_id: str, body: bytes, why: str) -> None:
        """The last resort: the log is the only place left for the call's usage."""
        log.error("usage_event_not_recorded", event_id=event_id, why=why, usage=body.decode())
        self.metrics.gateway_unrecorded.inc()

    # The spool --------------------------------------------------------------------------------

    async def replay_spooled(self, limit: int = 500) -> int:
        """Record what waits in the spool; returns how many events left it (recorded, or
        parked when refused).

        Raises the error that kept every event from the ledger (``DatabaseUnavailableError``
        while PostgreSQL is away, a timeout…). An event that fails on its own (see
        ``_alone``) stays spooled without holding back the others, and is parked
        (``failed``) once it has failed so ``park_after_failures`` rounds in a row.
        """
        if self.spool is None:
            return 0
        if self.journal is not None:
            # What processes that died left in their journals joins the spool first.
            await self.journal.recover(self.spool, self._settle if self.held_usage else None)
        rows = await self.spool.take(limit, added_before=time.time() - self.replay_after_seconds)
        if not rows:
            return 0
        checked = [(seq, event_id, body, self._check(body)) for seq, event_id, body in rows]
        events = [c for _, _, _, c in checked if isinstance(c, UsageEvent)]
        outcomes: dict[str, EventOutcome] = {}
        failed: dict[str, BaseException] = {}
        """Events whose recording, by themselves, failed with an error of their own."""
        error: Exception | None = None
        try:
            if events:
                batch = await self._record(events)
                outcomes = {e.id: r for e, r in zip(events, batch.results, strict=True)}
        except Exception as exc:
            if not _alone(exc):
                raise
            error = exc
            if len(events) == 1:  # it was tried alone already
                failed[events[0].id] = exc
            else:
                log.warning("spooled_batch_failed_recording_one_by_one", error=_why(exc))
                for event in events:
                    try:
                        outcomes[event.id] = (await self._record([event])).results[0]
                    except Exception as alone:
                        error = alone
                        log.warning(
                            "spooled_event_not_recorded", event_id=event.id, error=_why(alone)
                        )
                        if not _alone(alone):
                            break  # the database, not this event: the next attempt, later
                        failed[event.id] = alone
        done: list[int] = []
        aside: list[tuple[int, str, bytes, str, str | None]] = []
        for seq, event_id, body, item in checked:
            if isinstance(item, str):
                aside.append((seq, event_id, body, REJECTED, item))
            elif (result := outcomes.get(item.id)) is None:
                if (cause := failed.get(item.id)) is None:
                    continue  # not tried alone (an outage cut the round short): stays
                times = self._failures[seq] = self._failures.get(seq, 0) + 1
                if times >= self.park_after_failures:
                    why = f"failed on its own {times} times in a row: {_why(cause)}"
                    aside.append((seq, event_id, body, FAILED, why[:2000]))
                # else: stays spooled, tried again next round
            elif result.status in STORED:
                done.append(seq)
            else:
                aside.append((seq, event_id, body, result.status, result.reason))
        await self.spool.settle(done, aside)
        for seq in (*done, *(a[0] for a in aside)):
            self._failures.pop(seq, None)
        for _, event_id, _, status, reason in aside:
            log.error("usage_event_parked", event_id=event_id, status=status, reason=reason)
            self.metrics.gateway_parked.labels(status).inc()
        if error is not None and not done and not aside:
            raise error
        return len(done) + len(aside)

    async def run_replay(self, every_seconds: float = 2.0, max_delay_seconds: float = 60.0) -> None:
        """Replay the spool until cancelled. A failed attempt is logged and counted, and the
        next one waits twice as long (up to ``max_delay_seconds``); one that places
        something resets the wait."""
        failures = 0
        while True:
            try:
                # Processes sharing the spool file replay it one at a time.
                while self.spool is not None and self.spool.lead_replay():
                    if not await self.replay_spooled():
                        break
                    failures = 0
            except Exception as exc:  # whatever it is, try again later: never give up
                failures += 1
                delay = min(max_delay_seconds, every_seconds * 2**failures)
                self.metrics.gateway_replay_failures.inc()
                log.warning(
                    "usage_spool_replay_failed",
                    error=_why(exc),
                    attempt=failures,
                    retry_in_seconds=delay,
                    exc_info=_alone(exc),
                )
            else:
                delay = every_seconds
            await asyncio.sleep(delay)

    async def spool_counts(self) -> tuple[int, int]:
        """(usage waiting on local disk: in the spool, or in any worker's journal not yet
        recorded; usage parked). The journals are read from their files, so the worker
        that is scraped counts its fellow workers' usage too."""
        if self.spool is None or self._journals is None:
            return 0, 0
        # The journals first, then the spool, each id once: usage moved from a journal to
        # the spool (``UsageJournal.recover``, or the writer spooling it) is in the spool
        # before it leaves the journal, so it is counted once whenever the two are read.
        journaled = await asyncio.to_thread(self._journals.ids)
        # Counted with the rest (every worker's and the recovered ones' files), and shown
        # at the next render whichever caller read them.
        self.metrics.gateway_journal_unreadable.set(self._journals.unreadable)
        return await self.spool.counts(journaled)

    # What an operator does with parked usage -------------------------------------------------

    async def parked(self, after: int, limit: int) -> list[Parked]:
        return [] if self.spool is None else await self.spool.parked(after, limit)

    async def replay_parked(self, parked_id: int) -> EventOutcome:
        """Try one parked event again, once its cause is fixed (the job's customer set, the
        clock right…): recorded, it leaves the list; refused, it stays with the new reason.
        """
        item = None if self.spool is None else await self.spool.parked_one(parked_id)
        if item is None:
            raise NotFoundError(f"no parked usage {parked_id}")
        assert self.spool is not None
        checked = self._check(item.body)
        if isinstance(checked, str):
            result = EventOutcome(item.event_id, REJECTED, checked)
        else:
            try:
                result = (await self._record([checked])).results[0]
            except LucError:
                raise
            except Exception as exc:
                raise DatabaseUnavailableError(f"cannot record it now: {_why(exc)}") from exc
        if result.status in STORED:
            await self.spool.drop_parked(parked_id)
            log.info("parked_usage_replayed", event_id=item.event_id, status=result.status)
        else:
            await self.spool.park([(item.event_id, item.body, result.status, result.reason)])
        return result

    async def discard_parked(self, parked_id: int) -> Parked:
        """Drop one parked event for good; its body stays in the log."""
        item = None if self.spool is None else await self.spool.drop_parked(parked_id)
        if item is None:
            raise NotFoundError(f"no parked usage {parked_id}")
        log.warning(
            "parked_usage_discarded",
            event_id=item.event_id,
            status=item.status,
            reason=item.reason,
            usage=item.body.decode(errors="replace"),
        )
        return item
