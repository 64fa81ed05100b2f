"""One worker answering sixteen clients at once: every answer reaches its connection whole
and in order, plain and streamed alike, and what the requests recorded adds up exactly.

A busy worker holds a connection's writes to the end of the event loop's turn and sends
them as one (``service.http_head.GatheredWrites``); this is ``luc serve`` itself, a real
process on uvicorn, each client on one keep-alive connection, the upstream the fake
OpenRouter on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import httpx
import msgspec
import pytest

from tests.support.events import wire_event
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

CLIENTS = 16
ROUNDS = 5
BODY = {"model": "google/gemini-3.0-flash", "messages": [{"role": "user", "content": "Hi?"}]}


async def _client(http: httpx.AsyncClient, n: int) -> None:
    """``ROUNDS`` times on one connection: an event, its job, a streamed and a plain call."""
    job = f"busy-{n:02d}"
    proxy = {"X-LUC-Job": f"proxied-{n:02d}", "X-LUC-Agent": "ORACLE"}
    for r in range(ROUNDS):
        stored = await http.post("/v1/events", json=wire_event(f"{job}-{r}", job_id=job))
        assert stored.status_code == 201, stored.text
        assert stored.json()["id"] == f"{job}-{r}"

        detail = await http.get(f"/v1/jobs/{job}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["events"] == r + 1  # its own event, counted once, and no other

        streamed = await http.post(
            "/v1/chat/completions", json={**BODY, "stream": True}, headers=proxy
        )
        assert streamed.status_code == 200, streamed.text
        assert streamed.text.endswith("data: [DONE]\n\n")
        data = [e for e in streamed.text.split("\n\n") if e.startswith("data: ")]
        assert data[-1] == "data: [DONE]"
        chunks = [msgspec.json.decode(e.removeprefix("data: ")) for e in data[:-1]]
        streamed_text = "".join(  # the last chunk, the usage, has no choices
            choice["delta"].get("content") or "" for c in chunks for choice in c["choices"]
        )

        plain = await http.post("/v1/chat/completions", json=BODY, headers=proxy)
        assert plain.status_code == 200, plain.text
        # The stream's pieces, whole and in their order, make the plain answer's text.
        assert streamed_text == plain.json()["choices"][0]["message"]["content"] != ""


async def test_sixteen_clients_at_once_get_every_answer_whole_and_their_usage_adds_up(
    server_factory: Callable[..., ServerProcess],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    server = server_factory(
        LUC_WORKERS="1",
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
    )
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
        await asyncio.gather(*(_client(http, n) for n in range(CLIENTS)))

    async def proxied_recorded() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE kind = 'charge' AND job_id LIKE 'proxied-%'"
        )
        return bool(count == CLIENTS * ROUNDS * 2)

    await wait_until(proxied_recorded, 60, "every proxied call on the ledger")
    counts = await db.fetch(
        """SELECT job_id, count(*) AS charges FROM ledger_entries
           WHERE kind = 'charge' GROUP BY job_id ORDER BY job_id"""
    )
    assert {r["job_id"]: r["charges"] for r in counts} == {
        **{f"busy-{n:02d}": ROUNDS for n in range(CLIENTS)},
        **{f"proxied-{n:02d}": ROUNDS * 2 for n in range(CLIENTS)},
    }
    await assert_rollups_equal_ledger(db)
