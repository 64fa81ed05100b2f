"""The usage journal (``recording.journal``): what ``append`` acknowledged is on disk and
found again after the process dies, until ``resolve`` notes it; full files give way to new
ones and go once all their usage is resolved; the files of a dead process are moved into
the spool once, those of a live one never."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from service.client.spool import Spool
from service.recording import journal as journal_module
from service.recording.journal import (
    FIRST_READ_BYTES,
    READ_BYTES,
    JournalReader,
    JournalRecord,
    UsageJournal,
    damage,
    held_record,
    journal_ids,
    read_records,
    usage_record,
)

pytestmark = pytest.mark.asyncio


def _files(spool_path: Path) -> list[str]:
    return sorted(p.name for p in spool_path.parent.glob(f"{spool_path.name}.journal-*"))


async def test_appended_usage_is_on_disk_until_resolved(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path)
    seqs = await asyncio.gather(*(journal.append(f"gen-{i}", b'{"n": %d}' % i) for i in range(5)))
    assert sorted(seqs) == [1, 2, 3, 4, 5]
    # Read straight from the files, as a process finding them after a crash would.
    assert journal_ids(spool_path) == [f"gen-{i}" for i in range(5)]
    assert journal.unresolved == 5

    journal.resolve([seqs[0], seqs[3]])
    await journal.append("gen-5", b"{}")  # the note is written with the next group
    assert journal_ids(spool_path) == ["gen-1", "gen-2", "gen-4", "gen-5"]
    assert journal.unresolved == 4

    await journal.aclose()  # unresolved usage stays, for the next process
    assert journal_ids(spool_path) == ["gen-1", "gen-2", "gen-4", "gen-5"]


def _read(spool_path: Path) -> list[tuple[str, bytes]]:
    """What a process finding the journal's files would book: (event id, body)."""
    files = [(spool_path.parent / name).read_bytes() for name in _files(spool_path)]
    return [(r.event_id, r.body) for r in read_records(files)]


async def test_a_held_call_is_booked_unless_its_usage_or_a_release_came(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path)
    answered = journal.hold("gen-a", b'{"held": "a"}')  # its usage comes, superseding it
    journal.hold("gen-b", b'{"held": "b"}')  # its process dies mid-answer
    nothing = journal.hold("gen-c", b'{"held": "c"}')  # ends with nothing to meter
    await journal.append("gen-a", b'{"usage": "a"}', supersedes=answered)
    journal.resolve([nothing])
    await journal.append("gen-d", b'{"usage": "d"}')  # the note is written with this group
    assert _read(spool_path) == [
        ("gen-b", b'{"held": "b"}'),
        ("gen-a", b'{"usage": "a"}'),
        ("gen-d", b'{"usage": "d"}'),
    ]
    assert journal.unresolved == 3  # gen-b's hold keeps its file, as usage does
    # A hold is no usage waiting for the ledger while its process lives.
    assert journal_ids(spool_path) == ["gen-a", "gen-d"]
    await journal.aclose()


async def test_a_hold_superseded_by_the_call_s_next_hold_is_booked_no_more(
    tmp_path: Path,
) -> None:
    """The hold made when the request went out is replaced, at the provider's 2xx, by one
    under the generation id, in the same write: a death after it leaves one to book."""
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path)
    sent = journal.hold("luc-1", b"sent")
    await journal.append("gen-x", b"{}")  # a group: the first hold is written
    answered = journal.hold("gen-1", b"answered", supersedes=sent)
    queued = journal.hold("luc-2", b"sent")  # replaced before either is written
    journal.hold("gen-2", b"answered", supersedes=queued)
    await journal.append("gen-y", b"{}")
    assert _read(spool_path) == [
        ("gen-x", b"{}"),
        ("gen-1", b"answered"),
        ("gen-2", b"answered"),
        ("gen-y", b"{}"),
    ]
    assert journal.unresolved == 4  # the two usages and the two live holds
    journal.resolve([answered])
    await journal.aclose()
    assert [i for i, _ in _read(spool_path)] == ["gen-x", "gen-2", "gen-y"]


