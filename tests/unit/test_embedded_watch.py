"""The embedded PostgreSQL's watch between its postmaster's death and its restart, with real
processes standing in for the postmaster: a dead one not yet reaped (a zombie, which the
package and PostgreSQL's lock file check both take for a live server) and a live one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from structlog.testing import capture_logs

from service.db import embedded_watch
from service.db.embedded import _zombie, reap_dead_children
from service.db.embedded_watch import EmbeddedWatch
from tests.support.package_lock import held_by_another_process, package_lock_path
from tests.support.waiting import wait_for


class _Package:
    """``PostgresServer.ensure_postgres_running`` as the package runs it: a postmaster.pid
    whose pid psutil finds running (a zombie too) is adopted and nothing started; else a
    server is "started" (a live process written to postmaster.pid)."""

    def __init__(self, pgdata: Path, live_pid: int) -> None:
        self.pgdata = pgdata
        self.live_pid = live_pid
        self.started = 0
        self.adopted = 0

    def ensure_postgres_running(self) -> None:
        recorded = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        if psutil.pid_exists(recorded) and psutil.Process(recorded).is_running():
            self.adopted += 1
            return
        self.started += 1
        (self.pgdata / "postmaster.pid").write_text(f"{self.live_pid}\n{self.pgdata}\n")


@pytest.fixture
def live() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def _zombie_postmaster(pgdata: Path, executable: str = sys.executable) -> subprocess.Popen[bytes]:
    """A child that has exited and is not waited for: a zombie until ``wait()``."""
    dead = subprocess.Popen([executable, "-c", "pass"])
    wait_for(lambda: _zombie(dead.pid), 10, "the child to become a zombie")
    (pgdata / "postmaster.pid").write_text(f"{dead.pid}\n{pgdata}\n")
    return dead


def _watching(
    pgdata: Path, package: _Package, monkeypatch: pytest.MonkeyPatch, backoff: float = 0.5
) -> EmbeddedWatch:
    """A watch looking every 0.02 s, whose server is ``package``."""
    watch = EmbeddedWatch(pgdata, check_every_seconds=0.02, first_backoff_seconds=backoff)
    monkeypatch.setattr(watch, "_server", lambda: package)
    return watch


def _restart_timed(watch: EmbeddedWatch) -> tuple[int | None, float, list[dict[str, Any]]]:
    """The watch's restart: the pid it answers, the seconds it took, the lines it logged."""
    with capture_logs() as logged:
        started = time.monotonic()
        pid = watch._restart(gone_at=started)
        took = time.monotonic() - started
    return pid, took, [dict(line) for line in logged]


