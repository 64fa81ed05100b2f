"""Logs for whoever reads them: aligned console text when stderr is a terminal, one JSON
object per line otherwise (a file, a pipe, a log collector); ``LUC_LOG_FORMAT`` decides
when set. Each case is a real process whose stderr is a pseudo-terminal or a pipe."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from tests.support.paths import PROJECT_ROOT

# As `luc serve` sets up its logs, then one line as LUC writes them.
LOG_ONE_LINE = """
from service.logs import configure_logging
from service.settings import load_settings
import structlog
server = load_settings().server
configure_logging(server.log_level, server.log_format)
structlog.get_logger("luc").info("started", embedded=True)
"""


def stderr_of(on_terminal: bool, **env: str) -> str:
    """What the snippet writes to stderr, a pseudo-terminal or a pipe."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    command = [sys.executable, "-c", LOG_ONE_LINE]
    if not on_terminal:
        done = subprocess.run(
            command, env={**inherited, **env}, cwd=PROJECT_ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stderr
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            command, env={**inherited, **env}, cwd=PROJECT_ROOT, stderr=terminal
        )
        os.close(terminal)
        terminal = -1
        written = b""
        while True:  # until the child's end of the terminal closes (it exited)
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: no process holds the terminal any more
                break
            if not chunk:
                break
            written += chunk
        assert process.wait(timeout=60) == 0, written
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    return written.decode()


def test_a_terminal_gets_console_text() -> None:
    written = stderr_of(on_terminal=True)
    assert "started" in written and "embedded" in written
    assert not written.lstrip().startswith("{"), written
    assert "\x1b[" in written  # colours, for a terminal only


def test_a_pipe_gets_json_lines() -> None:
    (line,) = stderr_of(on_terminal=False).splitlines()
    logged = json.loads(line)
    assert (logged["event"], logged["embedded"], logged["logger"]) == ("started", True, "luc")


@pytest.mark.parametrize("on_terminal", [True, False], ids=["terminal", "pipe"])
def test_luc_log_format_decides_when_set(on_terminal: bool) -> None:
    (line,) = stderr_of(on_terminal, LUC_LOG_FORMAT="json").strip().splitlines()
    assert json.loads(line)["event"] == "started"
    console = stderr_of(on_terminal, LUC_LOG_FORMAT="console")
    assert "started" in console and not console.lstrip().startswith("{")
    assert ("\x1b[" in console) == on_terminal  # no colour codes in a file


# LUC's lines (written directly) and a library's (through ``logging``), below the level too.
LOG_BOTH = """
import logging
from service.logs import configure_logging
import structlog
configure_logging("info", "json")
structlog.get_logger("luc.gateway").debug("not_shown")
logging.getLogger("uvicorn.error").debug("not shown either")
structlog.get_logger("luc.gateway").warning("upstream_retry", attempt=1)
logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
try:
    1 / 0
except ZeroDivisionError:
    structlog.get_logger("luc.gateway").exception("stream_pump_failed", provider="openrouter")
"""


def test_luc_s_lines_and_the_libraries_read_alike_and_honour_the_level() -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    done = subprocess.run(
        [sys.executable, "-c", LOG_BOTH], env=inherited, cwd=PROJECT_ROOT, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(x["event"], x["level"], x["logger"]) for x in lines] == [
        ("upstream_retry", "warning", "luc.gateway"),
        ("Invalid HTTP request received.", "warning", "uvicorn.error"),
        ("stream_pump_failed", "error", "luc.gateway"),
    ]
    assert lines[0]["attempt"] == 1
    assert all(line["timestamp"].endswith("Z") for line in lines)
    assert lines[2]["exception"].endswith("ZeroDivisionError: division by zero")
