"""One log line per request: a proxied call logs LUC's access line and nothing else, not
httpx's own ``HTTP Request: POST …`` line for the upstream call beside it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_openrouter import FakeOpenRouter

pytestmark = pytest.mark.slow


def test_a_proxied_call_logs_exactly_one_line(
    server_factory: Callable[..., Any], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    server = server_factory(
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
        LUC_LOG_LEVEL="info",
        LUC_DATA_DIR=str(tmp_path / "data"),
    )
    log_path: Path = server.log_path
    start = log_path.stat().st_size
    body = {
        "model": "google/gemini-3.0-flash",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    headers = {"X-LUC-Job": "job-log", "X-LUC-Agent": "ORACLE"}
    answer = httpx.post(
        f"{server.base_url}/v1/chat/completions", json=body, headers=headers, timeout=30
    )
    assert answer.status_code == 200
    streamed = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={**body, "stream": True},
        headers=headers,
        timeout=30,
    )
    assert streamed.status_code == 200

    def lines() -> list[str]:
        with log_path.open("rb") as f:
            f.seek(start)
            text = f.read().decode()
        # Complete lines only: the server may be writing one right now.
        return [line for line in text.split("\n")[:-1] if "chat/completions" in line]

    # The access line is written as the response ends; the upstream call's line, if any,
    # came before it.
    deadline = time.monotonic() + 10
    while len(lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = [json.loads(line) for line in lines()]
    assert [(r["logger"], r["event"], r.get("route"), r.get("status")) for r in logged] == [
        ("luc.access", "request", "/v1/chat/completions", 200),
        ("luc.access", "request", "/v1/chat/completions", 200),
    ]
