"""Alert webhooks are signed the Standard Webhooks way. LUC's real delivery checks out with
an HMAC-SHA256 verifier written here from the specification (hmac + base64), and with the
``standardwebhooks`` library as a receiver would use it; the library refuses the same
delivery once its body is tampered with, its timestamp is stale or refreshed, its id
changed, or the secret is another one.

The app runs in-process with its dispatcher; the receiver is a real HTTP server on
loopback (listed in ``LUC_WEBHOOK_ALLOWED_HOSTS``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks import webhooks
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.app import create_app
from tests.support.budgets import Delivery, Receiver, opus_event
from tests.support.settings import settings_for
from tests.support.waiting import wait_until

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


def library_verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The ``standardwebhooks`` receiver's check, its clock pinned at ``now`` (Unix
    seconds): it compares the timestamp with ``datetime.now``, which is all it reads."""

    class PinnedClock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> PinnedClock:
            return cls.fromtimestamp(now, tz)

    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "datetime", PinnedClock)
        return Webhook(secret).verify(body, dict(headers))


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


def signed_with(secret: str, delivery: Delivery, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Does ``delivery`` verify with ``secret``, by LUC's check and by the library's, as it
    arrived?"""
    at = delivery.received_at
    return bool(
        verify(secret, delivery.headers, delivery.body, now=at)
        and library_verify(secret, delivery.headers, delivery.body, now=at, monkeypatch=monkeypatch)
    )


async def _received(receiver: Receiver, path: str, within: float = 15) -> Delivery:
    await wait_until(lambda: receiver.received(path), within, f"a webhook at {path}")
    return receiver.received(path)[0]


def _parse_time(text: str) -> datetime:
    assert text.endswith("Z") or "+" in text, f"{text!r} has no offset"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_signature_verifies_independently_and_the_body_has_the_documented_shape(
    app_client: AsyncTestClient[Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
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

    # A receiver using the library accepts LUC's delivery as it arrived, and up to five
    # minutes after its timestamp...
    stamp = int(headers["webhook-timestamp"])
    at = delivery.received_at

    def check(headers: Mapping[str, str], body: bytes, now: float, secret: str = LUC_SECRET) -> Any:
        return library_verify(secret, headers, body, now=now, monkeypatch=monkeypatch)

    assert check(headers, body, at) == payload
    assert check(headers, body, stamp + TOLERANCE_SECONDS) == payload

    # ...and refuses it once anything the signature covers changes: the body, the id...
    tampered = body.replace(b'"spent_usd":"0.6"', b'"spent_usd":"0.1"')
    assert tampered != body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        check(headers, tampered, at)
    other_id = {**headers, "webhook-id": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        check(other_id, body, at)
    # ...or with another secret...
    wrong_key = "whsec_" + base64.b64encode(b"luc-test-signing-key-0123456789?").decode()
    for secret in (BUDGET_SECRET, wrong_key):
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            check(headers, body, at, secret)
    # ...and once it is stale: received more than five minutes after it was signed (or
    # before); nor does a fresh timestamp on the old signature pass (a replay).
    with pytest.raises(WebhookVerificationError, match="too old"):
        check(headers, body, stamp + TOLERANCE_SECONDS + 1)
    with pytest.raises(WebhookVerificationError, match="too new"):
        check(headers, body, stamp - TOLERANCE_SECONDS - 1)
    refreshed = {**headers, "webhook-timestamp": str(stamp + 3600)}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        check(refreshed, body, stamp + 3600)

    async def shows_delivered() -> bool:
        one = (await app_client.get(f"/v1/alerts/{alert['alert_id']}")).json()
        return bool(one["delivery"] == "delivered")

    await wait_until(shows_delivered, 10, "the alert to show as delivered")


async def test_a_budget_with_its_own_secret_is_signed_with_that_secret(
    app_client: AsyncTestClient[Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
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
    default = await _received(receiver, "/default")
    for delivery, secret, other in (
        (own, BUDGET_SECRET, LUC_SECRET),
        (default, LUC_SECRET, BUDGET_SECRET),
    ):
        assert signed_with(secret, delivery, monkeypatch)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            library_verify(
                other,
                delivery.headers,
                delivery.body,
                now=delivery.received_at,
                monkeypatch=monkeypatch,
            )


async def test_a_webhook_given_by_patch_without_any_secret_gets_one_shown_once_and_signed_with(
    database_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No LUC_WEBHOOK_SECRET: creating a budget with a webhook generates its secret; giving
    # an existing budget a webhook must too, or its alerts have nothing to be signed with.
    settings = settings_for(
        database_url,
        LUC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        LUC_WEBHOOK_POLL_SECONDS="0.2",
        LUC_WEBHOOK_BACKOFF_BASE_SECONDS="0.2",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        created = await client.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-patched",
                "period": "lifetime",
                "limit_usd": "0.50",
                "thresholds": [1],
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["webhook_secret"] is None  # no webhook, nothing to sign

        patched = await client.patch(
            f"/v1/budgets/{created.json()['id']}", json={"webhook_url": receiver.url("/later")}
        )
        assert patched.status_code == 200, patched.text
        secret = patched.json()["webhook_secret"]
        assert isinstance(secret, str) and secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

        # Shown once: a later change (a new URL) keeps that secret and does not show it.
        again = await client.patch(
            f"/v1/budgets/{created.json()['id']}", json={"webhook_url": receiver.url("/hook")}
        )
        assert again.status_code == 200, again.text
        assert again.json()["webhook_secret"] is None

        sent = await client.post(
            "/v1/events",
            json=opus_event(
                "patched-1", "0.50", occurred_at="2026-11-20T10:00:00Z", job_id="job-patched"
            ),
        )
        assert sent.status_code in (200, 201, 202), sent.text
        delivery = await _received(receiver, "/hook")
        assert signed_with(secret, delivery, monkeypatch)
