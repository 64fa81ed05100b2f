"""Loopback ports for tests and bench/: one that was free a moment ago, and one that
refuses connections for as long as a block runs."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    """A port that was free a moment ago. Only for a process that retries when it is taken
    meanwhile (``ServerProcess``) or a client that expects nothing there; a server in the
    test's own process binds port 0 itself and reads its port (``Receiver``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port where connections are refused for as long as the block runs: bound, so no
    other process can take it, and never listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
