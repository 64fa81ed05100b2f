"""The test harness's own promise: a ``luc serve`` child whose port was taken between
picking and binding it moves to another port instead of failing the test."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow


def test_a_server_whose_port_is_taken_at_its_first_start_moves_to_another(
    database_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(database_url, tmp_path / "luc.log")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server.port = taken  # as if another process took it after free_port() chose it
        try:
            server.start()
            assert server.port != taken
            assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
            assert "address already in use" in server.log_path.read_text().lower()
        finally:
            server.stop()
