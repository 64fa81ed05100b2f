"""``LUC_EMBEDDED_PG_PORT``: the embedded PostgreSQL listens on 127.0.0.1 at that port too,
so Grafana's PostgreSQL datasource (and psql, and any TCP client) can reach it; the
command line joins it as before, names the port, and ``luc grafana role --create`` makes
the datasource's role there. Real processes: ``luc serve`` on a data folder of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from service.errors import SettingsError
from service.settings import load_settings
from tests.support.ports import free_port
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """LUC_DATA_DIR outside pytest's private basetemp (PostgreSQL runs as its own user
    when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="luc-embedded-tcp-"))
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_port_setting_is_checked() -> None:
    assert load_settings({}).database.embedded_port is None
    assert load_settings({"LUC_EMBEDDED_PG_PORT": "5433"}).database.embedded_port == 5433
    for bad in ("0", "65536", "five"):
        with pytest.raises(SettingsError, match="LUC_EMBEDDED_PG_PORT"):
            load_settings({"LUC_EMBEDDED_PG_PORT": bad})


async def test_the_embedded_database_on_a_tcp_port_for_grafana(
    tmp_path: Path, data_dir: Path
) -> None:
    pg_port = free_port()
    server = ServerProcess(
        None, tmp_path / "serve.log", LUC_DATA_DIR=str(data_dir), LUC_EMBEDDED_PG_PORT=str(pg_port)
    )
    pgdata = (data_dir / "pgdata").resolve()
    try:
        server.start()
        assert listening(pg_port)

        # The command line joins the running server without the setting: the port is in
        # the server's own postmaster.pid, and the line naming the database says it.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "service", "grafana", "role", "--create"],
            env={**inherited, "LUC_DATA_DIR": str(data_dir), "LUC_GRAFANA_PG_PASSWORD": "pw"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == (
            f"database: embedded at {data_dir} (socket {pgdata}, port {pg_port})\n"
        )
        assert done.stdout.startswith("role luc_grafana created;"), done.stdout

        # As Grafana's datasource connects: over TCP, as luc_grafana, reading a rollup.
        conn = await asyncpg.connect(
            host="127.0.0.1", port=pg_port, user="luc_grafana", password="pw", database="luc"
        )
        try:
            assert await conn.fetchval("SELECT count(*) FROM rollup_jobs") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT 1 FROM api_keys")
        finally:
            await conn.close()

        # A clean stop stops the server, TCP port included.
        server.stop()
        assert server.process is not None and server.process.returncode == 0
        wait_for(lambda: not listening(pg_port), 30, "the embedded PostgreSQL to stop")
    finally:
        server.kill()
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
                proc.kill()


def test_a_taken_port_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
        done = subprocess.run(
            [sys.executable, "-m", "service", "migrate"],
            env={**inherited, "LUC_DATA_DIR": str(data_dir), "LUC_EMBEDDED_PG_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(
        f"Error: the embedded PostgreSQL cannot listen on 127.0.0.1:{port} (LUC_EMBEDDED_PG_PORT): "
    ), done.stderr
    assert "Traceback" not in done.stderr