async def test_a_hold_released_before_it_is_written_leaves_nothing_unresolved(
    tmp_path: Path,
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path)
    held = journal.hold("gen-a", b"{}")  # queued: no group has run yet
    journal.resolve([held])
    seq = await journal.append("gen-b", b"{}")
    assert journal.unresolved == 1
    journal.resolve([seq])
    await journal.aclose()
    assert _read(spool_path) == []


async def test_a_call_s_usage_outranks_its_hold_when_the_note_was_torn_off() -> None:
    # A power cut tore the write after the usage: the hold's note is lost, the usage whole.
    data = held_record(1, "gen-a", b"held") + usage_record(2, "gen-a", b"usage")
    assert read_records([data]) == [JournalRecord(2, "gen-a", b"usage")]
    # A hold whose call's usage never came is booked.
    assert read_records([held_record(1, "gen-a", b"held")]) == [
        JournalRecord(1, "gen-a", b"held", held=True)
    ]


async def test_full_files_give_way_and_go_once_their_usage_is_resolved(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite"
    body = b"x" * 300  # about 330 bytes a record: 3 to a file of 1,024 bytes
    journal = UsageJournal(spool_path, file_bytes=1024)
    seqs = [await journal.append(f"gen-{i}", body) for i in range(7)]
    assert len(_files(spool_path)) == 3
    journal.resolve(seqs[:3])  # the first file's three
    await journal.append("gen-7", body)
    assert len(_files(spool_path)) == 2  # it went; its usage is on the ledger
    assert journal_ids(spool_path) == [f"gen-{i}" for i in range(3, 8)]

    journal.resolve([*seqs[3:], 8])
    await journal.aclose()
    assert _files(spool_path) == []  # all resolved: nothing left behind


async def test_a_record_cut_short_or_garbage_ends_what_is_read() -> None:
    first, second = usage_record(1, "gen-a", b"{}"), usage_record(2, "gen-b", b"{}")
    assert [r.event_id for r in read_records([first + second])] == ["gen-a", "gen-b"]
    assert [r.event_id for r in read_records([first + second[:-1]])] == ["gen-a"]
    damaged = second[:-2] + b"?" + second[-1:]  # its checksum no longer matches
    assert [r.event_id for r in read_records([first + damaged + usage_record(3, "c", b"")])] == [
        "gen-a"
    ]
    assert read_records([bytes(4096)]) == []


_DYING = """
import asyncio, os, signal
from pathlib import Path
from service.recording.journal import UsageJournal

async def main() -> None:
    journal = UsageJournal(Path({spool!r}), file_bytes=1024)
    seqs = [await journal.append(f"gen-{{i}}", b"x" * 300) for i in range(5)]
    journal.resolve(seqs[:2])  # recorded before the crash...
    await journal.append("gen-5", b"x" * 300)  # ...and noted with this group
    print("appended", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_a_dead_processs_unresolved_usage_moves_to_the_spool_once(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.sqlite"
    live = UsageJournal(spool_path)
    await live.append("gen-live", b"{}")  # a process that lives: its file is locked
    script = textwrap.dedent(_DYING.format(spool=str(spool_path)))
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == "appended\n"
    assert sorted(journal_ids(spool_path)) == ["gen-2", "gen-3", "gen-4", "gen-5", "gen-live"]

    spool = Spool(spool_path)
    replayer = UsageJournal(spool_path)
    try:
        # The notes of gen-0 and gen-1 are in the dead process's last file, their usage in
        # its first: read together, they are not moved.
        assert await replayer.recover(spool) == 4
        assert sorted(i for _, i, _ in await spool.take(10)) == ["gen-2", "gen-3", "gen-4", "gen-5"]
        assert journal_ids(spool_path) == ["gen-live"]  # the dead one's files are gone
        assert await replayer.recover(spool) == 0  # once
        assert await spool.count() == 4
    finally:
        await live.aclose()
        await replayer.aclose()
        await spool.close()
    assert journal_ids(spool_path) == ["gen-live"]  # closed unresolved: for the next one
    os.sync()


async def test_one_calls_usage_is_written_on_the_loop_when_nothing_else_waits(
    tmp_path: Path,
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path)
    alone = True
    journal.may_block = lambda: alone
    await journal.append("gen-first", b"{}")  # makes the file: on the journal's thread
    busy = threading.Event()
    held = asyncio.get_running_loop().run_in_executor(journal._thread, busy.wait, 10)
    try:
        # The journal's thread is held up: one call's usage is written all the same.
        seq = await asyncio.wait_for(journal.append("gen-alone", b"{}"), 5)
        journal.resolve([seq])
        await asyncio.wait_for(journal.append("gen-alone-too", b"{}"), 5)
        assert journal_ids(spool_path) == ["gen-first", "gen-alone-too"]

        alone = False  # other requests wait on the loop: the thread writes, the loop goes on
        waiting = asyncio.ensure_future(journal.append("gen-later", b"{}"))
        done, _ = await asyncio.wait([waiting], timeout=0.2)
        assert not done  # queued for the thread
    finally:
        busy.set()
        await held
    await asyncio.wait_for(waiting, 5)
    assert journal_ids(spool_path) == ["gen-first", "gen-alone-too", "gen-later"]
    await journal.aclose()


async def test_a_lone_calls_usage_is_written_before_the_loop_turns(tmp_path: Path) -> None:
    """Alone on the loop, an append writes in its caller's turn: no task of the journal's,
    no turn of the loop between the call and its usage on disk."""
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path)
    journal.may_block = lambda: True
    await journal.append("gen-first", b"{}")  # makes the file: on the journal's thread
    turned: list[str] = []
    asyncio.get_running_loop().call_soon(turned.append, "the loop turned")
    await journal.append("gen-alone", b"{}")
    assert turned == []
    assert journal_ids(spool_path) == ["gen-first", "gen-alone"]
    await asyncio.sleep(0)
    assert turned == ["the loop turned"]
    await journal.aclose()


async def test_after_a_slow_write_on_the_loop_the_thread_writes_for_a_while(
    tmp_path: Path,
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    journal = UsageJournal(spool_path, slow_sync_seconds=0.0)  # every write counts as slow
    journal.may_block = lambda: True
    await journal.append("gen-first", b"{}")  # makes the file: on the journal's thread
    await journal.append("gen-on-the-loop", b"{}")  # alone: on the loop, and "slow"
    busy = threading.Event()
    held = asyncio.get_running_loop().run_in_executor(journal._thread, busy.wait, 10)
    try:
        waiting = asyncio.ensure_future(journal.append("gen-later", b"{}"))
        done, _ = await asyncio.wait([waiting], timeout=0.2)
        assert not done  # alone, yet queued for the thread: the loop is not risked again
    finally:
        busy.set()
        await held
    await asyncio.wait_for(waiting, 5)
    assert journal_ids(spool_path) == ["gen-first", "gen-on-the-loop", "gen-later"]
    await journal.aclose()


async def test_every_worker_s_unresolved_usage_is_counted_from_the_files(tmp_path: Path) -> None:
    # Two workers of one luc serve share the spool; a scrape of either counts both journals.
    spool_path = tmp_path / "spool.sqlite"
    first, second = UsageJournal(spool_path), UsageJournal(spool_path)
    one = await first.append("gen-a", b"{}")
    await second.append("gen-b", b"{}")
    await second.append("gen-c", b"{}")
    assert sorted(journal_ids(spool_path)) == ["gen-a", "gen-b", "gen-c"]
    assert (first.unresolved, second.unresolved) == (1, 2)  # each knows only its own
    first.resolve([one])
    await first.append("gen-d", b"{}")  # the note goes with the next group
    assert sorted(journal_ids(spool_path)) == ["gen-b", "gen-c", "gen-d"]
    await first.aclose()
    await second.aclose()


def _bytes_read() -> int:
    """Bytes this process has read with read(2) and its kin so far, the page cache's too."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


async def test_a_count_reads_what_the_journals_hold_not_their_zeros(tmp_path: Path) -> None:
    # /metrics counts every worker's journal at each scrape. Each file is 4 MB of zeros
    # when made; it was read whole (and parsed) every time: 8 MB a scrape for two workers.
    spool_path = tmp_path / "spool.sqlite"
    first, second = UsageJournal(spool_path), UsageJournal(spool_path)
    await first.append("gen-a", b"{}")
    await second.append("gen-b", b"{}")
    before = _bytes_read()
    assert sorted(journal_ids(spool_path)) == ["gen-a", "gen-b"]
    assert _bytes_read() - before < 3 * FIRST_READ_BYTES

    # A reader that counted once reads on from where it stopped: what was written since.
    reader = JournalReader(spool_path)
    assert sorted(reader.ids()) == ["gen-a", "gen-b"]
    body = b"x" * 1000
    seqs = [await first.append(f"gen-{i}", body) for i in range(300)]  # about 300 KB
    first.resolve(seqs[:299])
    await second.append("gen-c", b"{}")
    before = _bytes_read()
    assert sorted(reader.ids()) == ["gen-299", "gen-a", "gen-b", "gen-c"]
    assert _bytes_read() - before < 300 * 1040 + 2 * READ_BYTES + 4096
    before = _bytes_read()
    assert sorted(reader.ids()) == ["gen-299", "gen-a", "gen-b", "gen-c"]
    assert _bytes_read() - before < 3 * FIRST_READ_BYTES  # nothing new: a page of each
    await first.aclose()
    await second.aclose()


async def test_a_reader_that_goes_on_from_where_it_stopped_counts_as_one_that_reads_all(
    tmp_path: Path,
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    reader = JournalReader(spool_path)
    assert reader.ids() == []  # no journal yet (no folder even)

    def counted() -> list[str]:
        ids = reader.ids()
        assert ids == journal_ids(spool_path)  # a reader new to the files reads them whole
        return ids

    small = UsageJournal(spool_path, file_bytes=1024)  # 3 records of 330 bytes to a file
    body = b"x" * 300
    seqs = [await small.append(f"gen-{i}", body) for i in range(4)]
    assert counted() == ["gen-0", "gen-1", "gen-2", "gen-3"]
    small.resolve([seqs[0], seqs[3]])  # the note goes in the second file, with gen-4
    await small.append("gen-4", body)
    assert counted() == ["gen-1", "gen-2", "gen-4"]
    small.resolve([seqs[1], seqs[2]])  # the first file's usage all resolved: it goes
    await small.append("gen-5", body)
    assert len(_files(spool_path)) == 2
    assert counted() == ["gen-4", "gen-5"]

    # A record larger than a read, and one that is still being written when counted.
    large = UsageJournal(spool_path)
    await large.append("gen-large", b"y" * (3 * READ_BYTES))
    assert sorted(counted()) == ["gen-4", "gen-5", "gen-large"]
    current = large._current
    assert current is not None
    torn = usage_record(99, "gen-torn", b"{}")
    os.pwrite(current.fd, torn[:20], current.offset)
    assert sorted(counted()) == ["gen-4", "gen-5", "gen-large"]
    os.pwrite(current.fd, torn[20:], current.offset + 20)
    assert sorted(counted()) == ["gen-4", "gen-5", "gen-large", "gen-torn"]
    await small.aclose()
    await large.aclose()


async def test_damage_is_told_from_what_a_crash_leaves_at_the_end() -> None:
    first, second = usage_record(1, "gen-a", b"{}"), usage_record(2, "gen-b", b'{"n": 1}')
    zeros = bytes(256)
    assert damage(first + second + zeros) is None
    assert damage(bytes(4096)) is None
    # The last record cut short (a crash, a failed write): never acknowledged.
    assert damage(first + second[:-3] + zeros) is None
    assert damage(first + second[:5] + zeros) is None  # its header itself cut short
    assert damage(first + second[:2] + zeros) is None  # ...even its magic
    # A damaged header, or bytes after a record cut short: what follows cannot be read.
    assert damage(b"XXXX" + first[4:] + second + zeros) == 0
    assert damage(first + second[:-3] + bytes(3) + usage_record(3, "gen-c", b"{}")) == len(first)


async def test_the_count_of_waiting_usage_goes_on_past_a_file_it_cannot_read(
    tmp_path: Path,
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    folder = tmp_path
    (folder / "spool.sqlite.journal-aaaa-000001").mkdir()  # its read fails: EISDIR
    (folder / "spool.sqlite.journal-bbbb-000001").write_bytes(
        usage_record(1, "gen-b", b"{}") + bytes(64)
    )
    (folder / "spool.sqlite.unreadable-journal-cccc-000001").write_bytes(b"?")
    reader = JournalReader(spool_path)
    assert reader.ids() == ["gen-b"]
    assert reader.unreadable == 2  # the one where it lies, the one set aside


async def test_a_replayer_out_of_file_descriptors_sets_nothing_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EMFILE`` is the replaying process's trouble, not the file's: the round fails (it
    is tried again) and the dead worker's file stays where recovery finds it next time."""
    spool_path = tmp_path / "spool.sqlite"
    dead = tmp_path / "spool.sqlite.journal-dddd-000001"
    dead.write_bytes(usage_record(1, "gen-d", b"{}") + bytes(64))
    real_open = os.open

    def out_of_descriptors(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == dead:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    spool = Spool(spool_path)
    replayer = UsageJournal(spool_path)
    try:
        monkeypatch.setattr(os, "open", out_of_descriptors)
        with pytest.raises(OSError, match="Too many open files"):
            await replayer.recover(spool)
        monkeypatch.undo()
        assert journal_ids(spool_path) == ["gen-d"]
        assert await replayer.recover(spool) == 1
        assert [i for _, i, _ in await spool.take(10)] == ["gen-d"]
    finally:
        await replayer.aclose()
        await spool.close()


async def test_a_dead_processs_held_calls_are_settled_before_they_are_spooled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each held call is given to ``settle`` (the provider's record, in LUC); a hold whose
    settling fails or takes too long is spooled as written, and usage is never asked."""
    monkeypatch.setattr(journal_module, "SETTLE_SECONDS", 0.2)
    spool_path = tmp_path / "spool.sqlite"
    (tmp_path / "spool.sqlite.journal-dddd-000001").write_bytes(
        usage_record(1, "gen-u", b"usage")
        + held_record(2, "gen-found", b"found")
        + held_record(3, "gen-fails", b"fails")
        + held_record(4, "gen-slow", b"slow")
        + bytes(64)
    )
    asked: list[bytes] = []

    async def settle(body: bytes) -> bytes:
        asked.append(body)
        if body == b"fails":
            raise RuntimeError("the provider is away")
        if body == b"slow":
            await asyncio.sleep(5)
        return b"the provider's record"

    spool = Spool(spool_path)
    try:
        assert await UsageJournal(spool_path).recover(spool, settle) == 4
        assert sorted((i, body) for _, i, body in await spool.take(10)) == [
            ("gen-fails", b"fails"),
            ("gen-found", b"the provider's record"),
            ("gen-slow", b"slow"),
            ("gen-u", b"usage"),
        ]
        assert sorted(asked) == [b"fails", b"found", b"slow"]
        assert journal_ids(spool_path) == []
    finally:
        await spool.close()
