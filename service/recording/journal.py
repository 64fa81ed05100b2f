"""The proxy's usage journal: where each call's usage is made durable before its answer
ends (SPEC §8), more cheaply than in the SQLite spool.

Every proxied call's usage is written here, and almost all of it reaches the ledger a
moment later and is never read back. So the journal is a file each process only appends
to: a record (the event id and body, a checksum) written with ``os.pwrite`` into space
filled with zeros beforehand, then one ``fdatasync``, shared by the calls that came at
the same moment (a group commit). No page of a B-tree, no write-ahead log, no change of
the file's size per call: measured on the benchmark's disk, an append took about half the
time of the spool's insert and commit.

When usage is on the ledger, or could not be recorded and went to the spool (its
``pending`` table) to be replayed, or was parked there, the journal notes it resolved
(a small record, written with the next group, without a sync of its own: a note lost in a
power cut only makes the usage be recorded again, which the ledger takes as a
``duplicate``). A full file is followed by a new one, and removed once everything in it
is resolved.

Each file belongs to the process that writes it and is locked by it (``flock``). A file
whose process died (a crash, ``SIGKILL``) is no longer locked: ``recover`` (run by the
process that replays the spool) moves what it holds unresolved into the spool's
``pending`` table, durably, then removes the file; the replay records it from there, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from service.client.spool import Spool

log = structlog.get_logger("luc.gateway")

QUARANTINE = "unreadable-journal-"
"""What replaces ``journal-`` in the name of a file ``recover`` could not read:
``<spool>.unreadable-journal-<owner>-<number>``."""
FILE_BYTES = 4 * 1024 * 1024
"""Each file's size, written with zeros when it is made (once per few thousand calls)."""
SLOW_SYNC_SECONDS = 0.02
"""A write on the event loop slower than this (a disk that stalls, not one that is busy:
a busy shared disk syncs in 0.1–8 ms) sends writes to the journal's thread for..."""
SLOW_SYNC_BACKOFF = 10.0
"""...this many seconds."""
SETTLE_SECONDS = 60.0
"""How long ``recover`` waits for the provider's record of a held call (``settle``): past
the look-ups' own 29 s (``HELD_GENERATION_DELAYS``) and their round trips."""
SettleHeld = Callable[[bytes], Awaitable[bytes]]
"""A held call's body → the usage to book for it (``recover``)."""
_MAGIC = b"LUCj"
_RECORD = struct.Struct("<4sBIQI")  # magic, kind, payload length, seq, crc32
_USAGE, _RESOLVED, _HELD = 1, 2, 3
_ID_LENGTH = struct.Struct("<H")
_SEQ = struct.Struct("<Q")
_ZEROS = bytes(64 * 1024)


