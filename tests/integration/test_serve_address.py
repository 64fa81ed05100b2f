"""``luc serve`` refuses an address it cannot listen on at once, naming the setting: before
the embedded PostgreSQL starts, in one ``startup_failed`` line (uvicorn said only "Name or
service not known" once everything else had started)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.support.commands import luc


def refused_start(tmp_path: Path, *args: str, **env: str) -> str:
    """The detail of the one ``startup_failed`` line of a start that must be refused."""
    data = tmp_path / "luc"
    done = luc("serve", *args, LUC_DATA_DIR=str(data), LUC_LOG_FORMAT="json", check=False, **env)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    [failed] = [line for line in lines if line["event"] == "startup_failed"]
    assert failed["error"] == "ServerAddress"
    assert not (data / "pgdata").exists()  # refused before the database was started
    return str(failed["detail"])


def test_a_host_that_is_no_address_names_luc_host(tmp_path: Path) -> None:
    detail = refused_start(tmp_path, LUC_HOST="999.1.1.1", LUC_PORT="0")
    assert detail.startswith("LUC_HOST '999.1.1.1': not an address, nor a name this machine")


def test_an_address_of_another_machine_names_the_host_option(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    detail = refused_start(tmp_path, "--host", "192.0.2.1", LUC_PORT="0")
    assert detail.startswith("cannot listen on 192.0.2.1:0 (")
    assert detail.endswith("); not an address of this machine: change --host")


@pytest.mark.parametrize("given", ["option", "variable"])
def test_a_port_another_process_listens_on_names_the_port_setting(
    tmp_path: Path, given: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        if given == "option":
            detail = refused_start(tmp_path, "--port", port, LUC_HOST="127.0.0.1")
        else:
            detail = refused_start(tmp_path, LUC_HOST="127.0.0.1", LUC_PORT=port)
    setting = "--port" if given == "option" else "LUC_PORT"
    assert detail == (
        f"cannot listen on 127.0.0.1:{port} (Address already in use); another process "
        f"listens there: change {setting}"
    )
