"""The proxy's usage journal when the disk fails under it: a write the OS cuts short is
finished or refused, never acknowledged half written (the call's usage then reaches the
ledger before the answer ends, as for a journal that cannot be written at all); and a dead
worker's journal file that cannot be read is set aside, named in the log and counted in
/metrics, while everything else is replayed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from service.catalog.service import CatalogCache
from service.client.spool import Spool
from service.db import create_pool
from service.recording import journal as journal_module
from service.recording.journal import journal_ids, usage_record
from service.recording.sink import RecordingSink
from service.settings import load_settings
from tests.support.events import usage_event_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio

usage = partial(usage_event_in, job_id="job-journal", agent="ORACLE", provider_cost_usd="0.0003")

Pwrite = Callable[[int, bytes, int], int]


def _short_writes(then: Callable[[Pwrite, int, bytes, int], int]) -> Pwrite:
    """``os.pwrite`` whose first call writes half of what it is given and says so (a
    signal, a disk filling up); the next goes to ``then``; later ones are the real call."""
    real = os.pwrite
    calls = 0

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real(fd, bytes(data)[: len(data) // 2], offset)
        if calls == 2:
            return then(real, fd, data, offset)
        return real(fd, data, offset)

    return pwrite


async def _ledger_count(db: asyncpg.Connection, event_id: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE event_id = $1", event_id
    )
    return count


@contextlib.asynccontextmanager
async def _lingering_sink(database_url: str, spool_path: Path) -> AsyncIterator[RecordingSink]:
    """A sink whose usage lingers a second before the writer records it: what is durable
    when ``emit`` returns is the journal's doing alone."""
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    spool = Spool(spool_path)
    sink = RecordingSink(pool, CatalogCache(), settings.ingest, spool=spool, linger_seconds=1.0)
    try:
        yield sink
    finally:
        await sink.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()


