"""Alert webhooks are signed the Standard Webhooks way, and the signature checks out with
an HMAC-SHA256 verifier written here from the specification (hmac + base64), not with the
library LUC signs with. Tampering, a wrong secret and a stale timestamp all fail it.

The app runs in-process with its dispatcher; the receiver is a real HTTP server on
loopback (listed in ``LUC_WEBHOOK_ALLOWED_HOSTS``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.conftest import settings_for
from tests.integration.budget_support import Delivery, Receiver, opus_event

# Standard Webhooks secrets: "whsec_" and the base64 of the key bytes.
LUC_SECRET = "whsec_" + base64.b64encode(b"luc-test-signing-key-0123456789!").decode()
BUDGET_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
TOLERANCE_SECONDS = 5 * 60


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """A receiver's check: fresh timestamp, and one ``v1`` signature equal to
    base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id = headers["webhook-id"]
    stamp = headers["webhook-timestamp"]
    if not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{message_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def app_client(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_for(
        database_url,
        LUC_WEBHOOK_SECRET=LUC_SECRET,
        LUC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        LUC_WEBHOOK_POLL_SECONDS="0.2",
        LUC_WEBHOOK_BACKOFF_BASE_SECONDS="0.2",
    )
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


async def _received(receiver: Receiver, path: str, within: float = 15) -> Delivery:
    deadline = time.monotonic() + within
    while not receiver.received(path):
        assert time.monotonic() < deadline, f"no webhook arrived at {path}"
        await asyncio.sleep(0.05)
    return receiver.received(path)[0]


def _parse_time(text: str) -> datetime:
    assert text.endswith("Z") or "+" in text, f"{text!r} has no offset"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_signature_verifies_independently_and_the_body_has_the_documented_shape(
    app_client: AsyncTestClient[Any], receiver: Receiver
) -> None:
    budget = (
        await app_client.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-sig",
                "period": "day",
                "limit_usd": "1.00",
                "thresholds": [0.5],
                "webhook_url": receiver.url("/luc"),
            },
        )
    ).json()
    # 120,000 Opus input tokens at 5.00 USD per 1M = 0.60 USD: past 50 % of 1.00.
    sent = await app_client.post(
        "/v1/events",
        json=opus_event("sig-1", "0.60", occurred_at="2026-11-20T13:14:15Z", job_id="job-sig"),
    )
    assert sent.status_code in (200, 201), sent.text
    delivery = await _received(receiver, "/luc")
    headers, body = delivery.headers, delivery.body

    [alert] = (await app_client.get("/v1/alerts")).json()["items"]
    assert headers["webhook-id"] == alert["alert_id"]
    assert headers["content-type"].startswith("application/json")
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
    assert abs(int(headers["webhook-timestamp"]) - delivery.received_at) < 10

    assert verify(LUC_SECRET, headers, body, now=delivery.received_at)

    payload = json.loads(body)
    assert payload["type"] == "budget.threshold_crossed"
    assert abs(_parse_time(payload["timestamp"]).timestamp() - delivery.received_at) < 60
    data = payload["data"]
    assert data["alert_id"] == alert["alert_id"]
    assert data["budget_id"] == budget["id"]
    assert (data["scope"], data["scope_id"]) == ("job", "job-sig")
    assert _parse_time(data["period_start"]) == datetime(2026, 11, 20, tzinfo=UTC)
    assert data["threshold"] == 0.5
    assert isinstance(data["spent_usd"], str) and Decimal(data["spent_usd"]) == Decimal("0.60")
    assert isinstance(data["limit_usd"], str) and Decimal(data["limit_usd"]) == Decimal("1.00")

    # The same message fails the check once anything it covers changes.
    tampered = body.replace(b'"spent_usd":"0.6"', b'"spent_usd":"0.1"')
    assert tampered != body
    assert not verify(LUC_SECRET, headers, tampered, now=delivery.received_at)
    assert not verify(BUDGET_SECRET, headers, body, now=delivery.received_at)
    wrong_key = "whsec_" + base64.b64encode(b"luc-test-signing-key-0123456789?").decode()
    assert not verify(wrong_key, headers, body, now=delivery.received_at)
    other_id = {**headers, "webhook-id": "00000000-0000-0000-0000-000000000000"}
    assert not verify(LUC_SECRET, other_id, body, now=delivery.received_at)

    # Stale: received more than five minutes after it was signed; nor can a replay pass
    # by putting a fresh timestamp on the old signature.
    stamp = int(headers["webhook-timestamp"])
    assert verify(LUC_SECRET, headers, body, now=stamp + TOLERANCE_SECONDS)
    assert not verify(LUC_SECRET, headers, body, now=stamp + TOLERANCE_SECONDS + 1)
    assert not verify(LUC_SECRET, headers, body, now=stamp - TOLERANCE_SECONDS - 1)
    refreshed = {**headers, "webhook-timestamp": str(stamp + 3600)}
    assert not verify(LUC_SECRET, refreshed, body, now=stamp + 3600)

    deadline = time.monotonic() + 10
    while (await app_client.get(f"/v1/alerts/{alert['alert_id']}")).json()[
        "delivery"
    ] != "delivered":
        assert time.monotonic() < deadline, "the alert never showed as delivered"
        await asyncio.sleep(0.05)


async def test_a_budget_with_its_own_secret_is_signed_with_that_secret(
    app_client: AsyncTestClient[Any], receiver: Receiver
) -> None:
    for job, path, secret in (
        ("job-own", "/own", BUDGET_SECRET),
        ("job-default", "/default", None),
    ):
        response = await app_client.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": job,
                "period": "lifetime",
                "limit_usd": "0.50",
                "thresholds": [1],
                "webhook_url": receiver.url(path),
                **({"webhook_secret": secret} if secret else {}),
            },
        )
        assert response.status_code == 201, response.text
        assert "whsec_" not in response.text  # a given secret is never echoed back
        await app_client.post(
            "/v1/events",
            json=opus_event(f"{job}-1", "0.50", occurred_at="2026-11-20T10:00:00Z", job_id=job),
        )

    own = await _received(receiver, "/own")
    assert verify(BUDGET_SECRET, own.headers, own.body, now=own.received_at)
    assert not verify(LUC_SECRET, own.headers, own.body, now=own.received_at)

    default = await _received(receiver, "/default")
    assert verify(LUC_SECRET, default.headers, default.body, now=default.received_at)
    assert not verify(BUDGET_SECRET, default.headers, default.body, now=default.received_at)
