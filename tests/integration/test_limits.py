"""Limits and hostile input: nothing a client sends can break LUC or set its own price.

- a body over LUC_MAX_BODY_BYTES gets 413 before the server has read it (a raw socket
  announces a huge body and sends almost nothing);
- a batch over LUC_MAX_BATCH_EVENTS, a page over 1,000 rows: refused, nothing stored;
- 150 requests per second on a key limited to 30: the excess gets 429 with Retry-After;
- X-Forwarded-For names the address a keyless request counts under only from a proxy
  LUC_FORWARDED_ALLOW_IPS lists;
- fields that try to set cost, price or catalog version are refused per event, and no
  ledger entry ever carries a client-supplied cost;
- keys and webhook secrets never show in the log, in error bodies or in the OpenAPI
  document.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.auth.keys import create_key
from tests.support.events import wire_event
from tests.support.ledger_truth import expected_cost
from tests.support.ports import closed_port
from tests.support.servers import ServerProcess
from tests.support.settings import settings_for

MAX_BODY = 64 * 1024


# 1,000 input and 500 output tokens of gemini-3.0-flash: 1000 × 0.10/M + 500 × 0.40/M
# = 0.0001 + 0.0002 = 0.0003 USD.
event = partial(wire_event, job_id="job-limits")


def _raw_request(port: int, head: bytes, body: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Send ``head`` and a little ``body`` on a raw socket, keep the socket open, and read
    the answer; returns (answer, seconds it took)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer, time.monotonic() - started


@pytest.mark.slow
async def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    server = server_factory(LUC_AUTH="on", LUC_MAX_BODY_BYTES=str(MAX_BODY))
    _, key = await create_key(db, "limits", "admin")
    for path in ("/v1/events/batch", "/v1/events", "/v1/budgets", "/v1/catalog/versions"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 * 1024**3}\r\n\r\n"
        ).encode()
        # 10 GiB announced, 20 bytes sent: only an answer that does not wait for the rest
        # can come back.
        answer, seconds = await asyncio.to_thread(
            _raw_request, server.port, head, b'{"events": [{"id": '
        )
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:300])
        assert seconds < 5, (path, seconds)
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 0


@pytest.mark.slow
async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    server = server_factory(LUC_AUTH="on", LUC_MAX_BODY_BYTES=str(MAX_BODY))
    _, key = await create_key(db, "limits", "ingest")
    head = (
        f"POST /v1/events/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # No length announced: one chunk just over the limit, and no end of body ever.
    chunk = b'{"events": [' + b" " * MAX_BODY
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    answer, seconds = await asyncio.to_thread(_raw_request, server.port, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert seconds < 5, seconds


async def test_a_batch_over_the_limit_is_refused_whole_and_nothing_is_stored(
    database_url: str, db: asyncpg.Connection
) -> None:
    app = create_app(settings_for(database_url, LUC_MAX_BATCH_EVENTS="10"))
    async with AsyncTestClient(app=app) as client:
        over = await client.post(
            "/v1/events/batch", json={"events": [event(f"b-{i}") for i in range(11)]}
        )
        assert over.status_code == 413, over.text
        assert "11 events; the limit is 10" in over.json()["detail"]
        assert await db.fetchval("SELECT count(*) FROM event_keys") == 0

        at = await client.post(
            "/v1/events/batch", json={"events": [event(f"b-{i}") for i in range(10)]}
        )
        assert at.status_code == 200 and at.json()["accepted"] == 10

        for path in ("/v1/jobs", "/v1/unpriced", "/v1/invoices", "/v1/jobs/job-limits/entries"):
            too_big = await client.get(path, params={"limit": 1001})
            assert too_big.status_code == 400, (path, too_big.text)
            assert "limit" in too_big.json()["detail"]
            assert (await client.get(path, params={"limit": 1000})).status_code == 200


def _maximal_event(n: int) -> dict[str, Any]:
    """A valid event with every field at its limit (SPEC §2): strings at their longest,
    every token class at 10^12, a cost of 40 significant digits, 4 KiB of attributes."""
    attributes = {"pad": ""}
    attributes["pad"] = "a" * (4096 - len(json.dumps(attributes, separators=(",", ":"))))
    return {
        "id": f"max-{n:05d}".ljust(128, "x"),
        "occurred_at": "2026-11-20T10:00:00.123456+00:00",
        "job_id": "job-max".ljust(128, "j"),
        "agent": "A" * 64,
        "provider": "p" * 64,
        "model": "m/" + "m" * 254,
        "input_tokens": 10**12,
        "cached_input_tokens": 5 * 10**11,
        "cache_write_tokens": 5 * 10**11,
        "output_tokens": 10**12,
        "reasoning_tokens": 10**12,
        "provider_cost_usd": "9" * 18 + "." + "9" * 22,
        "status": "error",
        "reservation_id": "r" * 128,
        "customer_id": "c" * 128,
        "attributes": attributes,
    }


async def test_a_batch_of_the_most_events_each_at_every_limit_is_taken_at_the_defaults(
    database_url: str, db: asyncpg.Connection
) -> None:
    # The batch limit (5,000 events) and the per-field limits are the contract; the body
    # limit must not refuse what they allow. Compact JSON, as the gateway writes it.
    events = [_maximal_event(n) for n in range(5000)]
    body = json.dumps({"events": events}, separators=(",", ":")).encode()
    assert len(body) > 25_000_000  # over 5,000 bytes an event
    app = create_app(settings_for(database_url))
    async with AsyncTestClient(app=app, timeout=300) as client:
        answer = await client.post(
            "/v1/events/batch", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["accepted"] == 5000, answer.text[:500]
    job = await db.fetchrow(
        "SELECT events, input_tokens, reasoning_tokens FROM rollup_jobs WHERE job_id = $1",
        events[0]["job_id"],
    )
    assert job is not None
    assert dict(job) == {
        "events": 5000,
        "input_tokens": 5000 * 10**12,
        "reasoning_tokens": 5000 * 10**12,
    }


@pytest.mark.slow
async def test_150_requests_a_second_on_a_key_limited_to_30_get_429_for_the_excess(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    # Five times the limit: a loaded machine that takes three seconds to admit a second's
    # requests still fills each window it spreads them over (at 150 against 100, one
    # such run saw no 429 at all).
    limit = 30
    server = server_factory(LUC_AUTH="on", LUC_RATE_LIMIT_PER_SECOND=str(limit))
    _, key = await create_key(db, "gateway", "ingest")
    _, other_key = await create_key(db, "finance", "read")
    rate, seconds = 150, 2
    # (status, Retry-After, RateLimit-Remaining) of each request.
    answers: list[tuple[int, str | None, str | None]] = []

    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    ) as http:
        # Connections and caches; this request takes a slot of the key's window too.
        warm_up = await http.post("/v1/events", json=event("warm-up"))
        assert warm_up.status_code == 201, warm_up.text
        # The limiter counts per wall-clock second: each second's 150 requests leave together
        # at its start, so a loaded machine that admits them over a few hundred milliseconds
        # still puts them in one window (evenly paced, they could spread over two windows
        # and never fill one).
        first_second = math.ceil(time.time()) + 1

        async def one(i: int) -> None:
            # A request's own send time, not a synchronisation.
            await asyncio.sleep(max(0.0, first_second + i // rate - time.time()))
            response = await http.post("/v1/events", json=event(f"rate-{i:04d}"))
            answers.append(
                (
                    response.status_code,
                    response.headers.get("retry-after"),
                    response.headers.get("ratelimit-remaining"),
                )
            )

        await asyncio.gather(*(one(i) for i in range(rate * seconds)))
        # Another key has its own allowance, even in the same second.
        other = await http.get("/v1/agents", headers={"Authorization": f"Bearer {other_key}"})
        assert other.status_code == 200, other.text
        # /metrics counts each refusal as the 429 its client got: counted as a 500 (the
        # limiter's refusal is raised inside the middleware that counts), a client over its
        # rate fired the ingest-failure alert.
        exposition = await http.get("/metrics", headers={"Authorization": f"Bearer {other_key}"})
        served = {
            s.labels["status"]: s.value
            for family in text_string_to_metric_families(exposition.text)
            if family.name == "luc_http_request_duration_seconds"
            for s in family.samples
            if s.name.endswith("_count")
            and s.labels["route"] == "/v1/events"
            and s.labels["method"] == "POST"
        }

    assert len(answers) == rate * seconds
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {201, 429}, set(statuses)
    refused = [a for a in answers if a[0] == 429]
    assert refused, f"150 requests a second on a key limited to {limit}, and no 429"
    assert served == {"201": statuses.count(201) + 1, "429": len(refused)}
    assert all(retry is not None and int(retry) >= 1 for _, retry, _ in refused)
    assert all(remaining == "0" for _, _, remaining in refused)
    # The limiter counts per wall-clock second (a window opens with its first request and
    # closes at the next whole second) and tells each accepted request how many remain in
    # its window: 29, 28, … down to 0 when all 30 are used. Every window hands out
    # consecutive slots from 29 down, so no slot is given more often than the one above
    # it, and the number of windows is how often slot 29 was given. However the machine
    # spreads the requests over windows, these counts hold.
    remaining = Counter(int(r) for status, _, r in answers if status == 201 and r is not None)
    remaining[int(warm_up.headers["ratelimit-remaining"])] += 1
    accepted = statuses.count(201)
    assert sum(remaining.values()) == accepted + 1  # every accepted request was counted
    assert set(remaining) <= set(range(limit))
    windows = remaining[limit - 1]
    assert windows >= 1
    assert [remaining[slot] for slot in range(limit - 1, -1, -1)] == sorted(
        remaining.values(), reverse=True
    ) + [0] * (limit - len(remaining))
    assert accepted + 1 <= limit * windows
    # A refusal only comes from a full window: at least one window used all its slots.
    assert remaining[0] >= 1
    # Exactly the acknowledged events are stored; refused ones are not.
    stored = await db.fetchval("SELECT count(*) FROM event_keys WHERE event_id LIKE 'rate-%'")
    assert stored == accepted


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])  # uvicorn run alone, or its supervisor's
async def test_x_forwarded_for_names_the_client_only_from_a_proxy_the_operator_lists(
    server_factory: Any, workers: str
) -> None:
    # uvicorn believed X-Forwarded-For from 127.0.0.1 unless told otherwise: any process on
    # the host named a new address with each request, and keyless requests far over the
    # per-address limit got 401 after 401, never 429.
    limit = 5
    settings = {"LUC_AUTH": "on", "LUC_RATE_LIMIT_PER_SECOND": str(limit), "LUC_WORKERS": workers}
    direct = server_factory(**settings)
    behind_proxy = server_factory(**settings, LUC_FORWARDED_ALLOW_IPS="127.0.0.1")

    async def keyless(server: ServerProcess, client: Callable[[int], str]) -> tuple[list[int], int]:
        """The statuses of 40 keyless requests, the i-th forwarded for ``client(i)``, and
        the most of them the limit lets through in the seconds they took."""
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            started = time.monotonic()
            statuses = [
                (await http.get("/v1/alerts", headers={"X-Forwarded-For": client(i)})).status_code
                for i in range(40)
            ]
        # The count opens with each wall-clock second: at most ceil(elapsed) + 1 windows.
        allowed = limit * (math.ceil(time.monotonic() - started) + 1)
        assert set(statuses) <= {401, 429}
        return statuses, allowed

    # By default the header names no one: the connection's address is counted.
    statuses, allowed = await keyless(direct, lambda i: f"203.0.113.{i}")
    assert 429 in statuses
    assert statuses.count(401) <= allowed, statuses
    # From a listed proxy, each client it names has an allowance of its own ...
    statuses, _ = await keyless(behind_proxy, lambda i: f"198.51.100.{i}")
    assert statuses == [401] * 40
    # ... and one client's requests share theirs.
    statuses, allowed = await keyless(behind_proxy, lambda i: "198.51.100.200")
    assert 429 in statuses
    assert statuses.count(401) <= allowed, statuses


FORGED_FIELDS: list[tuple[str, Any]] = [
    ("cost_usd", "0"),
    ("price", {"input": "0", "output": "0"}),
    ("catalog_version", 999),
    ("unit_prices", {"input": "0.000001"}),
]


async def test_fields_that_try_to_set_cost_price_or_version_are_refused_per_event(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    events = [event(f"forged-{name}", **{name: value}) for name, value in FORGED_FIELDS]
    # Allowed: what the provider reported, and free-form attributes; neither sets the cost.
    honest = event("honest-1", provider_cost_usd="12.5", attributes={"cost_usd": "0", "price": "0"})
    response = await client.post("/v1/events/batch", json={"events": [*events, honest]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, len(FORGED_FIELDS))
    for result, (name, _) in zip(answer["results"], FORGED_FIELDS, strict=False):
        assert result["status"] == "rejected"
        assert result["reason"].startswith(f"{name}: unknown field"), result

    for name, value in FORGED_FIELDS:
        single = await client.post("/v1/events", json=event(f"single-{name}", **{name: value}))
        assert single.status_code == 422, single.text
        assert single.json()["reason"].startswith(name)

    stored = await db.fetch("SELECT event_id FROM event_keys")
    assert [r["event_id"] for r in stored] == ["honest-1"]
    entries = await db.fetch("SELECT event_id, kind, cost_usd, catalog_version FROM ledger_entries")
    assert len(entries) == 1
    (entry,) = entries
    # 1000 × 0.10/M + 500 × 0.40/M, from the catalog; not 12.5 (reported), not 0 (forged).
    assert entry["cost_usd"] == Decimal("0.0003") == expected_cost(honest)
    assert entry["catalog_version"] == 1
    job = (await client.get("/v1/jobs/job-limits")).json()
    assert (job["cost_usd"], job["provider_cost_usd"]) == ("0.0003", "12.5")


async def test_no_ledger_entry_carries_a_cost_other_than_the_catalog_price(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """Whatever a client reports as provider cost, every entry's cost is token counts times
    catalog prices, computed here from the catalog file."""
    sent = [
        event(f"pc-{i}", input_tokens=1000 * (i + 1), provider_cost_usd=f"{i}.{i}1")
        for i in range(5)
    ]
    answer = (await client.post("/v1/events/batch", json={"events": sent})).json()
    assert answer["accepted"] == 5
    rows = await db.fetch("SELECT event_id, cost_usd FROM ledger_entries ORDER BY event_id")
    assert {r["event_id"]: r["cost_usd"] for r in rows} == {e["id"]: expected_cost(e) for e in sent}
    assert all(
        r["cost_usd"] != Decimal(e["provider_cost_usd"]) for r, e in zip(rows, sent, strict=True)
    )


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """Nothing listens there (and nothing can start to): every delivery fails."""
    with closed_port() as port:
        yield port


@pytest.mark.slow
async def test_keys_and_webhook_secrets_never_show_in_logs_errors_or_the_openapi_document(
    server_factory: Any, db: asyncpg.Connection, admin_key: str, dead_port: int
) -> None:
    server = server_factory(
        LUC_AUTH="on",
        LUC_LOG_LEVEL="debug",
        LUC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        LUC_WEBHOOK_POLL_SECONDS="0.2",
        LUC_WEBHOOK_BACKOFF_BASE_SECONDS="0.2",
    )
    webhook_secret = _secret()
    secrets: list[str] = [admin_key, webhook_secret, webhook_secret.removeprefix("whsec_")]
    bodies: list[str] = []
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=admin, timeout=30) as http:
        created = await http.post("/v1/keys", json={"name": "gateway", "scope": "ingest"})
        assert created.status_code == 201
        ingest_key = created.json()["key"]
        secrets.append(ingest_key)
        revoked = (await http.post("/v1/keys", json={"name": "old", "scope": "read"})).json()
        assert (await http.delete(f"/v1/keys/{revoked['id']}")).status_code == 204
        secrets.append(revoked["key"])

        budget = await http.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-limits",
                "period": "lifetime",
                "limit_usd": "0.0001",
                "webhook_url": f"http://127.0.0.1:{dead_port}/hook",
                "webhook_secret": webhook_secret,
            },
        )
        assert budget.status_code == 201, budget.text
        budget_id = budget.json()["id"]
        bodies.append(budget.text)
        bodies.append((await http.get(f"/v1/budgets/{budget_id}")).text)
        bodies.append((await http.get("/v1/budgets")).text)

        # Failed requests that carry the secrets.
        for key in (revoked["key"], ingest_key + "x", ingest_key):
            refused = await http.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})
            assert refused.status_code in (401, 403)
            bodies.append(refused.text)
        bad_budget = await http.post(
            "/v1/budgets",
            json={
                "scope": "global",
                "period": "week",
                "limit_usd": "1",
                "webhook_secret": webhook_secret,
            },
        )
        assert bad_budget.status_code in (400, 422)
        bodies.append(bad_budget.text)
        bad_patch = await http.patch(
            f"/v1/budgets/{budget_id}",
            json={"webhook_secret": webhook_secret.removeprefix("whsec_")},
        )
        assert bad_patch.status_code in (400, 422)
        bodies.append(bad_patch.text)
        bad_key = await http.post("/v1/keys", json={"name": ingest_key, "scope": "root"})
        assert bad_key.status_code in (400, 422)
        bodies.append(bad_key.text)
        bad_event = await http.post(
            "/v1/events",
            json=event("leak-1", api_key=ingest_key),
            headers={"Authorization": f"Bearer {ingest_key}"},
        )
        assert bad_event.status_code == 422
        bodies.append(bad_event.text)

        # Spend over the budget: an alert whose delivery is attempted (signed) and fails.
        # A budget's alerts go out in order, so the first one's retries hold back the rest.
        spent = await http.post(
            "/v1/events", json=event("spend-1"), headers={"Authorization": f"Bearer {ingest_key}"}
        )
        assert spent.status_code == 201
        deadline = time.monotonic() + 10
        while True:
            alerts = (await http.get("/v1/alerts")).json()["items"]
            if any(a["attempts"] >= 1 for a in alerts):
                break
            assert time.monotonic() < deadline, alerts
            await asyncio.sleep(0.2)
        bodies.append((await http.get("/v1/alerts")).text)
        document = (await http.get("/schema/openapi.json")).text

    server.stop()  # flush everything to the log
    log = server.log_path.read_text()
    assert "webhook" in log  # the failed deliveries were logged
    for secret in secrets:
        assert secret not in log
        assert secret not in document
        for body in bodies:
            assert secret not in body, body


@pytest.mark.slow
async def test_a_client_gone_mid_upload_is_counted_as_499_not_as_a_server_error(
    server_factory: Any,
) -> None:
    """A body cut mid-upload (a gateway's own timeout) made the framework answer 500 to no
    one: counted as a server error on /metrics and in the access log, it fired
    ``LucIngestErrors`` ("usage events are not being recorded")."""
    server = server_factory()
    for path in ("/v1/events", "/v1/events/batch"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + b'{"id": "x"')
            await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for _ in range(50):  # the server notices the closed socket on its own time
            scraped = (await http.get("/metrics")).text
            counts = {
                (s.labels["route"], s.labels["status"]): s.value
                for family in text_string_to_metric_families(scraped)
                for s in family.samples
                if s.name == "luc_http_request_duration_seconds_count"
            }
            if ("/v1/events/batch", "499") in counts:
                break
            await asyncio.sleep(0.1)
    assert counts.get(("/v1/events", "499")) == 1, counts
    assert counts.get(("/v1/events/batch", "499")) == 1, counts
    assert not [k for k in counts if k[1].startswith("5")], counts