async def test_a_short_write_is_finished_before_the_usage_counts_as_durable(
    database_url: str, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    async with _lingering_sink(database_url, spool_path) as sink:
        await sink.emit(usage("gen-warm"))  # the journal's file exists: the next is one write
        monkeypatch.setattr(os, "pwrite", _short_writes(lambda real, *a: real(*a)))
        await sink.emit(usage("gen-short"))
        # On disk whole, as a process finding the file after a crash reads it.
        assert journal_ids(spool_path) == ["gen-warm", "gen-short"]
        await sink.idle()
        assert await _ledger_count(db, "gen-short") == 1
        await wait_until(lambda: journal_ids(spool_path) == [], 30, "the journal resolved")


async def test_a_disk_that_fills_mid_record_sends_the_usage_to_the_ledger_at_once(
    database_url: str, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(real: Pwrite, fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    spool_path = tmp_path / "spool.sqlite"
    async with _lingering_sink(database_url, spool_path) as sink:
        await sink.emit(usage("gen-warm"))
        monkeypatch.setattr(os, "pwrite", _short_writes(disk_full))
        await sink.emit(usage("gen-full"))
        # Half a record is in the journal, which does not hold the usage: the ledger took
        # it before ``emit`` returned (the path of a journal that cannot be written).
        assert journal_ids(spool_path) == ["gen-warm"]
        assert await _ledger_count(db, "gen-full") == 1

        # The journal goes on in a new file; nothing follows the half record in the old.
        await sink.emit(usage("gen-after"))
        assert journal_ids(spool_path) == ["gen-warm", "gen-after"]
        await sink.idle()
        assert await _ledger_count(db, "gen-warm") == 1
        assert await _ledger_count(db, "gen-after") == 1
        await wait_until(lambda: journal_ids(spool_path) == [], 30, "the journal resolved")
        assert sink.spool is not None and await sink.spool.count() == 0
        assert sink.metrics.process.get_sample_value("luc_gateway_usage_unrecorded_total") == 0
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 3


async def test_a_crash_after_a_failed_group_records_its_usage_once(
    database_url: str, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two calls share a group; the second one's write fails after the first was written
    whole. Both go to the ledger at once; a process that dies before the first record is
    resolved leaves it to the replay, which the ledger takes as a ``duplicate``."""
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    spool_path = tmp_path / "spool.sqlite"
    spool = Spool(spool_path)
    sink = RecordingSink(
        pool, CatalogCache(), settings.ingest, spool=spool, replay_after_seconds=0.0
    )
    assert sink.journal is not None
    real = os.pwrite
    calls = 0

    def second_fails(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, data, offset)

    try:
        await sink.emit(usage("gen-warm"))
        await sink.idle()  # recorded, and its note written: the journal is idle
        await wait_until(lambda: journal_ids(spool_path) == [], 30, "the journal resolved")
        monkeypatch.setattr(os, "pwrite", second_fails)
        first, second = usage("gen-a"), usage("gen-b")
        await asyncio.gather(sink.emit(first), sink.emit(second))
        monkeypatch.undo()
        assert await _ledger_count(db, "gen-a") == 1
        assert await _ledger_count(db, "gen-b") == 1
        assert journal_ids(spool_path) == ["gen-a"]  # whole, but nobody waits on it
    finally:
        # The process dies: its journal is left as it is (no ``aclose``).
        sink.journal._thread.shutdown(wait=True)
        for file in list(sink.journal._files.values()):
            os.close(file.fd)
    replayer = RecordingSink(
        pool, CatalogCache(), settings.ingest, spool=spool, replay_after_seconds=0.0
    )
    try:
        assert await replayer.replay_spooled() == 1
        assert journal_ids(spool_path) == []
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 3
    finally:
        await replayer.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()


def _dead_workers_file(spool_path: Path, owner: str, data: bytes) -> Path:
    """A journal file as a worker that died leaves it: records, then the zeros it was
    made with."""
    path = spool_path.with_name(f"{spool_path.name}.journal-{owner}-000001")
    path.write_bytes(data + bytes(4096))
    return path


def _unreadable(path: Path) -> None:
    """Make ``path`` a journal file whose reading fails with an ``OSError``: no read
    permission where that stops the process (not root); else a directory in its place
    (``EISDIR`` on the read, as ``EIO`` from a failing disk would be)."""
    if os.geteuid() != 0:
        path.chmod(0)
    else:
        path.unlink()
        path.mkdir()


def _set_aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("spool.sqlite.unreadable-journal-*"))


class _Logs:
    """The journal's log lines, as structlog would have them (its own capture cannot see
    a logger that the app's configuration cached in an earlier test)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.lines)

    def _line(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})

    error = warning = info = debug = _line


async def test_an_unreadable_dead_workers_journal_is_set_aside_and_the_rest_replayed(
    database_url: str, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    spool_path = tmp_path / "spool.sqlite"
    spool = Spool(spool_path)
    body = partial(msgspec.json.encode)
    # Worker A's file cannot be read at all; B's first record has a damaged header, so
    # its second (acknowledged usage, perhaps) cannot be found; C's is whole.
    lost = _dead_workers_file(spool_path, "aaaa", usage_record(1, "gen-a", body(usage("gen-a"))))
    _unreadable(lost)
    damaged = bytearray(usage_record(1, "gen-b1", body(usage("gen-b1"))))
    damaged[0:4] = b"XXXX"
    damaged += usage_record(2, "gen-b2", body(usage("gen-b2")))
    _dead_workers_file(spool_path, "bbbb", bytes(damaged))
    _dead_workers_file(
        spool_path,
        "cccc",
        usage_record(1, "gen-c1", body(usage("gen-c1")))
        + usage_record(2, "gen-c2", body(usage("gen-c2"))),
    )
    await spool.add([("gen-spooled", body(usage("gen-spooled")))])
    sink = RecordingSink(
        pool, CatalogCache(), settings.ingest, spool=spool, replay_after_seconds=0.0
    )
    try:
        logs = _Logs()
        monkeypatch.setattr(journal_module, "log", logs)
        assert await sink.replay_spooled() == 3
        assert sorted(await db.fetchval("SELECT array_agg(event_id) FROM ledger_entries")) == [
            "gen-c1",
            "gen-c2",
            "gen-spooled",
        ]
        # Both set aside under names an operator finds, not removed; each named in the log.
        assert _set_aside(tmp_path) == [
            "spool.sqlite.unreadable-journal-aaaa-000001",
            "spool.sqlite.unreadable-journal-bbbb-000001",
        ]
        assert journal_ids(spool_path) == []
        errors = {e["file"]: e["error"] for e in logs if e["event"] == "usage_journal_unreadable"}
        assert sorted(Path(f).name for f in errors) == [
            "spool.sqlite.journal-aaaa-000001",
            "spool.sqlite.journal-bbbb-000001",
        ]
        assert errors[str(tmp_path / "spool.sqlite.journal-bbbb-000001")] == (
            "bytes no crash leaves at offset 0"
        )
        assert await sink.spool_counts() == (0, 0)
        unreadable = "luc_gateway_journal_unreadable_files"
        assert sink.metrics.process.get_sample_value(unreadable) == 2

        # Once B's file is repaired and renamed back, its usage is recovered.
        repaired = usage_record(2, "gen-b2", body(usage("gen-b2")))
        (tmp_path / "spool.sqlite.unreadable-journal-bbbb-000001").unlink()
        _dead_workers_file(spool_path, "bbbb", repaired)
        assert await sink.replay_spooled() == 1
        assert await _ledger_count(db, "gen-b2") == 1
        assert await sink.spool_counts() == (0, 0)
        assert sink.metrics.process.get_sample_value(unreadable) == 1
    finally:
        await sink.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()


async def test_usage_on_its_way_from_a_journal_to_the_spool_is_counted_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead worker's usage is in the spool (committed) and still in its journal file
    (not yet removed) for a moment during recovery; so is usage the writer spooled before
    its note is written in the journal. /metrics counts it once all the same."""
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    spool_path = tmp_path / "spool.sqlite"
    spool = Spool(spool_path)
    body = msgspec.json.encode(usage("gen-dead"))
    _dead_workers_file(spool_path, "dddd", usage_record(1, "gen-dead", body))
    await spool.add([("gen-other", body)])
    sink = RecordingSink(pool, CatalogCache(), settings.ingest, spool=spool)
    assert sink.journal is not None
    seen: list[tuple[int, int]] = []
    committed = spool.add

    async def add_then_count(rows: Sequence[tuple[str, bytes]]) -> None:
        await committed(rows)
        seen.append(await sink.spool_counts())  # the file is not removed yet

    try:
        assert await sink.spool_counts() == (2, 0)
        monkeypatch.setattr(spool, "add", add_then_count)
        assert await sink.journal.recover(spool) == 1
        assert seen == [(2, 0)]
        assert await sink.spool_counts() == (2, 0)
    finally:
        await sink.aclose(grace_seconds=5)
        await spool.close()
        await pool.close()
