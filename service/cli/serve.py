"""``luc serve`` and ``luc migrate``: the two commands that create and migrate a database."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.cli.database import (
    EMBEDDED_START_FAILURES,
    connect_to,
    describe,
    pgdata_of,
    say,
)
from service.db import CONNECTION_ERRORS
from service.errors import DatabaseUnavailableError, LucError
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn
    from litestar import Litestar
    from uvicorn.supervisors import Multiprocess


# How the parent of ``luc serve --workers N`` hands its work to the workers it spawns (they
# start from a fresh interpreter and read their settings again): not settings of LUC's.
_WORKER_DATABASE_URL = "_LUC_WORKER_DATABASE_URL"
_WORKER_PREPARED = "_LUC_WORKER_PREPARED"
_WORKER_PARENT = "_LUC_WORKER_PARENT"
# httptools' parser (what uvicorn's "auto" picks), cutting off a request head too large or
# too slow to arrive, which uvicorn does not (service.http_head).
_HTTP = "service.http_head:BoundedHttpToolsProtocol"
# prometheus-client's own variable: where every process keeps its series (multiprocess mode).
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@click.command()
@click.option("--host", default=None, help="Address to bind (default LUC_HOST or 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to bind (default LUC_PORT or 8000).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes behind the port (default LUC_WORKERS or the number of CPUs).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP API (creates and migrates the database and loads the AIMS catalog first)."""
    import structlog
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    structlog.get_logger("luc").info("database", database=describe(settings.database))
    # uvicorn re-raises SIGTERM once it has shut down gracefully; with the default handler
    # the process would die without running atexit, leaving the embedded PostgreSQL up.
    # (With workers, uvicorn's supervisor handles it and returns: atexit runs all the same.)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if settings.database.url is None:
        from service.db.embedded import adopt_orphans

        adopt_orphans()  # before the embedded server starts: its postmaster is ours to reap
    where = ("--host" if host else "LUC_HOST", "--port" if port is not None else "LUC_PORT")
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    workers = settings.server.workers if workers is None else workers
    if problem := _unlistenable(host, port, *where):
        # Said before the embedded PostgreSQL starts, naming the setting: uvicorn would
        # only log "Name or service not known" once everything else had started.
        structlog.get_logger("luc").error("startup_failed", error="ServerAddress", detail=problem)
        sys.exit(3)  # uvicorn's start-up failure status, as any other refused start
    if problem := _unusable_metrics_dir():
        structlog.get_logger("luc").error("startup_failed", error="MetricsFolder", detail=problem)
        sys.exit(3)
    if workers > 1:
        _serve_workers(settings, workers, host, port)
        return
    _tune_gc()
    uvicorn.run(create_app(settings), host=host, port=port, **_uvicorn_options(settings))


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn runs ``luc serve``, in one process or in each of several workers."""
    proxies = settings.server.forwarded_allow_ips
    return {
        # uvloop's event loop (uvicorn's default; LUC's dependency, pyproject.toml) and
        # httptools' HTTP parser with bounded request heads (_HTTP). Checked by
        # tests/integration/test_serve_speed_ups.py.
        "loop": "auto",
        "http": _HTTP,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": graceful_seconds(settings),
        # X-Forwarded-For only from the proxies the operator names: uvicorn believes
        # 127.0.0.1 unless told otherwise, so any process on the host named its own address
        # with each request, and got a fresh per-address rate limit with each.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": list(proxies),
    }


GRACE_SECONDS = 10
"""How long a clean stop (SIGTERM) waits for requests in flight, beyond proxied calls."""


def graceful_seconds(settings: Settings) -> int:
    """How long a clean stop waits for the requests in flight to finish before it cancels
    them: a proxied call is let run for as long as its upstream may take
    (``LUC_GATEWAY_TIMEOUT_SECONDS``), and a few seconds more for its answer. Cancelled at
    10 s, a call the provider was still answering was billed, and its caller got the
    server's bare 500, which an OpenAI SDK retries: a second paid call. A stop with
    nothing in flight is as quick as ever."""
    return GRACE_SECONDS + math.ceil(settings.gateway.timeout_seconds)


def _tune_gc() -> None:
    # A 5,000-event batch allocates hundreds of thousands of short-lived objects; with the
    # default thresholds the collector ran dozens of times per batch (a fifth of the CPU,
    # measured with py-spy). Start-up objects are frozen out of every collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _serve_workers(settings: Settings, workers: int, host: str, port: int) -> None:
    """``workers`` processes behind one port, uvicorn's supervisor over them (it binds the
    port once, hands the socket to each, and replaces one that dies). This process starts
    the embedded PostgreSQL (stopped when it exits), migrates and loads the catalog once;
    each worker then has its own pool, writers and spool replay, and its series in
    prometheus-client's multiprocess files, summed at every scrape."""
    import structlog
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    try:
        url, prepared = asyncio.run(_prepare(settings))
    except Exception as exc:
        # As a lone process ends when its start-up fails (a failed migration, a missing
        # plan): one line saying why, the start-up failure status.
        detail = exc.message if isinstance(exc, LucError) else str(exc)
        structlog.get_logger("luc").error("startup_failed", error=type(exc).__name__, detail=detail)
        sys.exit(STARTUP_FAILURE)
    metrics_dir, made = _metrics_dir()
    os.environ[_METRICS_DIR] = str(metrics_dir)
    os.environ[_WORKER_DATABASE_URL] = url
    os.environ[_WORKER_PREPARED] = "1" if prepared else "0"
    os.environ[_WORKER_PARENT] = str(os.getpid())
    config = uvicorn.Config(
        f"{__name__}:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        **_uvicorn_options(settings),
    )
    # uvicorn.run() with workers, but the supervisor kept: a worker that could not start
    # (PostgreSQL never answered) ends the whole server with the start-up failure status,
    # as a lone process does, so that a process manager sees a failed start.
    supervisor: Multiprocess
    if _REUSE_PORT is None:
        supervisor = Multiprocess(config, sockets=[_tcp(config.bind_socket())])
    else:
        try:
            supervisor = _worker_sockets_supervisor(config, host, port, workers)
        except OSError as exc:  # taken since the probe (_unlistenable) found it free
            structlog.get_logger("luc").error(
                "startup_failed", error="Listen", detail=f"cannot listen on {host}:{port}: {exc}"
            )
            sys.exit(STARTUP_FAILURE)
    watch = None
    if settings.database.url is None:
        # The embedded server is this process's (the workers only use it): started again
        # here should it die.
        from service.db.embedded_watch import EmbeddedWatch

        watch = EmbeddedWatch(settings.database.data_dir / "pgdata")
        watch.start()
    try:
        supervisor.run()
    finally:
        if watch is not None:
            watch.stop()
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


