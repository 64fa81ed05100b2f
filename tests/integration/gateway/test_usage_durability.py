"""A proxied call that reached the provider is paid for: its usage is on the ledger or in
the local spool before the answer ends, whatever fails (a held lock, a statement timeout,
a conflicting or rejected event), and a failure to record never turns the delivered answer
into an error. What the ledger refuses is parked, listed over REST and counted in
/metrics; attribution the ledger would refuse is refused before the provider is paid.

The upstream is the fake OpenRouter on loopback; the ledger is the test's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.catalog.service import CatalogCache
from service.db import connect
from service.errors import InvalidRequestError
from service.gateway.chain import Chain
from service.gateway.metering import Gateway
from service.gateway.models import CallContext, ProviderUsage
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.usage import usage_event
from service.ingest.models import UsageEventIn
from service.locks import LOCK_REPRICING
from service.recording.adapters import database_catalog
from service.recording.sink import RecordingSink
from service.settings import IngestSettings
from tests.support.fake_openrouter import FakeOpenRouter, Reply, usage
from tests.support.ledger_truth import assert_rollups_equal_ledger, ledger
from tests.support.settings import settings_for

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
QUESTION = [{"role": "user", "content": "Capital of France?"}]
ATTRIBUTION = {"X-LUC-Job": "job-d", "X-LUC-Agent": "ORACLE"}


def _app(database_url: str, fake: FakeOpenRouter, data_dir: Path, **env: str) -> Litestar:
    return create_app(
        settings_for(
            database_url,
            OPENROUTER_API_KEY=fake.api_key,
            LUC_OPENROUTER_BASE_URL=fake.base_url,
            LUC_GATEWAY_CHAIN="openrouter",
            LUC_DATA_DIR=str(data_dir),
            **env,
        )
    )


class Apps:
    """LUC apps on the test's database and one LUC_DATA_DIR (so one spool), in-process."""

    def __init__(self, database_url: str, fake: FakeOpenRouter, data_dir: Path) -> None:
        self.database_url, self.fake, self.data_dir = database_url, fake, data_dir
        self.running: list[AsyncTestClient[Any]] = []

    async def start(self, **env: str) -> tuple[AsyncTestClient[Any], RecordingSink]:
        client: AsyncTestClient[Any] = AsyncTestClient(
            app=_app(self.database_url, self.fake, self.data_dir, **env)
        )
        await client.__aenter__()
        self.running.append(client)
        sink = client.app.state.luc.recording
        assert isinstance(sink, RecordingSink)
        return client, sink

    async def stop(self, client: AsyncTestClient[Any]) -> None:
        self.running.remove(client)
        await client.__aexit__(None, None, None)


