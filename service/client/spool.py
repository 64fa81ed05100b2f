"""The spool: usage waiting on the gateway's own machine until LUC has it, and what LUC
refused, parked for an operator.

Both sinks keep it: the emitter (a gateway running elsewhere) spools every event before
sending it; LUC's in-process sink (``service.recording.sink``) spools what it cannot
record now and parks what the ledger refused.

Why SQLite for the spool: appends and acknowledgements are small atomic transactions
(``synchronous=FULL``: on disk when ``emit`` returns), an acknowledged batch disappears
in one statement, and no compaction or offset file is needed, as append-only JSONL
files would require. It is local to the gateway's machine; the ledger stays in PostgreSQL.

LUC's proxy makes each call's usage durable in a cheaper append-only journal beside this
file, ``service.recording.journal``, and brings here only what it could not record at once,
or what a process that died left in its journal. Several LUC processes may share one file
(SQLite locks it); ``lead_replay`` lets one of them at a time replay it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
# A row to park: (event_id, body, status, reason).
ParkRow = tuple[str, bytes, str, "str | None"]
# A row to settle aside: (seq, event_id, body, status, reason).
AsideRow = tuple[int, str, bytes, str, "str | None"]
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
        self._lead: int | None = None
        """The replay lock's file descriptor, once this process holds it."""

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

    def lead_replay(self) -> bool:
        """Whether this process replays the file: the first to ask holds an exclusive
        ``flock`` on ``<spool>.replay-lock`` until it closes the spool (or dies, when the
        kernel lets go of it), so two processes sharing the file never replay it at once."""
        if self._lead is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.replay-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lead = fd
        return True

    def _park_rows(self, rows: Sequence[ParkRow], now: float) -> None:
        self.conn.executemany(
            # The same body parked again (a refused replay) keeps one row, reason updated.
            "INSERT INTO parked (event_id, body, status, reason, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (event_id, body) DO UPDATE "
            "SET status = excluded.status, reason = excluded.reason, at = excluded.at",
            [(event_id, body, status, reason, now) for event_id, body, status, reason in rows],
        )

    async def take(
        self, limit: int, *, added_before: float | None = None, skip: Collection[int] = ()
    ) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` waiting rows, oldest first: only those added before the Unix time
        ``added_before`` (when given), and none of ``skip``."""
        result: list[tuple[int, str, bytes]] = await self._run(
            self._take, limit, added_before, frozenset(skip)
        )
        return result

    def _take(
        self, limit: int, added_before: float | None, skip: frozenset[int]
    ) -> list[tuple[int, str, bytes]]:
        conn = self._opened()
        if conn is None:
            return []
        rows = conn.execute(
            "SELECT seq, event_id, body FROM pending WHERE added_at < ? ORDER BY seq LIMIT ?",
            (float("inf") if added_before is None else added_before, limit + len(skip)),
        ).fetchall()
        return [row for row in rows if row[0] not in skip][:limit]

    async def settle(self, done: Sequence[int], aside: Sequence[AsideRow]) -> None:
        """Remove delivered rows (``done``) and park refused ones (``aside``) from pending."""
        await self._run(self._settle, done, aside)

    def _settle(self, done: Sequence[int], aside: Sequence[AsideRow]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self._settle_rows(done, aside, time.time())

    def _settle_rows(self, done: Sequence[int], aside: Sequence[AsideRow], now: float) -> None:
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

    async def counts(self, waiting_too: Collection[str] = ()) -> tuple[int, int]:
        """(waiting in ``pending``, parked). With ``waiting_too``, the ids of usage waiting
        elsewhere (a journal), the first counts usage waiting in either, each id once
        (read in the same statement as ``pending``)."""
        result: tuple[int, int] = await self._run(self._counts, sorted(set(waiting_too)))
        return result

    def _counts(self, waiting_too: Sequence[str]) -> tuple[int, int]:
        conn = self._opened()
        if conn is None:
            return len(waiting_too), 0
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pending), (SELECT count(*) FROM parked), "
            "(SELECT count(*) FROM json_each(?) WHERE value NOT IN (SELECT event_id FROM pending))",
            (json.dumps(waiting_too),),
        ).fetchone()
        return int(row[0]) + int(row[2]), int(row[1])

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
        if self._lead is not None:
            os.close(self._lead)  # and so the lock: another process may replay now
            self._lead = None
