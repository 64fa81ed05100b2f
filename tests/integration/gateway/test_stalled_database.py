"""A PostgreSQL that answers nothing at all (stopped, hung on its disk, across a network
partition), its connections open: no server-side timeout can end a wait on it, and
before LUC bounded its own, a proxied call, a read and a batch of events each hung until
the client gave up. Each now answers 503 with Retry-After once
``LUC_DB_COMMAND_TIMEOUT_SECONDS`` have passed (a statement, and the rollback after it),
the proxied call without going upstream; ``/readyz`` says not ready within its own two
seconds. When the database answers again, the same process serves again, and an event
whose batch was refused is on the ledger once after the client sends it again.

``luc serve`` is a real process; between it and the tests' PostgreSQL is a TCP relay
that holds every byte while the test says so (``tests.support.stalling_relay``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.api.errors import RETRY_AFTER_SECONDS
from service.auth.keys import create_key
from service.db import UNAVAILABLE
from tests.support.events import wire_event
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.servers import ServerProcess
from tests.support.stalling_relay import stalling_relay
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

COMMAND_TIMEOUT = 2.0
CLIENT_TIMEOUT = 60.0
"""What the test's client waits: a request that hangs fails the test by this."""
# A statement and its rollback, each bounded by COMMAND_TIMEOUT, with room for a loaded
# machine; far below CLIENT_TIMEOUT, which is what every request waited before.
ANSWERED_WITHIN = 4 * COMMAND_TIMEOUT + 6
CHAT = {"model": "google/gemini-3.0-flash", "messages": [{"role": "user", "content": "Hi?"}]}
ATTRIBUTION = {"X-LUC-Job": "stalled-proxy", "X-LUC-Agent": "ORACLE"}


