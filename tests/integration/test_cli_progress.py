"""Long ledger commands show their progress on stderr when it is a terminal, whatever
stdout is: an operator redirects the report (``luc catalog rerate … > report.txt``) and
still watches the work go on."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from typing import Any

from litestar.testing import AsyncTestClient

from tests.support.paths import PROJECT_ROOT

FLASH = "google/gemini-3.0-flash"


def run_with_stderr_on_a_terminal(database_url: str, *args: str) -> tuple[str, str]:
    """``luc ARGS`` with stdout a pipe and stderr a pseudo-terminal: (stdout, terminal)."""
    master, slave = pty.openpty()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        env={**inherited, "LUC_DATABASE_URL": database_url, "COLUMNS": "200", "TERM": "xterm"},
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    seen = bytearray()
    while True:  # until the child closes the terminal (EIO on Linux, or EOF)
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout, _ = child.communicate(timeout=120)
    assert child.returncode == 0, seen.decode(errors="replace")
    return stdout, seen.decode(errors="replace")


async def test_rerate_shows_its_progress_on_a_terminal_stderr_not_in_the_report(
    database_url: str, client: AsyncTestClient[Any]
) -> None:
    event = {
        "id": "e1", "occurred_at": "2026-11-10T10:00:00Z", "job_id": "job-1", "agent": "ORACLE",
        "provider": "openrouter", "model": FLASH, "input_tokens": 1_000_000, "output_tokens": 0,
    }  # fmt: skip
    assert (await client.post("/v1/events/batch", json={"events": [event]})).json()["accepted"] == 1
    stdout, terminal = await asyncio.to_thread(
        run_with_stderr_on_a_terminal,
        database_url,
        *("catalog", "rerate", "--since", "2026-11-01T00:00:00Z", "--dry-run"),
    )
    # The bar went to stdout's console: nothing at all when stdout was not a terminal.
    assert "re-rating" in terminal
    assert "re-rating" not in stdout
    assert stdout.startswith("1 events since 2026-11-01T00:00:00Z; would change 0")
