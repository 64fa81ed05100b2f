"""The README's "Try it" block works when pasted into a shell on a fresh clone.

The block is taken from the README as written and run by bash, one command after another,
in a ``git clone`` of this repository's HEAD, with a data folder of its own and a free port
(``LUC_PORT``, which the block honours). Nothing is prepared for it: its ``make run &``
creates the clone's ``.venv`` and installs LUC there (from the package index pip is
configured with, as a newcomer's would: about a minute), then serves. Each command's
status and output is checked; the server it started is stopped at the end, and its
embedded PostgreSQL with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# Installing into a fresh .venv, starting, the demo's traffic: minutes on a busy 2-core box.
BLOCK_TIMEOUT_SECONDS = 900


def try_it_commands(readme: str) -> list[str]:
    """The commands of the first ``sh`` block under "## Try it", continuation lines joined."""
    section = readme.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, "no sh block under ## Try it"
    commands: list[str] = []
    pending = ""
    for line in match.group(1).splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + "\n"
            continue
        command = pending + line
        pending = ""
        if command.strip() and not command.lstrip().startswith("#"):
            commands.append(command)
    return commands


def script_of(commands: list[str], steps: Path) -> str:
    """The commands as pasted, each in a group whose output goes to files of its own and
    whose status is written down. pipefail only makes a failure inside a pipeline visible."""
    lines = ["set -o pipefail"]
    for n, command in enumerate(commands):
        lines += [
            "{ " + command,
            f'}} >"{steps}/{n}.out" 2>"{steps}/{n}.err"',
            f'echo "{n} $?" >>"{steps}/status"',
        ]
    # What the block left in the shell, for the checks below.
    lines.append(f'printf "%s\\n" "$LUC" "$LUC_API_KEY" >"{steps}/variables"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Outside pytest's private basetemp: the embedded PostgreSQL runs as a user of its own
    when the tests run as root, and must reach its data folder."""
    folder = Path(tempfile.mkdtemp(prefix="luc-try-it-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def living(group: int) -> list[psutil.Process]:
    """The processes of a process group that have not exited."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def test_the_try_it_block_works_pasted_into_a_shell_on_a_fresh_clone(scratch: Path) -> None:
    clone = scratch / "luc"
    subprocess.run(
        ["git", "clone", "--quiet", str(PROJECT_ROOT), str(clone)], check=True, timeout=120
    )
    commands = try_it_commands((clone / "README.md").read_text())
    assert commands[0].startswith("make run &"), commands

    steps = scratch / "steps"
    steps.mkdir()
    data_dir = scratch / "data"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        # A fresh shell: no LUC settings, no virtual environment, no outer make's flags.
        if not k.startswith("LUC_")
        and k not in ("VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTHONPATH")
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(PROJECT_ROOT))
    )
    env.update(LUC_DATA_DIR=str(data_dir), LUC_PORT=str(port))
    shell = subprocess.Popen(
        ["bash", "-c", script_of(commands, steps)],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the server it starts is in it
    )
    group = shell.pid
    try:
        shell.wait(timeout=BLOCK_TIMEOUT_SECONDS)
        status = dict(line.split() for line in (steps / "status").read_text().splitlines() if line)

        def said(n: int, stream: str = "out") -> str:
            return (steps / f"{n}.{stream}").read_text()

        for n, command in enumerate(commands):
            assert status.get(str(n)) == "0", (command, said(n), said(n, "err")[-3000:])
        luc, key = (steps / "variables").read_text().splitlines()
        base = f"http://127.0.0.1:{port}"
        assert luc == base

        # make run installed LUC alone, without the development tools.
        assert (clone / ".venv" / "bin" / "luc").is_file()
        assert not (clone / ".venv" / "bin" / "pytest").exists()

        # The key is the server's: the command line found the server's database.
        assert key.startswith("luc_"), key
        keys_step = next(n for n, c in enumerate(commands) if "keys create" in c)
        assert said(keys_step, "err").startswith(f"database: embedded at {data_dir} "), said(
            keys_step, "err"
        )
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/v1/keys", headers=auth, timeout=10).status_code == 200

        # The demo's traffic is what the reads show.
        jobs_step = next(n for n, c in enumerate(commands) if "/v1/jobs" in c)
        jobs = json.loads(said(jobs_step))
        assert jobs["items"], jobs
        usage_step = next(n for n, c in enumerate(commands) if "/v1/usage" in c)
        usage = json.loads(said(usage_step))
        assert usage["group_by"] == ["agent", "model"] and usage["rows"], usage

        # The reference it points at answers, without a key.
        reference = said(len(commands) - 1).strip()
        assert reference == f"API reference: {base}/schema"
        # In a browser (which asks for HTML): the page, and it loads nothing from elsewhere.
        page = httpx.get(f"{base}/schema", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200 and "<script" not in page.text
        assert page.headers["content-type"].startswith("text/html")
    finally:
        # Stop what the block started (make, luc serve): SIGTERM, as `kill %1` does.
        with_pid = living(group)
        for proc in with_pid:
            proc.send_signal(signal.SIGTERM)
        try:
            wait_for(lambda: not living(group), 60, "the block's processes to exit")
        finally:
            for proc in living(group):
                proc.kill()
    # A clean stop stops the embedded PostgreSQL too.
    wait_for(
        lambda: not (data_dir / "pgdata" / "postmaster.pid").exists(),
        60,
        "the embedded PostgreSQL to stop",
    )
