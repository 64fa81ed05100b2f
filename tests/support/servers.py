"""``luc serve`` in a child process: the one real server that tests and bench/ start.

A test kills it (SIGKILL, as in a crash) or stops it (SIGTERM) and starts it again on the
same port; a benchmark reads its pid to meter its CPU. Fake upstreams and receivers run
in the test's own process instead (``tests.support.loopback``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port

TEST_DEFAULTS: Mapping[str, str] = {
    "LUC_LOG_LEVEL": "warning",
    "LUC_AUTH": "off",  # as in settings_for; pass LUC_AUTH="on" to test with keys
    # One process (the default is one per CPU): a test that kills or inspects "the server"
    # means that process; tests of several workers ask for them.
    "LUC_WORKERS": "1",
}
"""What a test's server runs with unless the test says otherwise. A benchmark passes
``defaults={}``: it measures the server as it runs by default (info logs, keys)."""


class ServerProcess:
    """``luc serve`` (``python -m service serve``) in a child process on a free port.

    With ``database_url=None`` it runs on its own embedded PostgreSQL (pass
    ``LUC_DATA_DIR``). The first start picks another port when the one it was given is
    taken by then; later starts keep the port, which clients of the test already know.
    """

    PORT_ATTEMPTS = 5

    def __init__(
        self,
        database_url: str | None,
        log_path: Path,
        *,
        defaults: Mapping[str, str] = TEST_DEFAULTS,
        **env: str,
    ) -> None:
        self.port = free_port()
        # Its own data folder unless the test names one: the gateway's spool lives there
        # (kept across restarts of this server, as on a real machine).
        data_dir = str(log_path.parent / f"{log_path.stem}-data")
        self.env = {
            **os.environ,
            "LUC_HOST": "127.0.0.1",
            "LUC_DATA_DIR": data_dir,
            **defaults,
            **env,
        }
        self.env.pop("LUC_DATABASE_URL", None)
        if database_url is not None:
            self.env["LUC_DATABASE_URL"] = database_url
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "start the server first"
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        for _ in range(self.PORT_ATTEMPTS):
            if self._start(timeout):
                self._started_once = True
                return
            self.port = free_port()  # taken since it was picked: another one
        raise RuntimeError(f"luc serve found no free port: {self.log_tail()}")

    def _start(self, timeout: float) -> bool:
        """Start and wait until ready; False when the port was taken (first start only)."""
        self.log_path.touch()
        offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                env={**self.env, "LUC_PORT": str(self.port)},
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with self.log_path.open("rb") as log:
                    log.seek(offset)
                    written = log.read().decode(errors="replace")
                if "address already in use" in written.lower() and not self._started_once:
                    return False
                raise RuntimeError(f"luc serve exited: {written[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a child process's readiness, with a deadline
        raise RuntimeError(f"luc serve did not become ready: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, as a clean stop; SIGKILL if it has not exited after 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of what the server wrote, for an error message."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"