def _record(kind: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("<BIQ", kind, len(payload), seq)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return _RECORD.pack(_MAGIC, kind, len(payload), seq, crc) + payload


def _event_record(kind: int, seq: int, event_id: str, body: bytes) -> bytes:
    raw_id = event_id.encode()
    return _record(kind, seq, _ID_LENGTH.pack(len(raw_id)) + raw_id + body)


def usage_record(seq: int, event_id: str, body: bytes) -> bytes:
    return _event_record(_USAGE, seq, event_id, body)


def held_record(seq: int, event_id: str, body: bytes) -> bytes:
    return _event_record(_HELD, seq, event_id, body)


def resolved_record(seqs: Sequence[int]) -> bytes:
    return _record(_RESOLVED, 0, b"".join(_SEQ.pack(s) for s in seqs))


def _whole_records(data: bytes, offset: int = 0) -> Iterator[tuple[int, int, bytes, int]]:
    """The records of ``data`` from ``offset``, (kind, seq, payload, where the next one
    starts), up to the first one that is not whole there: the zeros after the last, one cut
    short by a crash (never acknowledged, since its group's sync had not returned), or one
    that runs past the end of ``data``."""
    while offset + _RECORD.size <= len(data):
        magic, kind, length, seq, crc = _RECORD.unpack_from(data, offset)
        start, end = offset + _RECORD.size, offset + _RECORD.size + length
        if magic != _MAGIC or end > len(data):
            return
        payload = data[start:end]
        if zlib.crc32(payload, zlib.crc32(struct.pack("<BIQ", kind, length, seq))) != crc:
            return
        yield kind, seq, payload, end
        offset = end


def _runs_past(data: bytes, offset: int) -> bool:
    """Whether the record at ``offset`` may be whole with the bytes after ``data``."""
    if offset + _RECORD.size > len(data):
        return True
    magic, _, length, _, _ = _RECORD.unpack_from(data, offset)
    return bool(magic == _MAGIC and offset + _RECORD.size + length > len(data))


def _usage_id(payload: bytes) -> str:
    (id_length,) = _ID_LENGTH.unpack_from(payload)
    return payload[2 : 2 + id_length].decode()


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """Usage a journal holds unresolved: ``held`` when it is a held call's
    (``UsageJournal.hold``: its process ended before the call's answer was read)."""

    seq: int
    event_id: str
    body: bytes
    held: bool = False


def read_records(files: Sequence[bytes]) -> list[JournalRecord]:
    """The usage that the files of one process's journal hold unresolved, in order. Each
    file is read up to its first record that is not whole (``_whole_records``). A held
    call counts when nothing resolved it and no usage of the same event id followed it."""
    usage: dict[int, JournalRecord] = {}
    held: dict[int, JournalRecord] = {}
    resolved: set[int] = set()
    for data in files:
        for kind, seq, payload, _ in _whole_records(data):
            if kind in (_USAGE, _HELD):
                (id_length,) = _ID_LENGTH.unpack_from(payload)
                event_id = payload[2 : 2 + id_length].decode()
                body = payload[2 + id_length :]
                if kind == _USAGE:
                    usage[seq] = JournalRecord(seq, event_id, body)
                else:
                    held[seq] = JournalRecord(seq, event_id, body, held=True)
            elif kind == _RESOLVED:
                resolved.update(done for (done,) in _SEQ.iter_unpack(payload))
    answered = {r.event_id for r in usage.values()}
    usage.update((seq, r) for seq, r in held.items() if r.event_id not in answered)
    return [r for seq, r in sorted(usage.items()) if seq not in resolved]


@dataclass
class _File:
    path: Path
    fd: int
    number: int
    offset: int = 0
    unresolved: set[int] = field(default_factory=set)
    full: bool = False


@dataclass
class _Pending:
    data: bytes
    durable: bool
    future: asyncio.Future[Any] | None
    on_written: Callable[[_File], None] | None = None


class UsageJournal:
    """This process's journal files, next to the spool file ``spool_path`` (see the module).

    ``append`` returns once the usage is on disk, with its seq; ``resolve`` notes seqs
    resolved. Both run on one thread of the journal's own, in the order they were asked.
    """

    def __init__(
        self,
        spool_path: Path,
        file_bytes: int = FILE_BYTES,
        slow_sync_seconds: float = SLOW_SYNC_SECONDS,
    ) -> None:
        self.folder = spool_path.parent
        self.prefix = f"{spool_path.name}.journal-"
        self.quarantine_prefix = f"{spool_path.name}.{QUARANTINE}"
        self.file_bytes = file_bytes
        self._token = secrets.token_hex(6)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="luc-journal")
        self._files: dict[int, _File] = {}
        self._current: _File | None = None
        self._numbers = 0
        self._seqs = 0
        self._where: dict[int, _File] = {}
        """Seq → the file holding it, until it is resolved."""
        self._resolved: list[int] = []
        self._held_queued: set[int] = set()
        """Holds not written yet; one resolved meanwhile leaves it, and is never counted as
        unresolved once written."""
        self._retired: list[_File] = []
        """Full files with nothing unresolved left: removed by the next group."""
        self._queued: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.may_block: Callable[[], bool] | None = None
        """Whether a group of one call's usage (or of notes only) may be written on the
        event loop itself rather than on the journal's thread: when nothing else waits on
        the loop (one call in flight), the hop to the thread and back is all the thread
        would bring, about 0.1 ms a call. Never for a group that needs a new file, nor for
        ``SLOW_SYNC_BACKOFF`` seconds after a write on the loop took longer than
        ``slow_sync_seconds`` (a disk that stalls must not stall every request with it)."""
        self._thread_only_until = 0.0
        self.slow_sync_seconds = slow_sync_seconds

    # The calls' side ------------------------------------------------------------------------

    async def append(self, event_id: str, body: bytes, supersedes: int | None = None) -> int:
        """Write one call's usage; on disk when this returns. Concurrent appends share one
        ``fdatasync``. Returns the usage's seq, for ``resolve``. ``supersedes``: the seq of
        the call's hold (``hold``), resolved by the same write, right after the usage (a
        crash cannot keep the note without the usage; a power cut that tore the write
        after the usage leaves the hold, which the usage's event id outranks on
        recovery)."""
        if self._closed:
            raise RuntimeError("the usage journal is closed")
        self._seqs += 1
        seq = self._seqs
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        data = usage_record(seq, event_id, body)
        if supersedes is not None:
            data += resolved_record([supersedes])

        def written(file: _File) -> None:
            file.unresolved.add(seq)
            self._where[seq] = file
            if supersedes is not None:
                self._superseded(supersedes)

        self._queued.append(_Pending(data, True, future, written))
        if self._flusher is None or self._flusher.done():
            self._write_inline()
        if not future.done():
            self._flush_soon()
        await future  # a future written inline is done: no hop to the loop
        return seq

    def hold(self, event_id: str, body: bytes, supersedes: int | None = None) -> int:
        """Note a call in flight that its provider may run (and bill): ``body`` is the
        usage to book should this process end before the call's own usage is appended (a
        crash, a ``SIGKILL`` mid-answer), estimated from what is known now. Written with
        the next group, without waiting for it and without a sync of its own: the page
        cache keeps it through the process's death (the call's own usage is synced as
        ever). ``supersedes``: the call's earlier hold, noted resolved in the same write,
        so no death between two writes leaves both (booked twice) or neither. Returns its
        seq, which the call's usage supersedes (``append``) or ``resolve`` drops."""
        if self._closed:
            raise RuntimeError("the usage journal is closed")
        self._seqs += 1
        seq = self._seqs
        data = held_record(seq, event_id, body)
        if supersedes is not None:
            data += resolved_record([supersedes])

        def written(file: _File) -> None:
            if supersedes is not None:
                self._superseded(supersedes)
            if seq not in self._held_queued:  # resolved before it was written
                return
            self._held_queued.discard(seq)
            file.unresolved.add(seq)
            self._where[seq] = file

        self._held_queued.add(seq)
        self._queued.append(_Pending(data, False, None, written))
        if self._flusher is None or self._flusher.done():
            self._write_inline()
        if self._queued:
            self._flush_soon()
        return seq

    def _superseded(self, held: int) -> None:
        """The hold ``held`` is resolved by the record just written after it (its note rode
        in the same write). Queued before that record, it was written first: in ``_where``
        now, or resolved already."""
        if (file := self._where.pop(held, None)) is not None:
            file.unresolved.discard(held)
        self._held_queued.discard(held)

    def resolve(self, seqs: Sequence[int]) -> None:
        """Note ``seqs`` resolved (recorded, spooled or parked), written with the next group,
        without a sync of its own; a full file whose usage is all resolved goes."""
        for seq in seqs:
            file = self._where.pop(seq, None)
            if file is not None:
                file.unresolved.discard(seq)
            else:
                self._held_queued.discard(seq)
        self._resolved.extend(seqs)
        self._flush_soon()

    def _retire(self) -> None:
        """Queue the removal of full files with nothing unresolved left. Runs between two
        groups only: a group being written may be putting usage in a file that its thread
        has just marked full, not yet counted in ``unresolved``."""
        for file in list(self._files.values()):
            if file.full and not file.unresolved:
                del self._files[file.number]
                self._retired.append(file)

    @property
    def unresolved(self) -> int:
        return len(self._where)

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="luc-journal-group")

    def _take(self) -> tuple[list[_Pending], list[_File]]:
        """The next group: what is queued, the resolved notes, the files to remove."""
        self._retire()
        group, self._queued = self._queued, []
        if self._resolved:
            group.append(_Pending(resolved_record(self._resolved), False, None))
            self._resolved = []
        retired, self._retired = self._retired, []
        return group, retired

    def _write_on_loop(self, group: Sequence[_Pending], retired: Sequence[_File]) -> list[_File]:
        """``_write`` on the event loop itself, timed (see ``may_block``)."""
        started = time.monotonic()
        try:
            return self._write(group, retired)
        finally:
            if time.monotonic() - started > self.slow_sync_seconds:
                # A slow disk: the loop is not held up again for a while.
                self._thread_only_until = time.monotonic() + SLOW_SYNC_BACKOFF

    def _written(self, group: Sequence[_Pending], files: Sequence[_File]) -> None:
        """Tell the group's callers that their records are on disk (in ``files``)."""
        for item, file in zip(group, files, strict=True):
            if item.on_written is not None:
                item.on_written(file)
            if item.future is not None and not item.future.done():
                item.future.set_result(None)
        self._retire()  # a file this group filled may hold nothing unresolved

    @staticmethod
    def _failed(group: Sequence[_Pending], exc: Exception) -> None:
        for item in group:  # every caller of the group hears of it
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc)

    def _write_inline(self) -> None:
        """With no group being written, write what is queued now, in the caller's turn, when
        ``_inline`` allows it (one call in flight): the flusher's task and the turns of the
        loop it takes were 45–90 µs of the 250–330 a lone append took (a loop of appends on
        the benchmark machine's disk, alternated runs: 163–282 µs with this). Resolved
        notes start the flusher (``resolve``), so with it idle none wait: the group is what
        is queued, asked about before it is taken."""
        if self._resolved or not self._inline(self._queued):
            return
        group, retired = self._take()
        try:
            files = self._write_on_loop(group, retired)
        except Exception as exc:
            self._failed(group, exc)
            return
        self._written(group, files)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queued or self._resolved or self._retired:
            group, retired = self._take()
            try:
                if self._inline(group):
                    files = self._write_on_loop(group, retired)
                else:
                    files = await loop.run_in_executor(self._thread, self._write, group, retired)
            except Exception as exc:
                self._failed(group, exc)
                continue
            self._written(group, files)

    def _inline(self, group: Sequence[_Pending]) -> bool:
        if self.may_block is None or sum(item.durable for item in group) > 1:
            return False  # calls answered together: their sync is the thread's
        if time.monotonic() < self._thread_only_until:
            return False
        size = sum(len(item.data) for item in group)
        current = self._current  # the thread is idle between groups: safe to read
        return current is not None and current.offset + size <= self.file_bytes and self.may_block()

    # The journal's thread -----------------------------------------------------------------------

    def _write(self, group: Sequence[_Pending], retired: Sequence[_File]) -> list[_File]:
        """Write the group's records in order (one ``fdatasync`` per file if any is
        durable); returns the file each went to."""
        for file in retired:  # all its usage resolved already: no note about it is needed
            self._remove(file)
        where: list[_File] = []
        dirty: dict[int, _File] = {}
        for item in group:
            file = self._room_for(len(item.data))
            try:
                _write_whole(file.fd, item.data, file.offset)
            except BaseException:
                # What the failed write left at ``file.offset`` (part of a record) ends
                # what is read of the file: nothing is written after it, and the group's
                # callers hear the error (their usage is not durable here).
                self._give_up(file)
                raise
            file.offset += len(item.data)
            where.append(file)
            if item.durable:
                dirty[file.number] = file
        for file in dirty.values():
            try:
                os.fdatasync(file.fd)
            except BaseException:
                # A failed sync may have dropped the pages it did not write (Linux marks
                # them clean): what the file holds past its last sync is unknown.
                self._give_up(file)
                raise
        return where

    def _give_up(self, file: _File) -> None:
        """No more records go to ``file`` after a write or sync that failed: the next group
        makes a new file; this one goes once its usage is resolved, like a full one. (The
        records of the failed group that are whole in it are not tracked: their callers
        took another path, so a process that dies first only has them recorded again, a
        ``duplicate``.)"""
        file.full = True
        if self._current is file:
            self._current = None

    def _room_for(self, size: int) -> _File:
        file = self._current
        if file is None or file.offset + size > self.file_bytes:
            if file is not None:
                file.full = True  # removed once all its usage is resolved (``_retire``)
            file = self._current = self._new_file(max(size, self.file_bytes))
        return file

    def _new_file(self, size: int) -> _File:
        """A file of zeros, locked, synced, then given its name (and the folder synced): a
        file found under a journal's name is whole and owned, or its owner died."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._numbers += 1
        name = f"{self.prefix}{self._token}-{self._numbers:06d}"
        making = self.folder / f".{name}.new"
        fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            left = size
            while left > 0:
                left -= os.write(fd, _ZEROS[: min(left, len(_ZEROS))])
            os.fsync(fd)
            os.rename(making, self.folder / name)
            _sync_folder(self.folder)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                making.unlink()
            raise
        file = _File(self.folder / name, fd, self._numbers)
        self._files[file.number] = file
        return file

    def _remove(self, file: _File) -> None:
        # Not synced: a removal lost in a power cut leaves usage that the ledger already
        # holds, recorded again as a duplicate.
        with contextlib.suppress(OSError):
            file.path.unlink()
        os.close(file.fd)
        if self._current is file:
            self._current = None

    # Closing, and the files of processes that died -------------------------------------------

    async def aclose(self) -> None:
        """Write what waits; remove the files whose usage is all resolved. Files still
        holding unresolved usage stay, for ``recover`` in the next process."""
        if self._closed:
            return
        self._closed = True
        while self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)
        files = list(self._files.values())
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_files, files)
        self._thread.shutdown(wait=True)

    def _close_files(self, files: Sequence[_File]) -> None:
        for file in files:
            if file.unresolved:
                os.close(file.fd)  # and so its lock: it is recovered by whoever replays
            else:
                self._remove(file)
        self._files.clear()
        self._current = None

    def orphans(self) -> dict[str, list[Path]]:
        """Journal files of this spool that may belong to no live process, by owner."""
        owners: dict[str, list[Path]] = {}
        if not self.folder.exists():
            return owners
        mine = {f.path for f in self._files.values()}
        for path in sorted(self.folder.glob(f"{self.prefix}*")):
            if path not in mine:
                owner = path.name.removeprefix(self.prefix).rsplit("-", 1)[0]
                owners.setdefault(owner, []).append(path)
        return owners

    async def recover(self, spool: Spool, settle: SettleHeld | None = None) -> int:
        """Move the unresolved usage of dead processes' journal files into ``spool``'s
        ``pending`` table (durably, an id already waiting there once), then remove the
        files. Returns how many events were moved.

        A held call's body is first given to ``settle``, which may return the usage to
        book in its place (the provider's own record of the call); within
        ``SETTLE_SECONDS``, else (or when it fails) the hold is booked as it was written.
        The files stay locked and in place meanwhile: a process that dies here leaves
        them to the next ``recover``.

        A file that cannot be read (``EACCES``, ``EIO``) or holds bytes that no crash
        leaves (``damage``) never holds up the rest: it is renamed out of the journal's
        names (``quarantined``), logged with why, and counted in /metrics; what it held
        whole before the damage is moved with its owner's other files.

        Between the spool's commit and the files' removal the usage is in both: the count
        of waiting usage (``RecordingSink.spool_counts``) reads the journals first and
        counts each id once."""
        moved = 0
        for owner, paths in self.orphans().items():
            held: list[tuple[Path, int]] = []
            unreadable: dict[Path, str] = {}
            rows: list[JournalRecord] = []
            try:
                for path in paths:
                    try:
                        fd = await asyncio.to_thread(_lock_orphan, path)
                    except OSError as exc:  # not even opened: no lock tells its owner lives
                        if exc.errno in _NOT_THE_FILES:
                            raise
                        unreadable[path] = _why(exc)
                        continue
                    if fd is not None:
                        held.append((path, fd))
                if len(held) + len(unreadable) < len(paths):
                    continue  # its process lives (or another replayer has it)
                files: list[bytes] = []
                for path, fd in held:
                    try:
                        data = await asyncio.to_thread(_read_all, fd)
                    except OSError as exc:
                        if exc.errno in _NOT_THE_FILES:
                            raise
                        unreadable[path] = _why(exc)
                        continue
                    if (at := damage(data)) is not None:
                        unreadable[path] = f"bytes no crash leaves at offset {at}"
                    files.append(data)  # what is whole before any damage
                rows = read_records(files)
                if settle is not None and any(r.held for r in rows):
                    rows = await _settled(rows, settle)
                if rows:
                    await spool.add([(r.event_id, r.body) for r in rows])
                for path, _ in held:
                    if path not in unreadable:
                        await asyncio.to_thread(path.unlink)
                for path, why in unreadable.items():
                    await asyncio.to_thread(self._quarantine, path, why)
            finally:
                for _, fd in held:
                    os.close(fd)
            if rows:
                log.warning(
                    "usage_journal_recovered",
                    owner=owner,
                    events=len(rows),
                    detail="a process ended before its calls' usage was recorded; it is "
                    "replayed from the spool",
                )
            moved += len(rows)
        await asyncio.to_thread(self._sweep)
        return moved

    def quarantined_name(self, path: Path) -> Path:
        """Where ``recover`` puts a journal file it cannot read: out of the journal's names,
        so no count or recovery reads it again. Renamed back (once it can be read), its
        usage is recovered; what was moved already is then recorded as a ``duplicate``."""
        return path.with_name(self.quarantine_prefix + path.name.removeprefix(self.prefix))

    def _quarantine(self, path: Path, why: str) -> None:
        target = self.quarantined_name(path)
        try:
            os.rename(path, target)
        except OSError as exc:  # left where it is: counted, and tried again next round
            why = f"{why}; and it could not be renamed: {_why(exc)}"
            target = path
        log.error(
            "usage_journal_unreadable",
            file=str(path),
            kept_as=str(target),
            error=why,
            detail="a dead process's journal file could not be read: its unresolved usage "
            "is not replayed until it is made readable and renamed back",
        )

    def _sweep(self) -> None:
        """Files left half made by a process that died making them (nothing in them)."""
        for path in self.folder.glob(f".{self.prefix}*.new"):
            fd = _lock_orphan(path)
            if fd is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
                os.close(fd)


async def _settled(rows: Sequence[JournalRecord], settle: SettleHeld) -> list[JournalRecord]:
    """``rows`` with each held call's body as ``settle`` gives it, asked all at once."""

    async def one(row: JournalRecord) -> JournalRecord:
        if not row.held:
            return row
        try:
            body = await asyncio.wait_for(settle(row.body), SETTLE_SECONDS)
        except Exception as exc:  # the hold as written: never worse than before
            log.warning("held_usage_not_settled", event_id=row.event_id, error=repr(exc))
            return row
        return JournalRecord(row.seq, row.event_id, body, held=True)

    return list(await asyncio.gather(*(one(r) for r in rows)))


def damage(data: bytes) -> int | None:
    """Where the bytes of the journal file ``data`` stop making sense, or ``None``. After
    its last whole record a file holds zeros (written when it was made), or one record
    cut short by a crash or a failed write (never acknowledged) and zeros after where it
    would end. Anything else is damage: whatever follows it, acknowledged usage perhaps,
    cannot be read. (A power cut that wrote the pages of an unsynced group out of order
    is reported too: nothing was acknowledged there, but only an operator can tell.)"""
    end = 0
    for record in _whole_records(data):
        end = record[3]
    if _zeros_from(data, end + _RECORD.size):
        return None  # zeros, or a header cut short (a write stopped at a page's end)
    if end + _RECORD.size <= len(data):
        magic, _, length, _, _ = _RECORD.unpack_from(data, end)
        if magic == _MAGIC and _zeros_from(data, end + _RECORD.size + length):
            return None
    return end


def _zeros_from(data: bytes, start: int) -> bool:
    return start >= len(data) or data.count(0, start) == len(data) - start


_NOT_THE_FILES = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EINTR, errno.EAGAIN}
)
"""Errors of the process reading a journal file, not of the file: the replay fails this
round and is tried again (``run_replay``), and the file is left where it is."""


