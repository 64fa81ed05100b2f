"""The ``luc`` command in a child process, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from tests.support.paths import PROJECT_ROOT


def luc(*args: str, check: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m service ARGS`` with only the LUC_* settings given here (none inherited:
    the test says exactly where the command is to look); output captured as text, lines
    never wrapped (COLUMNS=200). ``check``: raise when it exits with an error."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**inherited, "COLUMNS": "200", **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


async def luc_on(
    database_url: str, *args: str, check: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """``luc ARGS`` on the database at ``database_url``, from a test's event loop."""
    return await asyncio.to_thread(luc, *args, check=check, LUC_DATABASE_URL=database_url, **env)
