"""Usage born in LUC's own gateway that cannot be recorded (PostgreSQL away, any other
failure) waits in a local spool and reaches the ledger later: nothing lost, nothing twice.
The replay never gives up, waits longer after each failure, and one event that fails on
its own holds back nobody else."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TypedDict

import asyncpg
import msgspec
import pytest

from service.catalog.service import CatalogCache
from service.client.spool import Spool
from service.db import create_pool
from service.errors import DatabaseUnavailableError
from service.ingest.models import Rejection, UsageEvent
from service.metrics.instruments import Metrics
from service.recording.journal import journal_ids
from service.recording.models import BatchOutcome
from service.recording.service import record_batch
from service.recording.sink import RecordingSink
from service.settings import load_settings
from tests.support.events import usage_event_in
from tests.support.waiting import wait_until

usage = partial(usage_event_in, job_id="job-spool", agent="ORACLE", provider_cost_usd="0.0003")
# What a test puts in the spool is replayed at once (a sink leaves fresh usage to the process
# that spooled it for a second).


class _Replay(TypedDict):
    replay_after_seconds: float


AT_ONCE: _Replay = {"replay_after_seconds": 0.0}


class SwitchedLedger:
    """The real ledger write, behind a switch standing for PostgreSQL being away (``down``);
    with ``failing``, that event's own path fails (a bug in it) whenever it is written."""

    def __init__(self, pool: asyncpg.Pool, cache: CatalogCache, failing: str | None = None):
        self.down = True
        self._pool, self._cache, self._failing = pool, cache, failing

    async def __call__(self, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        if self.down:
            raise DatabaseUnavailableError("PostgreSQL is unavailable: connection refused")
        if any(isinstance(i, UsageEvent) and i.id == self._failing for i in items):
            raise ValueError(f"cannot price {self._failing}")
        async with self._pool.acquire() as conn:
            return await record_batch(conn, self._cache, items)


async def test_usage_recorded_during_an_outage_is_spooled_then_replayed_once(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    record = SwitchedLedger(pool, cache)

    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(pool, cache, settings.ingest, record=record, spool=spool, **AT_ONCE)
    try:
        for i in range(3):
            await sink.emit(usage(f"gen-{i}"))
        await sink.emit(usage("gen-0"))  # the same call reported twice
        await sink.idle()  # each recording, off the call's path, failed
        assert await spool.count() == 3  # an id already waiting is not queued twice
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 0

        with pytest.raises(DatabaseUnavailableError):
            await sink.replay_spooled()  # still away: everything stays spooled
        assert await spool.count() == 3

        record.down = False
        assert await sink.replay_spooled() == 3
        assert await spool.count() == 0
        await sink.emit(usage("gen-1"))  # a late repeat: through the spool to the ledger
        await sink.idle()
        # 3 events × (1000 × $0.10 + 500 × $0.40) / 1M = 3 × $0.0003
        assert await db.fetchval("SELECT cost_usd FROM rollup_jobs") == Decimal("0.0009")
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 3
    finally:
        await spool.close()
        await pool.close()


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_the_replay_keeps_going_after_unexpected_errors_with_growing_waits(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    attempts: list[float] = []
    failures: list[Exception] = [
        DatabaseUnavailableError("PostgreSQL is unavailable: connection refused"),
        asyncpg.exceptions.InternalServerError("cache lookup failed for type 16384"),
        RuntimeError("a bug nobody expected"),
    ]

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        attempts.append(time.monotonic())
        if failures:
            raise failures.pop(0)
        async with pool.acquire() as conn:
            return await record_batch(conn, cache, items)

    metrics = Metrics()
    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(
        pool, cache, settings.ingest, record=record, spool=spool, metrics=metrics, **AT_ONCE
    )
    replay: asyncio.Task[None] | None = None
    try:
        await spool.add([("gen-0", msgspec.json.encode(usage("gen-0")))])
        replay = asyncio.create_task(sink.run_replay(every_seconds=0.05, max_delay_seconds=0.15))

        async def placed() -> bool:
            return await spool.counts() == (0, 0)

        await _until("the spool to empty", placed)
        # Three failed attempts, then the fourth placed the event.
        assert len(attempts) == 4
        assert metrics.registry.get_sample_value("luc_gateway_spool_replay_failures_total") == 3
        # The waits double from 0.1 s (2 × every_seconds) and stop at the cap of 0.15 s.
        waits = [later - earlier for earlier, later in itertools.pairwise(attempts)]
        assert waits[0] >= 0.1 and waits[1] >= 0.15 and waits[2] >= 0.15
        # 1000 × $0.10 + 500 × $0.40 per 1M
        assert await db.fetchval("SELECT cost_usd FROM rollup_jobs") == Decimal("0.0003")
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 1
    finally:
        if replay is not None:
            replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay
        await spool.close()
        await pool.close()


async def test_an_event_that_fails_alone_holds_back_only_itself(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        # A bug that only this event's content sets off (not the database's fault).
        if any(isinstance(i, UsageEvent) and i.id == "gen-poison" for i in items):
            raise ValueError("cannot price gen-poison")
        async with pool.acquire() as conn:
            return await record_batch(conn, cache, items)

    metrics = Metrics()
    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(
        pool, cache, settings.ingest, record=record, spool=spool, metrics=metrics, **AT_ONCE
    )
    try:
        ids = ["gen-a", "gen-poison", "gen-b"]
        await spool.add([(i, msgspec.json.encode(usage(i))) for i in ids])
        assert await sink.replay_spooled() == 2  # gen-a and gen-b are on the ledger
        with pytest.raises(ValueError, match="cannot price gen-poison"):
            await sink.replay_spooled()  # only gen-poison is left: the attempt places nothing
        assert await spool.counts() == (1, 0)  # still spooled, never dropped
        [(_, waiting, _)] = await spool.take(10)
        assert waiting == "gen-poison"
        rows = await db.fetch("SELECT event_id FROM ledger_entries ORDER BY event_id")
        assert [r["event_id"] for r in rows] == ["gen-a", "gen-b"]
    finally:
        await spool.close()
        await pool.close()


async def test_an_event_failing_on_its_own_five_rounds_is_parked_but_an_outage_never_parks(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    record = SwitchedLedger(pool, cache, failing="gen-poison")  # a bug in its path only

    metrics = Metrics()
    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(
        pool, cache, settings.ingest, record=record, spool=spool, metrics=metrics, **AT_ONCE
    )
    try:
        ids = ["gen-a", "gen-poison", "gen-b"]
        await spool.add([(i, msgspec.json.encode(usage(i))) for i in ids])
        for _ in range(8):  # an outage, however long, parks nothing
            with pytest.raises(DatabaseUnavailableError):
                await sink.replay_spooled()
        assert await spool.counts() == (3, 0)

        record.down = False
        assert await sink.replay_spooled() == 2  # gen-a and gen-b; gen-poison fails (1)
        for _ in range(3):  # fails alone a 2nd, 3rd and 4th time: still spooled
            with pytest.raises(ValueError, match="cannot price gen-poison"):
                await sink.replay_spooled()
        assert await spool.counts() == (1, 0)
        assert await sink.replay_spooled() == 1  # the 5th: parked, leaving the spool
        assert await spool.counts() == (0, 1)
        assert await sink.replay_spooled() == 0  # nothing left to retry

        [parked] = await sink.parked(0, 10)  # what GET /v1/usage/parked lists
        assert (parked.event_id, parked.status) == ("gen-poison", "failed")
        assert parked.reason == (
            "failed on its own 5 times in a row: ValueError: cannot price gen-poison"
        )
        assert msgspec.json.decode(parked.body)["id"] == "gen-poison"  # kept whole
        assert (
            metrics.registry.get_sample_value(
                "luc_gateway_usage_parked_total", {"status": "failed"}
            )
            == 1
        )
        rows = await db.fetch("SELECT event_id FROM ledger_entries ORDER BY event_id")
        assert [r["event_id"] for r in rows] == ["gen-a", "gen-b"]
    finally:
        await spool.close()
        await pool.close()


async def test_a_single_spooled_event_failing_on_its_own_is_parked_too(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    tries = 0

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        nonlocal tries
        tries += 1
        raise asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow")

    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(
        pool,
        CatalogCache(),
        settings.ingest,
        record=record,
        spool=spool,
        park_after_failures=2,
        **AT_ONCE,
    )
    try:
        await spool.add([("gen-big", msgspec.json.encode(usage("gen-big")))])
        with pytest.raises(asyncpg.exceptions.NumericValueOutOfRangeError):
            await sink.replay_spooled()
        assert await sink.replay_spooled() == 1
        assert tries == 2
        [parked] = await sink.parked(0, 10)
        assert (parked.status, parked.reason) == (
            "failed",
            "failed on its own 2 times in a row: NumericValueOutOfRangeError: "
            "numeric field overflow",
        )
        assert await spool.counts() == (0, 1)
    finally:
        await spool.close()
        await pool.close()


async def test_a_sink_whose_record_fails_in_any_way_spools_the_usage(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        raise asyncpg.exceptions.InternalServerError("cache lookup failed for type 1234")

    metrics = Metrics()
    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(
        pool,
        CatalogCache(),
        settings.ingest,
        record=record,
        spool=spool,
        metrics=metrics,
        **AT_ONCE,
    )
    try:
        await sink.emit(usage("gen-x"))  # returns: the answer is not held up, nor broken
        await sink.idle()
        assert await spool.counts() == (1, 0)
        spooled = metrics.registry.get_sample_value(
            "luc_gateway_usage_spooled_total", {"cause": "error"}
        )
        assert spooled == 1
    finally:
        await spool.close()
        await pool.close()


async def test_settled_waits_for_the_usage_emitted_so_far_not_for_what_comes_after(
    database_url: str, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    gates = [asyncio.Event(), asyncio.Event()]
    batches: list[list[str | None]] = []

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        batches.append([i.id for i in items])
        await gates[len(batches) - 1].wait()  # each batch commits when the test says
        async with pool.acquire() as conn:
            return await record_batch(conn, cache, items)

    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(
        pool, cache, settings.ingest, record=record, spool=spool, linger_seconds=0.0
    )
    try:
        await sink.emit(usage("gen-a"))
        settled = asyncio.create_task(sink.settled())
        await wait_until(lambda: batches == [["gen-a"]], 10, "gen-a's batch to start")
        await sink.emit(usage("gen-b"))  # after: in the next batch, not waited for
        gates[0].set()
        await asyncio.wait_for(settled, 10)  # gen-b's batch is still held
        assert batches == [["gen-a"], ["gen-b"]] or batches == [["gen-a"]]
        gates[1].set()
        await sink.idle()
        assert await spool.counts() == (0, 0)
    finally:
        gates[1].set()
        await sink.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()


async def test_usage_neither_the_ledger_nor_the_spool_took_is_tried_again_by_its_process(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """PostgreSQL away and the spool unwritable (a full disk, a file another program
    holds): the call's usage stays in the journal, where only a later process found it, so
    a worker that lived on kept it off the ledger, and its own usage counted as waiting,
    until it stopped. It is tried again, and lands once either takes it."""
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    record = SwitchedLedger(pool, cache)

    spool_path = tmp_path / "spool.sqlite"
    spool_path.mkdir()  # SQLite cannot open it: the spool cannot be written
    spool = Spool(spool_path)
    sink = RecordingSink(
        pool, cache, settings.ingest, record=record, spool=spool, retry_seconds=0.05, **AT_ONCE
    )
    try:
        await sink.emit(usage("gen-stranded"))
        await sink.idle()
        assert journal_ids(spool_path) == ["gen-stranded"]  # durable, the answer was sent

        record.down = False  # PostgreSQL is back; the spool still cannot be written

        async def on_the_ledger() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM event_keys") == 1)

        await wait_until(on_the_ledger, 30, "the journaled usage on the ledger")
        await wait_until(lambda: journal_ids(spool_path) == [], 30, "the journal resolved")

        # Refused by the ledger (its id came back with other content) while nothing can
        # park it: it waits in the journal, then is parked once the spool can be written.
        await sink.emit(usage("gen-stranded", input_tokens=7))
        await sink.idle()
        assert journal_ids(spool_path) == ["gen-stranded"]
        spool_path.rmdir()
        await wait_until(lambda: journal_ids(spool_path) == [], 30, "the conflict parked")
        [parked] = await spool.parked()
        assert (parked.event_id, parked.status) == ("gen-stranded", "conflict")
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 1
    finally:
        await sink.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()


async def test_settled_takes_the_usage_waiting_to_share_a_transaction_at_once(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # Usage lingers (LINGER_SECONDS) for company in its transaction; whoever waits for the
    # ledger (a call a hard budget refused, looked at again once this process's usage has
    # landed) does not wait for that: here a linger of a minute, settled within seconds.
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(pool, CatalogCache(), settings.ingest, spool=spool, linger_seconds=60)
    try:
        await sink.emit(usage("gen-hurried"))
        await asyncio.wait_for(sink.settled(), 10)
        stored = "SELECT count(*) FROM ledger_entries WHERE event_id = 'gen-hurried'"
        assert await db.fetchval(stored) == 1
        await sink.emit(usage("gen-idle"))
        await asyncio.wait_for(sink.idle(), 10)
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 2
    finally:
        await sink.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()
