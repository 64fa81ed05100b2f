"""``RemoteBudgets`` against a scripted LUC on loopback (real HTTP): it fails open only when
LUC cannot be reached or says it is unavailable (503), asks again after a 429's
``Retry-After``, and treats every other unexpected answer as a refusal with LUC's message,
so that no answer lets a call bypass a hard budget. Estimates go out in the money form.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from service.client.budgets import RemoteBudgets
from tests.support.loopback import LoopbackServer
from tests.support.ports import free_port

pytestmark = pytest.mark.asyncio

RESERVED = {"allowed": True, "reservation_id": "r-1", "remaining_usd": "0.5", "budgets": []}


@dataclass
class FakeLuc:
    """Answers each request with the next scripted (status, body, headers)."""

    script: deque[tuple[int, Any, dict[str, str]]] = field(default_factory=deque)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append((scope["method"], scope["path"], json.loads(raw) if raw else None))
        status, body, headers = self.script.popleft() if self.script else (204, None, {})
        data = b"" if body is None else json.dumps(body).encode()
        raw_headers = [(b"content-type", b"application/json")]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def luc() -> Iterator[tuple[FakeLuc, str]]:
    fake = FakeLuc()
    server = LoopbackServer(fake)
    server.start()
    yield fake, server.root
    server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def _reserve(budgets: RemoteBudgets, estimate: str = "0.0004008") -> Any:
    return await budgets.reserve(
        job_id="job-1",
        agent="ACHEEVY",
        model="google/gemini-3.0-flash",
        estimated_cost_usd=Decimal(estimate),
    )


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            422,
            {"status_code": 422, "detail": "estimated_cost_usd: has 41 significant digits"},
            "LUC answered HTTP 422: estimated_cost_usd: has 41 significant digits",
        ),
        (
            400,
            {"error": {"code": "invalid_request", "message": "job_id: empty"}},
            "LUC answered HTTP 400: job_id: empty",
        ),
        (
            401,
            {"error": {"code": "unauthorized", "message": "unknown API key"}},
            "LUC answered HTTP 401: unknown API key",
        ),
        (500, {"error": {"code": "internal", "message": "boom"}}, "LUC answered HTTP 500: boom"),
        (201, {"no": "verdict"}, "LUC answered HTTP 201: no message"),
    ],
)
async def test_an_unexpected_answer_refuses_the_call_with_lucs_message(
    luc: tuple[FakeLuc, str], http: httpx.AsyncClient, status: int, body: Any, reason: str
) -> None:
    fake, root = luc
    fake.script.append((status, body, {}))
    budgets = RemoteBudgets(root, "luc_key", http)
    verdict = await _reserve(budgets)
    assert (verdict.allowed, verdict.reservation_id) == (False, None)
    if status != 201:
        assert verdict.reason == reason
    assert budgets.failed_open == 0


async def test_a_429_is_asked_again_after_its_retry_after(
    luc: tuple[FakeLuc, str], http: httpx.AsyncClient
) -> None:
    fake, root = luc
    limited = (429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
    fake.script.extend([limited, limited, (201, RESERVED, {})])
    verdict = await _reserve(RemoteBudgets(root, "luc_key", http))
    assert (verdict.allowed, verdict.reservation_id) == (True, "r-1")
    assert len(fake.requests) == 3

    # Still limited after the retries: refused, never let through.
    fake.script.extend([limited] * 4)
    verdict = await _reserve(RemoteBudgets(root, "luc_key", http))
    assert (verdict.allowed, verdict.reason) == (False, "LUC answered HTTP 429: rate limited")
    assert len(fake.requests) == 3 + 4


async def test_only_an_unreachable_or_unavailable_luc_lets_calls_through(
    luc: tuple[FakeLuc, str], http: httpx.AsyncClient
) -> None:
    fake, root = luc
    fake.script.append((503, {"error": {"message": "database unavailable"}}, {}))
    budgets = RemoteBudgets(root, "luc_key", http)
    verdict = await _reserve(budgets)
    assert (verdict.allowed, verdict.reservation_id, budgets.failed_open) == (True, None, 1)

    nobody = RemoteBudgets(f"http://127.0.0.1:{free_port()}", "luc_key", http)
    verdict = await _reserve(nobody)
    assert (verdict.allowed, verdict.reservation_id, nobody.failed_open) == (True, None, 1)


async def test_the_estimate_goes_out_in_the_money_form_rounded_up(
    luc: tuple[FakeLuc, str], http: httpx.AsyncClient
) -> None:
    fake, root = luc
    fake.script.append((201, RESERVED, {}))
    # 46 significant digits, 44 places: over the money rule (40 digits) and what LUC holds
    # of an estimate (30 places): rounded up at the 30th place.
    await _reserve(
        RemoteBudgets(root, "luc_key", http), "12.34567890123456789012345678901234567890123456"
    )
    [(_, _, body)] = fake.requests
    assert body["estimated_cost_usd"] == "12.345678901234567890123456789013"


async def test_release_deletes_the_reservation(
    luc: tuple[FakeLuc, str], http: httpx.AsyncClient
) -> None:
    fake, root = luc
    fake.script.append((204, None, {}))
    await RemoteBudgets(root, "luc_key", http).release("r-1")
    assert fake.requests == [("DELETE", "/v1/budgets/reservations/r-1", None)]


async def test_the_calls_customer_goes_to_luc_and_a_credit_refusal_comes_back_as_such(
    luc: tuple[FakeLuc, str], http: httpx.AsyncClient
) -> None:
    fake, root = luc
    reason = "customer 'acme' has no prepaid credits left and credit_stop is set"
    refusal: dict[str, Any] = {
        "allowed": False,
        "reservation_id": None,
        "remaining_usd": None,
        "budgets": [],
    }
    fake.script.append((402, {**refusal, "reason": reason, "refused_by": "credits"}, {}))
    verdict = await RemoteBudgets(root, "luc_key", http).reserve(
        job_id="job-1",
        agent="ACHEEVY",
        model="google/gemini-3.0-flash",
        estimated_cost_usd=Decimal("0.01"),
        customer_id="acme",
    )
    assert (verdict.allowed, verdict.refused_by, verdict.reason) == (False, "credits", reason)
    [(_, _, sent)] = fake.requests
    assert sent["customer_id"] == "acme"
