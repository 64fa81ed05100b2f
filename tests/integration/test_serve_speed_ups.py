"""``luc serve`` answers on uvloop's event loop with httptools' HTTP parser (LUC's
dependencies, which uvicorn's "auto" picks), alone and in each of several workers: both
libraries' compiled modules are mapped into every process that answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SPEED_UPS = ("uvloop/loop.", "httptools/parser/parser.")


def _pid(server: ServerProcess) -> int:
    """The pid of the process that answers a new connection."""
    answer = httpx.get(f"{server.base_url}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["pid"])


def _mapped(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {module for module in SPEED_UPS if module in maps}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_process_that_answers_runs_uvloop_and_httptools(
    server_factory: Callable[..., ServerProcess], workers: int
) -> None:
    server = server_factory(LUC_WORKERS=str(workers))
    pids: set[int] = set()

    def all_answered() -> bool:
        pids.add(_pid(server))
        return len(pids) == workers

    wait_for(all_answered, 60, f"each of {workers} workers to answer /readyz")
    for pid in pids:
        assert _mapped(pid) == set(SPEED_UPS), pid
