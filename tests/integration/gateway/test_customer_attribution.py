"""The customer of a proxied or gateway call: ``X-LUC-Customer`` on the proxy and the
gateway client's ``customer_id`` become the event's ``customer_id`` (and so the job's
customer); a value the ledger would refuse is refused before the provider is paid."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.errors import InvalidRequestError
from service.gateway.metering import Gateway
from service.gateway.openrouter import OpenRouterProvider
from tests.support.fake_openrouter import FakeOpenRouter, Reply
from tests.support.keys import bearer
from tests.support.ledger_truth import STORED_EVENTS, ledger
from tests.support.settings import settings_for
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
CHAT = {"model": FLASH, "messages": [{"role": "user", "content": "Capital of France?"}]}
ATTRIBUTION = {"X-LUC-Job": "job-c", "X-LUC-Agent": "ORACLE"}


@pytest.fixture
async def proxy(
    database_url: str, admin_key: str, fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(
        settings_for(
            database_url,
            OPENROUTER_API_KEY=fake_openrouter.api_key,
            LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
            LUC_GATEWAY_CHAIN="openrouter",
            LUC_DATA_DIR=str(tmp_path / "data"),
        )
    )
    async with AsyncTestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        yield client


async def _event_customers(db: asyncpg.Connection) -> list[tuple[str, str | None]]:
    rows = await db.fetch(f"SELECT job_id, customer_id FROM {STORED_EVENTS} ORDER BY received_at")
    return [(r["job_id"], r["customer_id"]) for r in rows]


async def test_x_luc_customer_names_the_customer_of_the_call_and_of_its_job(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    fake_openrouter.push(Reply(text="Paris."), Reply(text="Paris, again."))
    named = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": "acme"}
    )
    assert named.status_code == 200, named.text
    unnamed = await proxy.post("/v1/chat/completions", json=CHAT, headers=ATTRIBUTION)
    assert unnamed.status_code == 200
    # Recorded just after the answers, possibly in one transaction (one received_at).
    await proxied_usage_recorded(proxy.app)
    customers = {
        r["event_id"]: r["customer_id"]
        for r in await db.fetch(f"SELECT event_id, customer_id FROM {STORED_EVENTS}")
    }
    assert customers == {
        named.headers["x-luc-event-id"]: "acme",
        unnamed.headers["x-luc-event-id"]: None,
    }
    assert await db.fetchval("SELECT customer_id FROM jobs WHERE job_id = 'job-c'") == "acme"
    assert len(await ledger(db)) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("c" * 129, "X-LUC-Customer: must be 1 to 128 characters, got 129"),
        ("", "X-LUC-Customer: must be 1 to 128 characters, got 0"),
        ("  ", "X-LUC-Customer: must be 1 to 128 characters, got 0"),
    ],
)
async def test_a_customer_the_ledger_would_refuse_is_refused_before_any_upstream_call(
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    value: str,
    message: str,
) -> None:
    response = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": value}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert fake_openrouter.chat_calls() == []
    assert await ledger(db) == []


async def test_the_gateway_client_s_customer_id_goes_with_its_usage(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    gateway = make_gateway(openrouter)
    fake_openrouter.push(Reply(text="Paris."), Reply(text="Paris, streamed."))
    question = CHAT["messages"]
    await gateway.chat(
        messages=question, model=FLASH, job_id="job-g", agent="ORACLE", customer_id="acme"
    )
    pieces = [
        p
        async for p in gateway.stream(
            messages=question, model=FLASH, job_id="job-s", agent="ORACLE", customer_id="globex"
        )
    ]
    assert pieces
    assert sorted(await _event_customers(db)) == [("job-g", "acme"), ("job-s", "globex")]
    with pytest.raises(InvalidRequestError, match="customer_id: must be 1 to 128 characters"):
        await gateway.chat(
            messages=question, model=FLASH, job_id="job-g", agent="ORACLE", customer_id="c" * 129
        )
    assert len(fake_openrouter.chat_calls()) == 2


async def test_a_customer_other_than_the_job_s_is_refused_before_any_upstream_call(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # The ledger refuses an event naming another customer than its job's (SPEC §11): a call
    # so named used to reach the provider, be paid for, and leave its usage parked, unbilled.
    fake_openrouter.push(Reply(text="Paris."))
    first = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": "acme"}
    )
    assert first.status_code == 200, first.text
    await proxied_usage_recorded(proxy.app)
    assert await db.fetchval("SELECT customer_id FROM jobs WHERE job_id = 'job-c'") == "acme"

    other = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": "globex"}
    )
    assert other.status_code == 400, other.text
    assert other.json()["error"]["message"] == (
        "customer_id: job 'job-c' belongs to customer 'acme', and this call names customer "
        "'globex'; a job has one customer (send its own, or change it with "
        "PATCH /v1/jobs/job-c first)"
    )
    assert len(fake_openrouter.chat_calls()) == 1
    assert len(await ledger(db)) == 1


async def test_a_new_job_is_its_first_calls_customer_before_that_calls_usage_is_recorded(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    """A call naming another customer right after the first call's answer, before the
    usage writer recorded that call, went to the provider (paid) and its usage was parked,
    billed to no one: the job had no customer yet. Admission gives a new job the customer
    its first call names, at once."""
    fake_openrouter.push(Reply(text="Paris."), Reply(text="Paris, again."))
    first = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": "acme"}
    )
    assert first.status_code == 200, first.text
    # Not waited for: the first call's usage may still be on its way to the ledger.
    other = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": "globex"}
    )
    assert other.status_code == 400, other.text
    assert "job 'job-c' belongs to customer 'acme'" in other.json()["error"]["message"]
    assert len(fake_openrouter.chat_calls()) == 1
    # The same customer again goes ahead; both calls' usage is the job's, acme's.
    again = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={**ATTRIBUTION, "X-LUC-Customer": "acme"}
    )
    assert again.status_code == 200, again.text
    await proxied_usage_recorded(proxy.app)
    assert await _event_customers(db) == [("job-c", "acme"), ("job-c", "acme")]
    assert await db.fetchval(
        "SELECT array_agg(customer_id ORDER BY id) FROM ledger_entries WHERE job_id = 'job-c'"
    ) == ["acme", "acme"]
