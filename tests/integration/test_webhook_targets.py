"""A webhook delivery connects to the address that was checked (SPEC §9): the host is
resolved once per delivery, and a second, different DNS answer (rebinding) is never the
one connected to. Over TLS the certificate is still verified against the host name.

LUC's real delivery function posts to real HTTP(S) servers on loopback addresses; the
resolver is handed in, so the test decides what "DNS" answers on each call. The names are
listed in the allow-list, as an operator would to reach a receiver on a private network.
"""

from __future__ import annotations

import base64
import errno
import ssl
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from service.budgets.delivery import deliver_alert, make_webhook_client
from service.settings import load_settings
from tests.support.budgets import Receiver
from tests.support.certificates import self_signed

SECRET = "whsec_" + base64.b64encode(b"luc-targets-test-key-0123456789!").decode()


def _settings(*allowed: str) -> Any:
    env = {"LUC_WEBHOOK_SECRET": SECRET, "LUC_WEBHOOK_ALLOWED_HOSTS": ",".join(allowed)}
    return load_settings(env).budgets


def _alert() -> dict[str, Any]:
    """An alert row as the dispatcher reads it (SELECT_DELIVERY_DATA)."""
    return {
        "id": uuid.uuid4(),
        "type": "budget.threshold_crossed",
        "budget_id": 7,
        "scope": "job",
        "scope_id": "job-target",
        "period_start": datetime(2026, 11, 20, tzinfo=UTC),
        "threshold": Decimal("0.5"),
        "spent_usd": Decimal("0.60"),
        "limit_usd": Decimal("1.00"),
        "measure": "cost",
        "created_at": datetime.now(UTC),
        "webhook_secret": None,
    }


class Dns:
    """Answers ``first`` to the first question and ``then`` to every later one."""

    def __init__(self, first: list[str], then: list[str]) -> None:
        self.first, self.then = first, then
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        return self.first if len(self.asked) == 1 else self.then


@pytest.fixture
def twins() -> Iterator[tuple[Receiver, Receiver]]:
    """Two receivers on the same port: one on 127.0.0.2, one on 127.0.0.1."""
    for _ in range(20):
        checked = Receiver(host="127.0.0.2")
        checked.start()
        other = Receiver(host="127.0.0.1", port=checked.port)
        try:
            other.start()
        except OSError as exc:  # that port is taken on 127.0.0.1: pick another pair
            checked.stop()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        yield checked, other
        other.stop()
        checked.stop()
        return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


async def test_a_delivery_connects_to_the_checked_address_not_a_second_dns_answer(
    twins: tuple[Receiver, Receiver],
) -> None:
    checked, other = twins
    # "localhost" is 127.0.0.1 to the system resolver as well: a delivery that let the
    # HTTP client look the name up again would land on the other receiver.
    dns = Dns(first=["127.0.0.2"], then=["127.0.0.1"])
    settings = _settings("localhost")
    alert = _alert()
    url = f"http://localhost:{checked.port}/hook"
    async with make_webhook_client(settings) as client:
        assert await deliver_alert(client, url, alert, settings, dns) is None

        assert dns.asked == [("localhost", checked.port)]  # resolved once
        [delivery] = checked.received()
        assert other.received() == []
        assert delivery.headers["host"] == f"localhost:{checked.port}"
        # The signature covers what arrived (LUC signs the body it sent).
        Webhook(SECRET).verify(delivery.body, delivery.headers)
        assert delivery.headers["webhook-id"] == str(alert["id"])

        # The next delivery asks again, and goes where the new answer (checked) points.
        assert await deliver_alert(client, url, alert, settings, dns) is None
    assert len(dns.asked) == 2
    assert len(checked.received()) == 1
    assert len(other.received()) == 1


async def test_a_checked_address_that_refuses_falls_back_to_the_next_checked_one(
    twins: tuple[Receiver, Receiver],
) -> None:
    checked, _ = twins
    # Nothing listens on 127.0.0.3: connection refused, then the second answer.
    dns = Dns(first=["127.0.0.3", "127.0.0.2"], then=[])
    settings = _settings("hooks.test")
    async with make_webhook_client(settings) as client:
        url = f"http://hooks.test:{checked.port}/hook"
        assert await deliver_alert(client, url, _alert(), settings, dns) is None
    assert len(checked.received()) == 1


async def test_an_unlisted_name_answering_a_loopback_address_is_never_contacted(
    twins: tuple[Receiver, Receiver],
) -> None:
    checked, other = twins
    dns = Dns(first=["93.184.216.34", "127.0.0.2"], then=["93.184.216.34"])
    settings = _settings("*")  # any public host
    async with make_webhook_client(settings) as client:
        url = f"http://hooks.example.com:{checked.port}/hook"
        error = await deliver_alert(client, url, _alert(), settings, dns)
    assert error is not None and "resolves to 127.0.0.2" in error
    assert checked.received() == other.received() == []


async def test_over_tls_the_certificate_is_verified_against_the_host_name(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path, "hooks.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver(host="127.0.0.2", tls=server_tls)
    receiver.start()
    try:
        settings = _settings("hooks.test", "other.test")
        trust = ssl.create_default_context(cafile=str(cert))
        async with make_webhook_client(settings, verify=trust) as client:
            dns = Dns(first=["127.0.0.2"], then=["127.0.0.2"])
            url = f"https://hooks.test:{receiver.port}/hook"
            assert await deliver_alert(client, url, _alert(), settings, dns) is None
            [delivery] = receiver.received()
            assert delivery.headers["host"] == f"hooks.test:{receiver.port}"
            assert receiver.server_names == ["hooks.test"]  # SNI: the name, not the address

            # The same server and address under another name: its certificate does not
            # name other.test, so the handshake fails and nothing is posted.
            url = f"https://other.test:{receiver.port}/hook"
            error = await deliver_alert(client, url, _alert(), settings, dns)
        assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error, error
        assert len(receiver.received()) == 1
        assert receiver.server_names == ["hooks.test", "other.test"]
    finally:
        receiver.stop()
