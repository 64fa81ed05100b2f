"""``luc serve --workers 2`` spreads the connections a client opens at once over its
workers, and keeps doing so after a worker is replaced: each worker listens on a socket
of its own (``SO_REUSEPORT``), which a replacement takes over.

With one socket shared by both, the worker that woke first accepted every connection
waiting: of this test's 24 connections, all or 22 landed on one worker (three runs), and a
keep-alive client stayed on that one worker for good."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the kernel spreads connections on Linux"),
]

CONNECTIONS = 24
# Spread by a hash of each connection's ports, the 24 fall 12 / 12 on average; fewer than
# 4 on one worker happens about 3 times in 10,000 runs.
AT_LEAST = 4


def _pids_of_connections_opened_at_once(server: ServerProcess) -> Counter[int]:
    """How many of ``CONNECTIONS`` connections, all opened before any request, each worker
    answers (the pid ``/readyz`` names), every request on its own keep-alive connection."""
    address = urlsplit(server.base_url)
    connections = [
        http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
        for _ in range(CONNECTIONS)
    ]
    try:
        for connection in connections:
            connection.connect()
        pids: Counter[int] = Counter()
        for connection in connections:
            connection.request("GET", "/readyz")
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == 200, body
            pids[int(json.loads(body)["pid"])] += 1
        return pids
    finally:
        for connection in connections:
            connection.close()


def _both_answer(server: ServerProcess, seen: set[int]) -> Callable[[], bool]:
    def check() -> bool:
        seen.update(_pids_of_connections_opened_at_once(server))
        return len(seen) >= 2

    return check


def test_connections_opened_at_once_are_spread_over_the_workers_also_after_a_replacement(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(LUC_WORKERS="2")
    seen: set[int] = set()
    wait_for(_both_answer(server, seen), 60, "both workers to answer", said=server.log_tail)

    first = _pids_of_connections_opened_at_once(server)
    assert len(first) == 2, first
    assert min(first.values()) >= AT_LEAST, first

    # A worker killed is replaced on its socket: the connections that reach that socket
    # are answered by the replacement, and the two are spread as before.
    killed = next(iter(first))
    os.kill(killed, signal.SIGKILL)
    survivor = next(pid for pid in first if pid != killed)

    def replaced() -> bool:
        pids = _pids_of_connections_opened_at_once(server)
        return killed not in pids and len(pids) == 2 and survivor in pids

    wait_for(replaced, 60, "a replacement worker to answer", said=server.log_tail)
    after = _pids_of_connections_opened_at_once(server)
    assert survivor in after and killed not in after, after
    assert len(after) == 2 and min(after.values()) >= AT_LEAST, after
    assert '"worker_died"' in server.log_path.read_text(), server.log_tail()
