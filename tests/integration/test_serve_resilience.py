"""``luc serve`` when what it stands on misbehaves: its parent killed, its embedded
PostgreSQL killed, a client that never finishes its request head.

Real processes throughout: ``luc serve`` in a child process, the PostgreSQL it runs or
the test's own, and raw sockets for the clients.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _workers(parent: psutil.Process) -> list[int] | None:
    """The pids of the two uvicorn workers of ``parent`` (multiprocessing's spawned
    interpreters; its resource tracker is a child too), once both run."""
    found = [
        child.pid
        for child in parent.children()
        if "spawn_main" in " ".join(child.cmdline()) and _alive(child.pid)
    ]
    return found if len(found) == 2 else None


def test_workers_end_with_a_killed_parent_and_its_metrics_folder_goes_at_the_next_start(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL on the parent of ``luc serve --workers 2``: its workers went on serving the
    port, and its ``luc-metrics-*`` folder stayed in the temp folder for ever."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    # A folder a LUC killed before this change left (no pid in its name): its workers'
    # files name pids that are long gone.
    legacy = temp / "luc-metrics-k2j4x9q1"
    legacy.mkdir()
    (legacy / "counter_999999999.db").write_bytes(b"")
    # One of a live server: kept.
    live = temp / f"luc-metrics-{os.getpid()}-abcdefgh"
    live.mkdir()
    env = {"LUC_WORKERS": "2", "TMPDIR": str(temp)}
    server = ServerProcess(database_url, tmp_path / "luc.log", **env)
    again = ServerProcess(database_url, tmp_path / "again.log", **env)
    try:
        server.start()
        parent = psutil.Process(server.pid)
        workers = wait_for(lambda: _workers(parent), 60, "two workers")
        made = [f for f in temp.iterdir() if f.name.startswith(f"luc-metrics-{server.pid}-")]
        assert len(made) == 1, sorted(temp.iterdir())
        assert not legacy.exists()  # removed as the first server started
        server.kill()

        wait_for(lambda: not any(_alive(pid) for pid in workers), 30, "the workers to end with it")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/healthz", timeout=5)
        assert made[0].exists()  # a SIGKILL runs no exit code

        again.start()
        assert not made[0].exists()
        assert live.exists()
        assert httpx.get(f"{again.base_url}/readyz", timeout=5).status_code == 200
    finally:
        server.kill()
        again.stop()
        for pid in workers if "workers" in locals() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