async def _timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_a_database_that_answers_nothing_gives_503s_in_bounded_time_then_serves_again(
    database_url: str,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    with stalling_relay(database_url) as relay:
        server = ServerProcess(
            relay.url,
            tmp_path / "server.log",
            LUC_DB_STATEMENT_TIMEOUT_MS="1000",
            LUC_DB_COMMAND_TIMEOUT_SECONDS=str(COMMAND_TIMEOUT),
            OPENROUTER_API_KEY=fake_openrouter.api_key,
            LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
            LUC_GATEWAY_CHAIN="openrouter",
            LUC_AUTH="on",
            LUC_RATE_LIMIT_PER_SECOND="1000",
        )
        server.start()
        _, key = await create_key(db, "gateway", "admin")
        # Not used before the stall: its look-up is one of the steps that waits.
        _, fresh = await create_key(db, "finance", "read")
        try:
            async with httpx.AsyncClient(
                base_url=server.base_url,
                timeout=CLIENT_TIMEOUT,
                headers={"Authorization": f"Bearer {key}"},
            ) as http:
                warm = await http.post("/v1/chat/completions", json=CHAT, headers=ATTRIBUTION)
                assert warm.status_code == 200, warm.text
                upstream_calls = len(fake_openrouter.chat_calls())

                relay.stall()
                event = wire_event("stalled-1", job_id="stalled-job")
                answers = await asyncio.gather(
                    _timed(http.post("/v1/chat/completions", json=CHAT, headers=ATTRIBUTION)),
                    _timed(
                        http.get(
                            "/v1/jobs/stalled-proxy", headers={"Authorization": f"Bearer {fresh}"}
                        )
                    ),
                    _timed(http.post("/v1/events", json=event)),
                    _timed(http.get("/readyz")),
                )
                (proxied, proxied_s), (read, read_s), (posted, posted_s), (ready, ready_s) = answers

                # OpenAI's error shape on the proxy, LUC's elsewhere; each says what to do.
                assert proxied.status_code == 503, proxied.text
                assert proxied.json()["error"]["message"] == UNAVAILABLE
                assert proxied.headers["Retry-After"] == RETRY_AFTER_SECONDS
                assert len(fake_openrouter.chat_calls()) == upstream_calls  # not paid for
                for answer in (read, posted):
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["detail"] == UNAVAILABLE
                    assert answer.headers["Retry-After"] == RETRY_AFTER_SECONDS
                assert ready.status_code == 503
                assert max(proxied_s, read_s, posted_s) < ANSWERED_WITHIN, answers
                # A read with a key not seen yet waits for one step, the key's look-up: the
                # rate limit's look-up of the same key waited first, then the guard's, and
                # each timed-out statement's connection was reset (another wait) before it
                # was given back (10 s here before).
                assert read_s < COMMAND_TIMEOUT + 3, answers
                assert ready_s < 2 + 3  # the probe's own bound, and room for a slow machine

                relay.flow()
                again = await http.post("/v1/events", json=event)
                # Refused in the stall, or stored after all by a statement the relay held
                # and delivered: either way once, and said so.
                assert again.status_code in (200, 201), again.text
                proxied = await http.post("/v1/chat/completions", json=CHAT, headers=ATTRIBUTION)
                assert proxied.status_code == 200, proxied.text
                assert (await http.get("/readyz")).status_code == 200

                async def recorded() -> bool:
                    count = await db.fetchval(
                        "SELECT count(*) FROM ledger_entries WHERE job_id = 'stalled-proxy'"
                    )
                    return bool(count == 2)

                # The warm call's usage was on its way when the stall began: it waited in
                # the spool, and is replayed after the writer's backoff.
                await wait_until(recorded, 30, "both proxied calls on the ledger")
        finally:
            server.stop()

    charges = await db.fetch(
        """SELECT job_id, count(*) AS n FROM ledger_entries WHERE kind = 'charge'
           GROUP BY job_id ORDER BY job_id"""
    )
    assert {r["job_id"]: r["n"] for r in charges} == {"stalled-job": 1, "stalled-proxy": 2}
    await assert_rollups_equal_ledger(db)


# As LUC runs by default: a statement waited for far longer than Prometheus waits for a
# scrape (10 s unless configured).
PATIENT_COMMAND_TIMEOUT = 30.0
SCRAPE_TIMEOUT = 10.0


async def test_a_scrape_says_the_database_is_down_before_prometheus_gives_it_up(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Before, a scrape waited for the key's look-up (twice: the rate limit's, then the
    guard's) and for the ledger's statements, each up to ``LUC_DB_COMMAND_TIMEOUT_SECONDS``
    (35 s by default): Prometheus gave every scrape up first, so `luc_database_up 0` never
    reached it, `LucDatabaseDown` never fired and every process series went dark. Now each
    of a scrape's steps waits a probe's two seconds, and a key seen before is taken as last
    read (a key never seen is refused: nothing says what it may do)."""
    with stalling_relay(database_url) as relay:
        server = ServerProcess(
            relay.url,
            tmp_path / "server.log",
            LUC_DB_STATEMENT_TIMEOUT_MS="25000",
            LUC_DB_COMMAND_TIMEOUT_SECONDS=str(PATIENT_COMMAND_TIMEOUT),
            LUC_AUTH="on",
            LUC_RATE_LIMIT_PER_SECOND="1000",
        )
        server.start()
        _, known = await create_key(db, "prometheus", "read")
        _, unseen = await create_key(db, "another-scraper", "read")
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as http:

                async def scrape(key: str) -> tuple[httpx.Response, float]:
                    return await _timed(
                        http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
                    )

                warm, _ = await scrape(known)
                assert warm.status_code == 200, warm.text
                assert "luc_database_up 1.0" in warm.text

                relay.stall()
                # At once (the key still in this process's cache: the ledger's statements
                # are what wait), and again once the cache has let the key go (its look-up
                # waits, and what was last read of it answers).
                cached, cached_s = await scrape(known)
                await asyncio.sleep(2.5)  # past KEY_CACHE_SECONDS
                (looked_up, looked_up_s), (refused, refused_s) = await asyncio.gather(
                    scrape(known), scrape(unseen)
                )
                for answer, seconds in ((cached, cached_s), (looked_up, looked_up_s)):
                    assert answer.status_code == 200, answer.text
                    assert "luc_database_up 0.0" in answer.text
                    assert "luc_cost_usd" not in answer.text  # no ledger series
                    # This process's series are still there: the warm scrape's timing.
                    assert "luc_http_request_duration_seconds_count{" in answer.text
                    assert seconds < SCRAPE_TIMEOUT, (cached_s, looked_up_s)
                assert refused.status_code == 503, refused.text
                assert refused.json()["detail"] == UNAVAILABLE
                assert refused_s < SCRAPE_TIMEOUT, refused_s

                relay.flow()

                async def up_again() -> bool:
                    answer, _ = await scrape(known)
                    return answer.status_code == 200 and "luc_database_up 1.0" in answer.text

                await wait_until(up_again, 30, "luc_database_up 1 once PostgreSQL answers")
        finally:
            server.stop()