@pytest.fixture
async def apps(
    database_url: str, fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> AsyncIterator[Apps]:
    apps = Apps(database_url, fake_openrouter, tmp_path / "data")
    yield apps
    for client in reversed(apps.running):
        await apps.stop(client)


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": FLASH, "messages": QUESTION, **extra}


def _sse_chunks(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def _streamed_text(chunks: list[str]) -> str:
    parts = []
    for chunk in chunks:
        if chunk.startswith(":") or chunk == "[DONE]":
            continue
        for choice in msgspec.json.decode(chunk).get("choices", []):
            parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


async def _metric(client: AsyncTestClient[Any], name: str, **labels: str) -> float | None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def _spool_empty(sink: RecordingSink) -> bool:
    pending, _ = await sink.spool_counts()
    return pending == 0


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# A held lock, a statement timeout ------------------------------------------------------------


@pytest.mark.parametrize(
    "waiting",
    [
        # PostgreSQL cancels the batch waiting for the lock (QueryCanceledError).
        {"LUC_DB_STATEMENT_TIMEOUT_MS": "500"},
        # LUC stops waiting first; the statement would have waited 30 s.
        {"LUC_GATEWAY_RECORD_TIMEOUT_SECONDS": "0.3"},
    ],
    ids=["statement_timeout", "record_timeout"],
)
async def test_calls_answered_while_a_repricing_holds_the_lock_are_spooled_then_recorded_once(
    apps: Apps,
    fake_openrouter: FakeOpenRouter,
    database_url: str,
    db: asyncpg.Connection,
    waiting: dict[str, str],
) -> None:
    client, sink = await apps.start(**waiting)
    fake_openrouter.push(
        Reply(text="Paris.", usage=usage(1000, 10, cost="0.000105")),
        Reply(text="Paris, streamed.", usage=usage(2000, 20, cost="0.000209")),
    )
    # Another connection re-prices the ledger: it holds the lock exclusively, so every
    # batch (which takes it shared) waits.
    repricing = await connect(database_url)
    transaction = repricing.transaction()
    await transaction.start()
    await repricing.execute(LOCK_REPRICING)
    try:
        answer = await client.post("/v1/chat/completions", json=_chat(), headers=ATTRIBUTION)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Paris."
        first_id = answer.headers["x-luc-event-id"]
        # 1000 × 0.10 + 10 × 0.40 = 104 per 1M
        assert answer.headers["x-luc-cost-usd"] == "0.000104"

        streamed = await client.post(
            "/v1/chat/completions", json=_chat(stream=True), headers=ATTRIBUTION
        )
        assert streamed.status_code == 200
        chunks = _sse_chunks(streamed.text)
        assert chunks[-1] == "[DONE]"
        assert not any('"error"' in c for c in chunks)
        assert _streamed_text(chunks) == "Paris, streamed."
        second_id = msgspec.json.decode(chunks[-2])["id"]

        # Both answers are out; their usage is on local disk, not yet on the ledger.
        assert await sink.spool_counts() == (2, 0)
        assert await ledger(db) == []

        # Off the answers' path, each attempt to record gives up (the lock is still held),
        # and the usage stays spooled.
        async def given_up() -> bool:
            spooled = await _metric(client, "luc_gateway_usage_spooled_total", cause="timeout")
            return spooled == 2

        await _until("both attempts to give up", given_up)
        assert await ledger(db) == []
        assert await _metric(client, "luc_gateway_spool_pending_events") == 2
    finally:
        await transaction.rollback()  # the re-pricing ends
        await repricing.close()

    async def recorded() -> bool:
        return len(await ledger(db)) == 2 and await sink.spool_counts() == (0, 0)

    await _until("the replay to record the spooled usage", recorded)
    entries = {e["event_id"]: e for e in await ledger(db)}
    assert set(entries) == {first_id, second_id}
    # 2000 × 0.10 + 20 × 0.40 = 208 per 1M
    assert entries[first_id]["cost_usd"] == Decimal("0.000104")
    assert entries[second_id]["cost_usd"] == Decimal("0.000208")
    assert entries[second_id]["provider_cost_usd"] == Decimal("0.000209")
    assert {e["kind"] for e in entries.values()} == {"charge"}
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 2
    await assert_rollups_equal_ledger(db)
    assert await db.fetchval("SELECT cost_usd FROM rollup_jobs WHERE job_id = 'job-d'") == Decimal(
        "0.000312"
    )
    assert await _metric(client, "luc_gateway_spool_pending_events") == 0


async def test_the_answer_waits_for_the_spool_not_for_the_ledger(
    apps: Apps, fake_openrouter: FakeOpenRouter, database_url: str, db: asyncpg.Connection
) -> None:
    # A ledger that would take 20 s to answer (a re-pricing holds the lock all that time):
    # the calls are answered at the provider's pace all the same, their usage durable in
    # the spool, and recorded once the lock is free.
    client, sink = await apps.start(LUC_GATEWAY_RECORD_TIMEOUT_SECONDS="20")
    fake_openrouter.push(Reply(text="Paris."), Reply(text="Paris, streamed."))
    repricing = await connect(database_url)
    transaction = repricing.transaction()
    await transaction.start()
    await repricing.execute(LOCK_REPRICING)
    try:
        started = time.monotonic()
        plain = await client.post("/v1/chat/completions", json=_chat(), headers=ATTRIBUTION)
        streamed = await client.post(
            "/v1/chat/completions", json=_chat(stream=True), headers=ATTRIBUTION
        )
        answered_in = time.monotonic() - started
        assert plain.status_code == streamed.status_code == 200
        assert streamed.text.endswith("data: [DONE]\n\n")
        assert answered_in < 10, answered_in  # not the 20 s the ledger would have taken
        assert await sink.spool_counts() == (2, 0)
        assert await ledger(db) == []
    finally:
        await transaction.rollback()
        await repricing.close()

    async def recorded() -> bool:
        return len(await ledger(db)) == 2 and await sink.spool_counts() == (0, 0)

    await _until("the usage to reach the ledger", recorded)
    assert plain.headers["x-luc-event-id"] in {e["event_id"] for e in await ledger(db)}
    # 12 × 0.10 + 3 × 0.40 = 2.4 per 1M each (the fake's default usage)
    assert await db.fetchval("SELECT cost_usd FROM rollup_jobs WHERE job_id = 'job-d'") == Decimal(
        "0.0000048"
    )


# Refused by the ledger: parked ---------------------------------------------------------------


async def test_usage_the_ledger_refuses_is_parked_listed_and_counted_and_the_answer_is_200(
    apps: Apps,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    client, sink = await apps.start()
    same_id = "gen-1764000000-SameIdTwice0000000000"
    fake_openrouter.push(
        Reply(id=same_id, text="first", usage=usage(100, 5)),
        # The provider reuses the id for other content: a conflict, the first stays.
        Reply(id=same_id, text="second", usage=usage(100, 7)),
        # A cost no bill can hold (10^21 USD): rejected.
        Reply(text="priceless", usage=usage(10, 1, cost="1000000000000000000000")),
    )
    for text in ("first", "second", "priceless"):
        answer = await client.post("/v1/chat/completions", json=_chat(), headers=ATTRIBUTION)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == text
        # Recorded off the answer's path: each call's usage leaves the spool for the ledger
        # (or is parked) before the next call, so the second report meets the first there.
        await _until("the usage to leave the spool", lambda: _spool_empty(sink))
    priceless_id = answer.json()["id"]

    # A gateway caller that skipped the attribution check (a job id of 129 characters).
    long_job = usage_event(
        generation_id="gen-1764000000-LongJobId0000000000000",
        occurred_at=datetime.now(UTC),
        context=CallContext("j" * 129, "ORACLE"),
        provider="openrouter",
        model=FLASH,
        usage=ProviderUsage(input_tokens=10, output_tokens=2),
    )
    await sink.emit(long_job)

    [entry] = await ledger(db)
    assert (entry["event_id"], entry["output_tokens"]) == (same_id, 5)

    listing = await client.get("/v1/usage/parked")
    assert listing.status_code == 200
    page = listing.json()
    assert (page["parked"], page["pending"], page["next_cursor"]) == (3, 0, None)
    conflict, priceless, invalid = page["items"]
    assert (conflict["event_id"], conflict["status"]) == (same_id, "conflict")
    assert "output_tokens" in conflict["reason"]
    assert conflict["event"]["output_tokens"] == 7  # the refused report, whole
    assert (priceless["event_id"], priceless["status"]) == (priceless_id, "rejected")
    assert priceless["reason"].startswith("provider_cost_usd: '1000000000000000000000' is out of")
    assert (invalid["event_id"], invalid["status"]) == (long_job.id, "rejected")
    assert invalid["reason"].startswith("job_id: expected `str` of length <= 128")
    assert invalid["event"]["job_id"] == "j" * 129

    assert await _metric(client, "luc_gateway_parked_events") == 3
    assert await _metric(client, "luc_gateway_usage_parked_total", status="conflict") == 1
    assert await _metric(client, "luc_gateway_usage_parked_total", status="rejected") == 2

    # The operator: a replay refused again keeps it parked with the reason; discard drops it.
    again = await client.post(f"/v1/usage/parked/{conflict['id']}/replay")
    assert again.status_code == 200
    assert again.json()["status"] == "conflict"
    assert (await client.delete(f"/v1/usage/parked/{conflict['id']}")).status_code == 204
    assert (await client.delete(f"/v1/usage/parked/{conflict['id']}")).status_code == 404
    left = (await client.get("/v1/usage/parked", params={"limit": 1})).json()
    assert [i["id"] for i in left["items"]] == [priceless["id"]]
    rest = (await client.get("/v1/usage/parked", params={"cursor": left["next_cursor"]})).json()
    assert [i["id"] for i in rest["items"]] == [invalid["id"]]
    assert await _metric(client, "luc_gateway_parked_events") == 2
    assert len(await ledger(db)) == 1


async def test_a_parked_event_is_recorded_by_replay_once_its_cause_is_fixed(
    apps: Apps,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    # Attributes limited below what the proxy writes (route, key, streamed…): refused.
    client, _ = await apps.start(LUC_MAX_ATTRIBUTES_BYTES="16")
    answer = await client.post("/v1/chat/completions", json=_chat(), headers=ATTRIBUTION)
    assert answer.status_code == 200
    [parked] = (await client.get("/v1/usage/parked")).json()["items"]
    assert parked["reason"].startswith("attributes: ")
    assert await ledger(db) == []
    await apps.stop(client)

    # The operator raises the limit and restarts LUC: the parked event is still there.
    client, _ = await apps.start()
    replayed = await client.post(f"/v1/usage/parked/{parked['id']}/replay")
    assert replayed.status_code == 200
    assert replayed.json() == {"id": answer.headers["x-luc-event-id"], "status": "accepted"}
    [entry] = await ledger(db)
    # 12 × 0.10 + 3 × 0.40 = 2.4 per 1M (the fake's default usage)
    assert entry["cost_usd"] == Decimal("0.0000024")
    assert (await client.get("/v1/usage/parked")).json()["items"] == []
    assert (await client.post(f"/v1/usage/parked/{parked['id']}/replay")).status_code == 404


# A sink that fails anyway ----------------------------------------------------------------------


class _BrokenSink:
    async def emit(self, event: UsageEventIn, supersedes: int | None = None) -> None:
        raise RuntimeError("the sink broke")

    def hold(self, event: UsageEventIn, supersedes: int | None = None) -> int | None:
        raise RuntimeError("the sink broke")

    def release(self, held: int) -> None:
        raise RuntimeError("the sink broke")


async def test_a_sink_that_raises_never_turns_a_delivered_answer_into_an_error(
    pool: asyncpg.Pool, openrouter: OpenRouterProvider, fake_openrouter: FakeOpenRouter
) -> None:
    cache = CatalogCache()
    gateway = Gateway(Chain([openrouter]), _BrokenSink(), database_catalog(pool, cache))
    fake_openrouter.push(Reply(text="Paris."), Reply(text="Paris again."))
    result = await gateway.chat(messages=QUESTION, model=FLASH, job_id="job-b", agent="ORACLE")
    assert result.text == "Paris."
    pieces = [
        p
        async for p in gateway.stream(
            messages=QUESTION, model=FLASH, job_id="job-b", agent="ORACLE"
        )
    ]
    assert "".join(p for p in pieces if isinstance(p, str)) == "Paris again."
    assert pieces[-1].text == "Paris again."  # type: ignore[union-attr]  # the ChatResult


# Attribution checked before the provider is paid ---------------------------------------------


async def test_attribution_the_ledger_would_refuse_is_refused_before_any_upstream_call(
    apps: Apps,
    fake_openrouter: FakeOpenRouter,
    pool: asyncpg.Pool,
    openrouter: OpenRouterProvider,
    db: asyncpg.Connection,
) -> None:
    client, _ = await apps.start()
    long_job = await client.post(
        "/v1/chat/completions", json=_chat(), headers={**ATTRIBUTION, "X-LUC-Job": "j" * 129}
    )
    assert long_job.status_code == 400
    error = long_job.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "X-LUC-Job: must be 1 to 128 characters, got 129"
    long_agent = await client.post(
        "/v1/chat/completions",
        json=_chat(stream=True),
        headers={**ATTRIBUTION, "X-LUC-Agent": "a" * 65},
    )
    assert long_agent.status_code == 400
    assert long_agent.json()["error"]["message"] == (
        "X-LUC-Agent: must be 1 to 64 characters, got 65"
    )
    # At the limits exactly, the call goes through.
    fine = await client.post(
        "/v1/chat/completions",
        json=_chat(),
        headers={"X-LUC-Job": "j" * 128, "X-LUC-Agent": "a" * 64},
    )
    assert fine.status_code == 200
    assert len(fake_openrouter.chat_calls()) == 1

    # The Python gateway checks the same before calling.
    cache = CatalogCache()
    sink = RecordingSink(pool, cache, IngestSettings())
    gateway = Gateway(Chain([openrouter]), sink, database_catalog(pool, cache))
    with pytest.raises(InvalidRequestError, match="job_id: must be 1 to 128 characters, got 0"):
        await gateway.chat(messages=QUESTION, model=FLASH, job_id="", agent="ORACLE")
    assert len(fake_openrouter.chat_calls()) == 1

    async def recorded() -> bool:  # off the answer's path
        return len(await ledger(db)) == 1

    await _until("the proxied call's usage on the ledger", recorded)
    [entry] = await ledger(db)
    assert (entry["job_id"], entry["agent"]) == ("j" * 128, "a" * 64)