def test_a_dead_postmaster_not_yet_reaped_is_waited_for_without_failed_attempts(
    tmp_path: Path, live: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Init reaps an orphan every couple of seconds on some systems: each attempt on the
    zombie failed and doubled the backoff (1, 2, 4, … s), so a restart came long after the
    reaping. Now one line says it waits, and the first attempt is made once it is reaped."""
    dead = _zombie_postmaster(tmp_path)
    package = _Package(tmp_path, live.pid)
    watch = _watching(tmp_path, package, monkeypatch)
    # Init's child, not this process's (a LUC that did not adopt it): not its to reap.
    monkeypatch.setattr(embedded_watch, "reap_dead_children", lambda name: [])
    assert watch._postmaster() is None  # dead: the watch's cue to restart

    reaper = threading.Timer(0.6, dead.wait)
    reaper.start()
    pid, took, lines = _restart_timed(watch)
    reaper.join()

    assert pid == live.pid
    assert (package.adopted, package.started) == (0, 1)
    assert [line["event"] for line in lines] == [
        "embedded_postgres_waiting_for_reap",
        "embedded_postgres_restarted",
    ]
    assert lines[0]["pid"] == dead.pid
    assert lines[1]["attempt"] == 1
    # Soon after the reaping (at 0.6 s; the watch looks every 0.02 s), not at the end of a
    # backoff (attempts at 0, 0.5 and 1.5 s): 0.9 s of slack for a loaded machine.
    assert 0.6 <= took < 1.5, took


def test_a_dead_postmaster_of_this_process_is_reaped_and_started_again_at_once(
    tmp_path: Path, live: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``luc serve`` adopts the postmaster (``adopt_orphans``): a dead one is this process's
    zombie, which no one else reaps. The watch reaps it itself and starts the server again
    in its first attempt, without waiting for anyone."""
    postgres = tmp_path / "bin" / "postgres"  # the interpreter, named as a postmaster is
    postgres.parent.mkdir()
    postgres.symlink_to(sys.executable)
    dead = _zombie_postmaster(tmp_path, str(postgres))
    assert _name(dead.pid) == "postgres"
    package = _Package(tmp_path, live.pid)
    watch = _watching(tmp_path, package, monkeypatch)

    guard = threading.Timer(5, watch.stop)  # unreaped, it would wait for ever: None
    guard.start()
    pid, took, lines = _restart_timed(watch)
    guard.cancel()

    assert pid == live.pid
    assert not psutil.pid_exists(dead.pid)  # reaped: gone from the process table
    assert (package.adopted, package.started) == (0, 1)
    assert [(line["event"], line["attempt"]) for line in lines] == [
        ("embedded_postgres_restarted", 1)
    ]
    assert took < 0.5, took  # no wait at the watch's period, nor a backoff
    dead.wait()  # already reaped: subprocess takes the missing child for done


def _name(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().partition("(")[2].rpartition(")")[0]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc (Linux)")
def test_only_the_dead_children_of_the_name_are_reaped(
    live: subprocess.Popen[bytes],
) -> None:
    """The server processes a dead postmaster leaves to LUC are reaped by their name; a
    live child of that name, and a dead child of another, are left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: _zombie(dead.pid), 10, "the child to become a zombie")
    other = subprocess.Popen(["sleep", "0"])
    wait_for(lambda: _zombie(other.pid), 10, "the other child to become a zombie")
    name = _name(live.pid)  # the interpreter's, as the dead one's
    assert _name(dead.pid) == name != _name(other.pid) == "sleep"

    reaped = reap_dead_children(name)  # another test's stray child of the name may be there
    assert dead.pid in reaped and live.pid not in reaped and other.pid not in reaped
    assert not psutil.pid_exists(dead.pid)
    assert _zombie(other.pid) and live.poll() is None
    assert reap_dead_children(name) == []
    other.wait()
    dead.wait()  # already reaped: subprocess takes the missing child for done


def test_an_attempt_that_cannot_get_the_package_lock_fails_saying_so(
    tmp_path: Path, live: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package's lock is one per user, shared by every embedded server: a process
    holding it stalled the restart in silence. Now the attempt fails after a while, said
    with the lock's path, and is tried again at the backoff."""
    (tmp_path / "postmaster.pid").write_text("999999999\n")  # a pid that cannot exist
    package = _Package(tmp_path, live.pid)
    watch = _watching(tmp_path, package, monkeypatch, backoff=0.05)
    monkeypatch.setattr(embedded_watch, "LOCK_WAIT_SECONDS", 0.3)

    # Another process holds the lock for 1 s (a lock is per process: not this one).
    with held_by_another_process(1), capture_logs() as logged:
        pid = watch._restart(gone_at=time.monotonic())
    lines = logged

    assert pid == live.pid
    failed = [line for line in lines if line["event"] == "embedded_postgres_restart_failed"]
    assert failed, lines
    assert failed[0]["attempt"] == 1
    assert failed[0]["error"] == (
        f"RuntimeError: another process held the embedded PostgreSQL lock "
        f"({package_lock_path()}) for 0.3 s"
    )
    assert lines[-1]["event"] == "embedded_postgres_restarted"
    assert lines[-1]["attempt"] == len(failed) + 1
    assert package.started == 1
