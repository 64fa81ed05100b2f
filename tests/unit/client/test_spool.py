"""The SQLite spool of usage: what waits, what is parked, and spools of earlier versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from service.client.spool import Spool

OLD_SCHEMA = """
CREATE TABLE pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL, added_at REAL NOT NULL
);
CREATE TABLE kept_aside (
    event_id TEXT PRIMARY KEY, body BLOB NOT NULL, status TEXT NOT NULL,
    reason TEXT, at REAL NOT NULL
);
"""


async def test_a_spool_written_before_parking_existed_keeps_what_it_had_set_aside(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
        old.execute("INSERT INTO pending VALUES (1, 'evt-1', X'7B7D', 1.0)")
        old.execute("INSERT INTO kept_aside VALUES ('evt-0', X'7B7D', 'conflict', 'differs', 2.0)")
    spool = Spool(path)
    try:
        [parked] = await spool.parked()
        assert (parked.event_id, parked.status, parked.reason, parked.body) == (
            "evt-0",
            "conflict",
            "differs",
            b"{}",
        )
        assert await spool.take(10) == [(1, "evt-1", b"{}")]
        assert await spool.counts() == (1, 1)
    finally:
        await spool.close()
    reopened = Spool(path)  # the upgrade ran once; opening again changes nothing
    try:
        assert await reopened.counts() == (1, 1)
    finally:
        await reopened.close()


async def test_a_second_report_of_a_waiting_id_with_other_content_is_parked_not_dropped(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    try:
        assert await spool.counts() == (0, 0)  # no file yet: nothing to count
        await spool.add([("gen-1", b'{"output_tokens":5}')])
        await spool.add([("gen-1", b'{"output_tokens":5}')])  # the same report: once
        await spool.add([("gen-1", b'{"output_tokens":6}')])
        assert await spool.counts() == (1, 1)
        [parked] = await spool.parked()
        assert (parked.event_id, parked.status, parked.body) == (
            "gen-1",
            "conflict",
            b'{"output_tokens":6}',
        )
        # Parked again with the same body (a refused replay): one row, the new reason.
        await spool.park([("gen-1", b'{"output_tokens":6}', "conflict", "still differs")])
        [again] = await spool.parked()
        assert (again.id, again.reason) == (parked.id, "still differs")
        assert await spool.drop_parked(parked.id) == again
        assert await spool.drop_parked(parked.id) is None
        assert await spool.counts() == (1, 0)
    finally:
        await spool.close()


async def test_waiting_rows_are_taken_oldest_first_and_settled_or_parked(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    try:
        await spool.add([(f"gen-{i}", b"{}") for i in range(50)])
        assert await spool.counts() == (50, 0)

        # The oldest first, none that a process is recording now, none added after a time.
        assert [row[1] for row in await spool.take(3, skip={1, 2})] == ["gen-2", "gen-3", "gen-4"]
        assert await spool.take(3, added_before=0.0) == []

        await spool.settle(list(range(1, 50)), [])
        await spool.settle([], [(50, "gen-49", b"{}", "rejected", "a reason")])
        assert await spool.counts() == (0, 1)
    finally:
        await spool.close()


async def test_one_process_at_a_time_replays_a_shared_spool(tmp_path: Path) -> None:
    first, second = Spool(tmp_path / "spool.sqlite"), Spool(tmp_path / "spool.sqlite")
    try:
        assert first.lead_replay()
        assert first.lead_replay()  # kept
        assert not second.lead_replay()
        await first.close()  # a process that exits (or dies) lets go of it
        assert second.lead_replay()
    finally:
        await second.close()
