"""The embedded PostgreSQL belongs to the LUC processes that use it: one left behind by a
LUC that was killed (SIGKILL, no exit hooks) is found at the next start, stopped and said
so in the log; a clean stop (SIGTERM) stops the server LUC runs.

Real processes throughout: ``luc serve`` without LUC_DATABASE_URL, on a data folder of its
own, and the postmaster that it starts.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from service.db.migrations import head_revision
from tests.support.commands import luc
from tests.support.embedded import alive, postmaster_pid, scratch_data_dir
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with scratch_data_dir(prefix="luc-embedded-test-") as folder:
        yield folder


def _postgres_of(pgdata: Path) -> list[int]:
    """Every live postgres process started on ``pgdata`` (its command line names it)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline and alive(proc.pid):
            found.append(proc.pid)
    return found


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_an_orphaned_embedded_server_is_stopped_at_start_and_a_clean_stop_leaves_none(
    tmp_path: Path, data_dir: Path
) -> None:
    pgdata = (data_dir / "pgdata").resolve()
    server = ServerProcess(None, tmp_path / "first.log", LUC_DATA_DIR=str(data_dir))
    again = ServerProcess(None, tmp_path / "second.log", LUC_DATA_DIR=str(data_dir))
    try:
        server.start()
        orphan = postmaster_pid(pgdata)
        assert orphan is not None

        # LUC dies without its exit hooks; its PostgreSQL is left running.
        server.kill()
        assert alive(orphan)

        again.start()
        said = [line for line in _log_lines(again.log_path) if "orphan" in line["event"]]
        assert [(line["event"], line["pid"]) for line in said] == [
            ("embedded_postgres_orphan_stopped", orphan)
        ], said
        assert not alive(orphan)
        running = postmaster_pid(pgdata)
        assert running is not None and running != orphan

        # A clean stop stops the server this LUC runs: no postgres of that folder is left.
        again.stop()
        assert again.process is not None and again.process.returncode == 0
        wait_for(lambda: not _postgres_of(pgdata), 30, "the postmaster to stop")
        assert postmaster_pid(pgdata) is None
    finally:
        server.kill()
        again.kill()
        for pid in _postgres_of(pgdata):  # a failed run leaves nothing behind either
            psutil.Process(pid).kill()


def test_a_pid_file_naming_another_program_is_removed_and_that_program_left_alone(
    tmp_path: Path, data_dir: Path
) -> None:
    """After a crash and a reboot, postmaster.pid stays and its pid may be another
    program's. Before, the start took that program for an orphaned server: pg_ctl could
    not stop it, it was adopted, the start failed, and the exit hook killed it."""
    pgdata = (data_dir / "pgdata").resolve()
    server = ServerProcess(
        None, tmp_path / "first.log", LUC_DATA_DIR=str(data_dir), LUC_LOG_LEVEL="info"
    )
    again = ServerProcess(
        None, tmp_path / "second.log", LUC_DATA_DIR=str(data_dir), LUC_LOG_LEVEL="info"
    )
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        server.start()
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None
        # The machine goes down: LUC and its PostgreSQL die at once, the file stays.
        server.kill()
        psutil.Process(postmaster).kill()
        wait_for(lambda: not _postgres_of(pgdata), 30, "the server processes to exit")
        pid_file = pgdata / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(bystander.pid), *lines[1:]]) + "\n")

        again.start()
        said = [
            (line["event"], line["pid"], line.get("process"))
            for line in _log_lines(again.log_path)
            if line["event"].startswith("embedded_postgres_")
        ]
        assert said == [("embedded_postgres_stale_pid_file", bystander.pid, "sleep")], said
        # The first start migrated the new database, and said so; the second had nothing to.
        migrated = [
            (line["from_revision"], line["to_revision"])
            for path in (server.log_path, again.log_path)
            for line in _log_lines(path)
            if line["event"] == "schema_migrated"
        ]
        assert migrated == [(None, head_revision())], migrated
        running = postmaster_pid(pgdata)
        assert running is not None and running != bystander.pid
        assert alive(bystander.pid)
        again.stop()
        assert again.process is not None and again.process.returncode == 0
        wait_for(lambda: not _postgres_of(pgdata), 30, "the postmaster to stop")
        assert alive(bystander.pid)  # nor at exit
    finally:
        server.kill()
        again.kill()
        bystander.kill()
        bystander.wait()
        for pid in _postgres_of(pgdata):
            psutil.Process(pid).kill()


def test_a_server_shared_with_a_live_luc_is_joined_not_stopped(
    tmp_path: Path, data_dir: Path
) -> None:
    """Two LUC processes on one data folder: the second start is no orphan case, and the
    server stays up until the last of them stops."""
    pgdata = (data_dir / "pgdata").resolve()
    first = ServerProcess(None, tmp_path / "first.log", LUC_DATA_DIR=str(data_dir))
    second = ServerProcess(None, tmp_path / "second.log", LUC_DATA_DIR=str(data_dir))
    try:
        first.start()
        postmaster = postmaster_pid(pgdata)
        second.start()
        assert not [line for line in _log_lines(second.log_path) if "orphan" in line["event"]]
        assert postmaster_pid(pgdata) == postmaster

        first.stop()
        assert postmaster_pid(pgdata) == postmaster  # still used by the second
        second.stop()
        wait_for(lambda: not _postgres_of(pgdata), 30, "the postmaster to stop")
    finally:
        first.kill()
        second.kill()
        for pid in _postgres_of(pgdata):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("command", [("serve", "--workers", "1"), ("migrate",)])
def test_a_data_dir_that_is_a_file_stops_the_start_naming_luc_data_dir(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # It ended in "FileExistsError: [Errno 17] File exists: '…'", naming no setting.
    not_a_folder = tmp_path / "luc"
    not_a_folder.write_text("")
    done = luc(*command, LUC_DATA_DIR=str(not_a_folder), LUC_PORT="0")
    assert done.returncode == (3 if command[0] == "serve" else 1), done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"LUC_DATA_DIR {str(not_a_folder)!r} cannot hold the embedded PostgreSQL: "
        "it is not a folder, nor can one be made there (File exists)"
    ) in done.stderr, done.stderr