# One listening socket per worker, all on the port (SO_REUSEPORT), where the kernel spreads
# new connections over them: Linux only (elsewhere the option exists but does not spread).
_REUSE_PORT: int | None = getattr(socket, "SO_REUSEPORT", None) if sys.platform == "linux" else None


def _bound(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` as uvicorn binds one (``_tcp``), which other
    sockets may bind too (``SO_REUSEPORT``): one per worker."""
    assert _REUSE_PORT is not None
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, _REUSE_PORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _worker_sockets_supervisor(
    config: uvicorn.Config, host: str, port: int, workers: int
) -> Multiprocess:
    """uvicorn's supervisor, each worker on a listening socket of its own.

    With one socket shared by every worker, whichever worker wakes first accepts every
    connection waiting (uvloop accepts until none is left): 16 keep-alive connections
    opened at once split 15/1, 13/3, 12/4, 11/5 and 8/8 over two workers in five tries,
    and stayed so, one core serving most of that client while the other idled. With a
    socket per worker (``SO_REUSEPORT``) the kernel spreads new connections over the
    sockets by their addresses and ports. A worker replaced (it died, or SIGHUP) takes
    over the socket of the one it replaces: the parent keeps every socket open, so
    connections that arrive meanwhile wait in that socket's queue and none is refused."""
    import structlog
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess, Process

    log = structlog.get_logger("luc")
    first = _bound(host, port)
    port = first.getsockname()[1]  # the port the kernel chose, for --port 0
    own = [first, *(_bound(host, port) for _ in range(workers - 1))]

    class WorkerSockets(Multiprocess):
        def _start(self, index: int) -> Process:
            process = Process(self.config, [own[index]])
            process.start()
            return process

        def init_processes(self) -> None:
            self.processes = [self._start(i) for i in range(self.processes_num)]

        def keep_subprocess_alive(self) -> None:
            # uvicorn's own rule, the replacement given the dead worker's socket.
            for index, process in enumerate(self.processes):
                if self.should_exit.is_set():
                    return
                if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                    continue
                process.kill()  # hung, or already gone
                process.join()
                if process.exitcode == STARTUP_FAILURE:
                    log.error("worker_failed_to_start", pid=process.pid)
                    self.should_exit.set()  # it would fail the same way every time
                    return
                log.warning("worker_died", pid=process.pid, exit_status=process.exitcode)
                self.processes[index] = self._start(index)

        def restart_all(self) -> None:  # SIGHUP: each replaced by a new one, ready first
            for index, old in enumerate(self.processes):
                if self.should_exit.is_set():
                    return
                new = self._start(index)
                if not new.wait_until_ready(self.config.timeout_worker_healthcheck):
                    new.kill()
                    new.join()
                    return
                old.terminate()
                old.join()
                self.processes[index] = new

        def handle_ttin(self) -> None:  # one worker more, on a socket of its own
            try:
                own.append(_bound(host, port))
            except OSError as exc:
                log.error("worker_not_added", error=str(exc))
                return
            self.processes_num += 1
            self.processes.append(self._start(len(self.processes)))

        def handle_ttou(self) -> None:  # one worker less, and its socket closed with it
            if self.processes_num <= 1:
                return
            self.processes_num -= 1
            process = self.processes.pop()
            process.terminate()
            process.join()
            own.pop().close()

    return WorkerSockets(config, sockets=own)


def _unlistenable(host: str, port: int, host_setting: str, port_setting: str) -> str | None:
    """Why the server could not listen on ``host``:``port`` (None: it can), naming the
    setting to change. The probe binds as uvicorn will (IPv6 for a host with a colon, else
    IPv4), and closes at once; uvicorn binds again."""
    try:
        found = socket.getaddrinfo(
            host, port, _family(host), socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        return f"{host_setting} {host!r}: not an address, nor a name this machine resolves ({why})"
    family, kind, protocol, _, address = found[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            change = {
                errno.EADDRINUSE: f"another process listens there: change {port_setting}",
                errno.EACCES: f"a port below 1024 needs privileges: change {port_setting}",
                errno.EADDRNOTAVAIL: f"not an address of this machine: change {host_setting}",
            }.get(exc.errno or 0, f"change {host_setting} or {port_setting}")
            return f"cannot listen on {host}:{port} ({exc.strerror}); {change}"
    return None


def _family(host: str) -> socket.AddressFamily:
    """The address family uvicorn binds ``host`` with: IPv6 for a host with a colon."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _tcp(sock: socket.socket) -> socket.socket:
    """``sock`` saying it speaks TCP. uvicorn binds it with protocol 0, and asyncio turns
    Nagle's algorithm off (``TCP_NODELAY``) only on connections of a socket that says TCP:
    without it, every answer sent in two writes (head, then body) waited about 40 ms for
    the client's delayed ACK, in every worker."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def _unusable_metrics_dir() -> str | None:
    """Why ``PROMETHEUS_MULTIPROC_DIR``, when set, cannot hold the metrics files (None: it
    can; made here when missing). prometheus-client writes there from the first series on,
    one process or several: a file by that name was a NotADirectoryError's traceback."""
    given = os.environ.get(_METRICS_DIR)
    if not given:
        return None
    try:
        Path(given).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (
            f"{_METRICS_DIR} {given!r} cannot hold the metrics files: it is not a folder, "
            f"nor can one be made there ({exc.strerror or exc})"
        )
    return None


_MADE_METRICS_PREFIX = "luc-metrics-"


def _metrics_dir() -> tuple[Path, bool]:
    """The multiprocess metrics folder, empty: ``PROMETHEUS_MULTIPROC_DIR`` when set (its
    files from an earlier run removed, or counters would go on from there), else a new
    temporary one named after this process (``True``: removed again at exit), the ones
    that killed servers left behind removed first."""
    given = os.environ.get(_METRICS_DIR)
    if not given:
        _remove_stale_metrics_dirs(Path(tempfile.gettempdir()))
        prefix = f"{_MADE_METRICS_PREFIX}{os.getpid()}-"
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    folder = Path(given)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("*.db"):
        leftover.unlink()
    return folder, False


def _remove_stale_metrics_dirs(temp: Path) -> None:
    """Remove the metrics folders in ``temp`` of ``luc serve`` parents that are gone.

    The parent removes its folder at exit, but a parent killed (SIGKILL, the OOM killer)
    runs no exit code: its folder stayed, one more at every such crash. A folder is named
    ``luc-metrics-<parent pid>-<random>``; one made before it was (``luc-metrics-<random>``)
    is stale when every process that wrote there (``<kind>_<pid>.db``) is gone. Only the
    folders of this user are looked at."""
    from service.db.embedded import _alive

    for folder in temp.glob(f"{_MADE_METRICS_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            owner, _, _ = folder.name.removeprefix(_MADE_METRICS_PREFIX).partition("-")
            if owner.isdigit():
                writers = [int(owner)]
            else:
                writers = [
                    int(pid)
                    for file in folder.glob("*_*.db")
                    if (pid := file.stem.rpartition("_")[2]).isdigit()
                ]
                if not writers:
                    continue  # perhaps a server starting now: nothing says whose it is
            if any(_alive(pid) for pid in writers):
                continue
        except OSError:
            continue  # gone meanwhile, or not ours to read
        shutil.rmtree(folder, ignore_errors=True)


async def _prepare(settings: Settings) -> tuple[str, bool]:
    """The database's URL (the embedded server started here), and whether it is ready:
    migrated, checked and seeded. An external PostgreSQL that does not answer now is left
    to the workers, which serve 503 meanwhile and prepare it when it answers (migrations
    and seeding take locks, so that happens once)."""
    import structlog

    from service.app import prepare_database
    from service.db import create_pool, wait_for_database
    from service.db.embedded import resolve_database_url

    url = await resolve_database_url(settings.database)
    try:
        await wait_for_database(url, within=0)
    except DatabaseUnavailableError as exc:
        structlog.get_logger("luc").warning(
            "database_unreachable_at_start",
            error=str(exc),
            detail="each worker answers 503 while waiting for it",
        )
        return url, False
    one = replace(settings.database, pool_min_size=1, pool_max_size=1)
    pool = await create_pool(url, one)
    try:
        await prepare_database(url, settings, pool)
    finally:
        await pool.close()
    return url, True


def worker_app() -> Litestar:
    """The app of one worker of ``luc serve --workers N`` (uvicorn's factory, called in
    each process it spawns): on the parent's database, prepared by the parent."""
    from service.app import create_app
    from service.logs import configure_logging

    _end_with_parent(int(os.environ[_WORKER_PARENT]))
    settings = get_settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    app = create_app(
        worker_settings(settings, os.environ[_WORKER_DATABASE_URL]),
        prepared=os.environ.get(_WORKER_PREPARED) == "1",
    )
    _tune_gc()
    return app


def worker_settings(settings: Settings, database_url: str) -> Settings:
    """What one of several workers runs with: the parent's database, and one group-commit
    writer unless ``LUC_INGEST_WRITERS`` says how many (``group_commit.WORKER_WRITERS``)."""
    from service.recording.group_commit import WORKER_WRITERS

    ingest = settings.ingest
    if ingest.writers is None:
        ingest = replace(ingest, writers=WORKER_WRITERS)
    return replace(settings, database=replace(settings.database, url=database_url), ingest=ingest)


def _end_with_parent(parent: int) -> None:
    """Have this worker stopped (SIGTERM: a graceful shutdown) when ``parent``, the
    ``luc serve`` process that spawned it, dies. A parent killed with SIGKILL stops no
    worker: they went on serving on the port, on a database nobody watched any more,
    and the next ``luc serve`` found the port taken. On Linux the kernel sends the signal
    (``PR_SET_PDEATHSIG``); elsewhere a thread looks for the parent every second."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) == 0:
            # Dead before the signal was asked for: no signal will come.
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
            return
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)  # the period of the watch; nothing to wait on instead
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="luc-parent-watch", daemon=True).start()


@click.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def migrate(revision: str) -> None:
    """Apply migrations and load the AIMS catalog (creating the embedded database first).

    `luc serve` does the same at start; the other commands never do, so run this (or start
    the server once) before them on a new database. With LUC_DATABASE_URL the database
    must exist: create it as README, Operating LUC, says.
    """
    from service.catalog.service import seed_catalog
    from service.customers.plans import check_default_plan
    from service.db.embedded import resolve_database_url
    from service.db.migrations import migrate as migrate_schema
    from service.db.migrations import schema_revision
    from service.recording.catalog_upgrade import upgrade_aims_catalog
    from service.wire import money_text

    settings = get_settings()
    database = settings.database
    _check_revision(revision)

    async def run() -> None:
        new = database.url is None and not (pgdata_of(database) / "PG_VERSION").is_file()
        try:
            url = await resolve_database_url(database)
        except EMBEDDED_START_FAILURES as exc:
            raise DatabaseUnavailableError(
                f"cannot start the embedded PostgreSQL in {database.data_dir}: {exc}"
            ) from exc
        say(database, url, "; created now" if new else "")
        conn = await connect_to(database, url)
        try:
            before = await schema_revision(conn)
            await migrate_schema(url, revision)
            after = await schema_revision(conn)
            seeded = await seed_catalog(conn)
            # The setting of the server this migration precedes (a deploy that changes the
            # default plan migrates before it restarts the servers): checked, not compared
            # with the one the running servers recorded.
            await check_default_plan(conn, settings.billing.default_plan)
            upgrade = await upgrade_aims_catalog(conn, default_plan=settings.billing.default_plan)
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close()
        # Where the schema is, not where it was asked to go: migrations only go forward, so
        # an older --revision leaves it where it was.
        click.echo(
            f"schema at {'head' if revision == 'head' else after} (was {before or 'empty'}); "
            f"AIMS catalog {'loaded' if seeded else 'already present'}"
        )
        if upgrade is not None:
            summary = upgrade.summary
            click.echo(
                f"AIMS catalog completed with cache and long-context prices: version "
                f"{upgrade.version_id} (beside version {upgrade.replaced_version_id}); "
                f"{summary.events_changed} events re-rated by {summary.entries_appended} "
                f"adjustment entries, {money_text(summary.delta_usd)} USD in all"
            )

    asyncio.run(run())


def _check_revision(revision: str) -> None:
    """Refuse a revision ``db/versions`` does not have before touching any database (an
    embedded one is not even created): Alembic's own refusal came as a traceback, after
    the embedded PostgreSQL had been made."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from service.db.migrations import head_revision
    from service.shipped import migrations_dir

    try:
        ScriptDirectory(str(migrations_dir())).get_revisions(revision)
    except (CommandError, AssertionError):  # AssertionError: an empty string
        raise click.BadParameter(
            f"{revision!r} is no revision of this LUC (`head`, or one of db/versions, "
            f"the newest {head_revision()})",
            param_hint="--revision",
        ) from None