def _why(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc}"


def _write_whole(fd: int, data: bytes, offset: int) -> None:
    """``os.pwrite`` all of ``data`` at ``offset``: a short write (a signal, a disk filling
    up) is continued where it stopped; one that writes nothing, or an ``OSError``
    (``ENOSPC``, ``EIO``), raises, so a partial record is never acknowledged."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        written = os.pwrite(fd, view[done:], offset + done)
        if written <= 0:
            raise OSError(errno.ENOSPC, f"the usage journal took {done} of {len(view)} bytes")
        done += written


def _lock_orphan(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not path.exists():  # removed by the one that held it until now
        os.close(fd)
        return None
    return fd


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


READ_BYTES = 64 * 1024
"""What ``JournalReader`` reads of a file at a time (more for a record that is larger)..."""
FIRST_READ_BYTES = 4096
"""...after a first read of this much (a page), often all that was written since the last
count, or nothing but zeros."""


@dataclass
class _Read:
    """What ``JournalReader`` has read of one file, up to ``offset`` (the start of its first
    record not whole when last read): the usage that the file holds and does not note
    resolved itself, and the seqs it notes resolved whose usage it does not hold (usage
    noted in the next file, when its own was full)."""

    identity: tuple[int, int]  # (st_dev, st_ino): the file this was read from
    offset: int = 0
    usage: dict[int, str] = field(default_factory=dict)
    resolved: set[int] = field(default_factory=set)


class JournalReader:
    """The event ids that every journal file of the spool ``spool_path`` holds unresolved:
    every worker's, live or dead (a scrape of any worker counts them all; what a process
    that died left behind counts until ``UsageJournal.recover`` moves it to the spool).

    A journal file is only ever appended to, so each file is read from where the last
    count stopped: a scrape reads what was written since, not the whole file (4 MB of
    it zeros, read and parsed at every scrape before: tens of milliseconds with a file
    nearly full). What has been read is kept per file, and forgotten with the file.
    Thread-safe: counts run on a thread, one at a time.
    """

    def __init__(self, spool_path: Path) -> None:
        self.folder = spool_path.parent
        self.prefix = f"{spool_path.name}.journal-"
        self.quarantine_prefix = f"{spool_path.name}.{QUARANTINE}"
        self._read: dict[Path, _Read] = {}
        self._lock = threading.Lock()
        self.unreadable = 0
        """Journal files that could not be read, as of the last ``ids``: set aside by
        ``UsageJournal.recover`` (``QUARANTINE``), or where they are (a live worker's, or
        one recovery has not come to yet). Their usage is counted nowhere."""

    def ids(self) -> list[str]:
        with self._lock:
            owners: dict[str, list[_Read]] = {}
            still: dict[Path, _Read] = {}
            unreadable = sum(1 for _ in self.folder.glob(f"{self.quarantine_prefix}*"))
            for path in sorted(self.folder.glob(f"{self.prefix}*")):
                try:
                    read = self._read_on(path)
                except OSError as exc:  # counted, and never holds up the count of the rest
                    unreadable += 1
                    log.debug("usage_journal_not_counted", file=str(path), error=_why(exc))
                    continue
                if read is None:
                    continue  # a file its worker removed meanwhile, all of it resolved
                still[path] = read
                owner = path.name.removeprefix(self.prefix).rsplit("-", 1)[0]
                owners.setdefault(owner, []).append(read)
            self._read = still
            self.unreadable = unreadable
            ids: list[str] = []
            for files in owners.values():
                usage: dict[int, str] = {}
                resolved: set[int] = set()
                for read in files:
                    usage.update(read.usage)
                    resolved.update(read.resolved)
                ids += [event_id for seq, event_id in sorted(usage.items()) if seq not in resolved]
            return ids

    def _read_on(self, path: Path) -> _Read | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            status = os.fstat(fd)
            identity = (status.st_dev, status.st_ino)
            read = self._read.get(path)
            if read is None or read.identity != identity:
                read = _Read(identity)
            wanted = FIRST_READ_BYTES
            while read.offset < status.st_size:
                asked = min(wanted, status.st_size - read.offset)
                data = os.pread(fd, asked, read.offset)
                whole = 0  # where the records that are whole in ``data`` end
                for kind, seq, payload, end in _whole_records(data):
                    whole = end
                    if kind == _USAGE:
                        read.usage[seq] = _usage_id(payload)
                    elif kind == _RESOLVED:
                        for (done,) in _SEQ.iter_unpack(payload):
                            # A seq's usage is written once, before it is noted resolved.
                            if read.usage.pop(done, None) is None:
                                read.resolved.add(done)
                read.offset += whole
                if len(data) < asked or asked == status.st_size - (read.offset - whole):
                    break  # read to the file's end: what is left is not whole (yet)
                if not _runs_past(data, whole):
                    break  # zeros after the last record, or one not whole (being written)
                # The next record begins in what was read and ends after it: read on from
                # its start, twice as much at once if it alone was larger.
                wanted = READ_BYTES if whole else max(READ_BYTES, wanted * 2)
            return read
        finally:
            os.close(fd)


def journal_ids(spool_path: Path) -> list[str]:
    """The event ids every journal file of ``spool_path`` holds unresolved (``JournalReader``,
    reading each file whole; tests: what a dead process left behind)."""
    return JournalReader(spool_path).ids()
