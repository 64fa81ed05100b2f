"""Group commit for single events: concurrent ``POST /v1/events`` share one transaction.

One event per transaction pays a commit (a WAL flush) per event. The writer of each
process takes the events waiting in its queue, records them together through
``Recorder.record_events`` and answers every request only after that commit. A commit that
PostgreSQL refuses because of one event's values is retried without that event, whose
request alone is rejected (``service.record_apart``); any other failed commit
fails every request in it, so no event is acknowledged without being stored. Under no
load a lone event commits at once (no waiting for company); under load the group grows
by itself while the previous commit is in flight.

Two writers in a lone process by default (``LUC_INGEST_WRITERS``), the second one writing the
next group while the first waits for its commit, but only while groups go the long way
(four round trips or more: prepaid credit accounts exist, ``recording.one_trip``), where
that overlap paid: with a credit account, two measured 768–1,029 events/s at 8 clients
against 677–907 for one (three alternated pairs). A group in one round trip gains nothing
from it: a second group only split the waiting events into smaller groups, each waiting for
the other's rollup rows. There one writes at a time: at 8 clients 1,557–1,840 events/s
against 1,255–1,385 with two in flight (three alternated pairs), with 335–370 µs of
PostgreSQL CPU per event against 460–490.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from service.ingest.models import Rejection, UsageEvent
from service.recording.models import BatchOutcome, EventOutcome

log = structlog.get_logger("luc.ingest")

MAX_GROUP = 1000
WRITERS = 2
"""Writers in a lone process unless ``LUC_INGEST_WRITERS`` says otherwise; the second one
takes a group only while groups take the long way (see above)."""
WORKER_WRITERS = 1
"""Writers in each worker of ``luc serve --workers N`` (N > 1) unless ``LUC_INGEST_WRITERS``
says otherwise. Each worker commits its own groups, so every writer there sees a share of
the events, and two workers already have two groups in flight: with a credit account (every
group the long way), two workers of two writers each measured 452 and 724 events/s at 8
clients against 717 and 804 with one each (two alternated pairs), with more PostgreSQL CPU
per event (1.06–1.30 ms against 0.78); without, one in flight at a time either way."""


class RecordRequestsFn(Protocol):
    """Records a group in one transaction (``Recorder.record_events``), told that each event
    is its own request's: an id sent twice in one group is a conflict with an earlier
    request, as when the two land in two transactions, never one "of this batch"."""

    def __call__(
        self, items: Sequence[UsageEvent | Rejection], *, one_event_per_request: bool
    ) -> Awaitable[BatchOutcome]: ...


class GroupWriter:
    """Queues single events and records them in groups, one transaction per group."""

    def __init__(
        self,
        record: RecordRequestsFn,
        max_group: int = MAX_GROUP,
        writers: int = 1,
        overlap: Callable[[], bool] = lambda: True,
    ) -> None:
        self._record = record
        self._max_group = max_group
        self._writers = writers
        self._overlap = overlap
        """Whether more than one group may be in flight now (``writers`` at most)."""
        self._flying = 0
        self._room = asyncio.Condition()
        self._queue: asyncio.Queue[tuple[UsageEvent, asyncio.Future[EventOutcome]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        # Several writers: while one group waits for its commit, the next group is already
        # being written on another connection (LUC_INGEST_WRITERS), when ``overlap`` says so.
        self._tasks = [
            asyncio.create_task(self._run(), name=f"luc-group-commit-{n}")
            for n in range(self._writers)
        ]

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if not self._tasks:
            return
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def waiting(self) -> int:
        """Events queued and not yet taken into a group."""
        return self._queue.qsize()

    async def submit(self, event: UsageEvent) -> EventOutcome:
        """Record ``event``; returns once the transaction holding it has committed."""
        future: asyncio.Future[EventOutcome] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    def _may_fly(self) -> bool:
        return self._flying < (self._writers if self._overlap() else 1)

    @contextlib.asynccontextmanager
    async def _in_flight(self) -> AsyncIterator[None]:
        """A place among the groups in flight, from before a group is taken until its
        commit is answered."""
        async with self._room:
            await self._room.wait_for(self._may_fly)
            self._flying += 1
        try:
            yield
        finally:
            async with self._room:
                self._flying -= 1
                self._room.notify_all()

    async def _run(self) -> None:
        while True:
            async with self._in_flight():
                group = [await self._queue.get()]
                while len(group) < self._max_group and not self._queue.empty():
                    group.append(self._queue.get_nowait())
                try:
                    await self._commit(group)
                finally:
                    for _ in group:
                        self._queue.task_done()

    async def _commit(self, group: list[tuple[UsageEvent, asyncio.Future[EventOutcome]]]) -> None:
        try:
            outcome = await self._record([event for event, _ in group], one_event_per_request=True)
        except Exception as exc:  # every request of the group gets the failure
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(group, outcome.results, strict=True):
            if not future.done():  # the client may have gone away meanwhile
                future.set_result(result)
        if len(group) > 1:
            log.debug("group_commit", events=len(group))
