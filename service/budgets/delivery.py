"""Webhook delivery from the alert outbox: signed, retried with backoff, at least once.

The dispatcher runs inside every LUC process. It claims due rows with ``FOR UPDATE SKIP
LOCKED`` and a lease, posts each alert signed the Standard Webhooks way (``webhook-id`` is
the alert id, stable across retries, so receivers can drop repeats), and records the
outcome. A failure waits ``base·2^(attempt−1)`` seconds (capped, with jitter) before the
next attempt; past the retry window, or at once when the receiver answers 410 Gone, the
alert is marked dead and can be re-sent.

A budget's alerts (a customer's credit alerts) go out one at a time, in the order they were
raised (``queries.CLAIM_DUE``): its 100 % alert is not sent until its 50 % one is
delivered or dead. One round claims at most one alert per budget, so the round's attempts
can run side by side.

Each attempt resolves the target once and connects to an address that was checked
(``targets.resolve_target``): the URL is rewritten to that address, and the original host
goes in the Host header and, over TLS, in the SNI, so the certificate is still verified
against the host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec
import structlog
from standardwebhooks.webhooks import Webhook

from service.budgets import queries
from service.budgets.service import get_alert
from service.budgets.targets import Resolver, Target, resolve_target, system_resolver
from service.db import CONNECTION_ERRORS, Connection
from service.db.outage import OutageLog
from service.errors import InvalidRequestError, NotFoundError
from service.settings import BudgetSettings
from service.wire import instant_text, money_text, number_json

log = structlog.get_logger("luc.webhooks")

EVENT_TYPE = "budget.threshold_crossed"
CLAIM_BATCH = 20
GONE = "HTTP 410: the receiver wants no more webhooks (Gone), so it is not retried"
"""A 410 Gone answer: Standard Webhooks says the sender stops sending to the endpoint, so
the delivery is dead at once instead of retried through its window (it can be re-sent)."""


def webhook_body(alert: Any) -> bytes:
    """The JSON body of one alert; identical on every attempt."""
    if alert["type"] != EVENT_TYPE:
        return _credit_body(alert)
    return msgspec.json.encode(
        {
            "type": EVENT_TYPE,
            "timestamp": instant_text(alert["created_at"]),
            "data": {
                "alert_id": str(alert["id"]),
                "budget_id": alert["budget_id"],
                "scope": alert["scope"],
                "scope_id": alert["scope_id"],
                "period_start": instant_text(alert["period_start"]),
                # A threshold is a fraction of the limit, not money: a JSON number.
                "threshold": number_json(alert["threshold"]),
                "spent_usd": money_text(alert["spent_usd"]),
                "limit_usd": money_text(alert["limit_usd"]),
                # What the budget counts: spent and limit are figures of it.
                "measure": alert["measure"],
            },
        }
    )


def _credit_body(alert: Any) -> bytes:
    """A customer's credit alert (SPEC §12): its balance when it fired, and the customer's
    low balance then (null when none is set)."""
    low = alert["low_balance_usd"]
    return msgspec.json.encode(
        {
            "type": alert["type"],
            "timestamp": instant_text(alert["created_at"]),
            "data": {
                "alert_id": str(alert["id"]),
                "customer_id": alert["customer_id"],
                "balance_usd": money_text(alert["balance_usd"]),
                "low_balance_usd": None if low is None else money_text(low),
            },
        }
    )


def signed_headers(secret: str, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers: id, timestamp, ``v1,<base64 HMAC-SHA256>``."""
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=now, data=body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "LUC-webhooks/1",
    }


def make_webhook_client(
    settings: BudgetSettings, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The one client for webhook targets: no redirects (a redirect could lead past the
    allow-list), explicit timeouts and limits, and no connection kept alive.

    Requests go to an address, not a name (``post_to_target``), and a connection pool
    knows a connection by address only: a kept TLS connection, verified for one host name,
    could carry the request of another host behind the same address (a shared CDN edge)
    without its certificate ever being checked. Alerts are rare; a handshake each is cheap.
    """
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(settings.timeout_seconds),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
        verify=verify,
    )


async def post_to_target(
    client: httpx.AsyncClient, target: Target, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to the checked addresses of ``target``, in order, until one connects."""
    url = httpx.URL(target.url)
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    # The Host header as the URL had it (with a non-default port), not the address.
    host_header = url.netloc.decode("ascii")
    failure: httpx.ConnectError | None = None
    for address in target.addresses:
        request = client.build_request(
            "POST",
            url.copy_with(host=str(address)),
            content=body,
            headers={**headers, "host": host_header},
            extensions=extensions,
        )
        try:
            # Streamed and closed unread: the status is the receiver's whole answer, and a
            # body read to its end would let a receiver hold the attempt (and memory) for
            # as long as it keeps sending.
            response = await client.send(request, stream=True)
            await response.aclose()
            return response
        except httpx.ConnectError as exc:
            failure = exc  # the next checked address, if there is one
    assert failure is not None  # a Target has at least one address
    raise failure


def backoff_seconds(attempt: int, settings: BudgetSettings) -> float:
    """Delay before the next attempt, a duration: exponential, capped, with jitter."""
    growth: float = 2.0 ** (attempt - 1)
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * growth)
    return ceiling * random.uniform(0.5, 1.0)


class Dispatcher:
    """Delivers due alerts until stopped; ``wake()`` skips the wait after new alerts."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: BudgetSettings,
        client: httpx.AsyncClient,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.client = client
        self.resolve = resolve
        self._wake = asyncio.Event()
        self._stopping = False
        # Polled every LUC_WEBHOOK_POLL_SECONDS: an outage is said once, not once a round.
        self.outage = OutageLog(log, "dispatcher")

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                delivered = await self.deliver_due()
            except CONNECTION_ERRORS as exc:
                self.outage.failed(exc)
                delivered = 0
            except Exception:
                log.exception("dispatcher_failed")
                delivered = 0
            else:
                self.outage.succeeded()
            if delivered:
                continue  # there may be more due right away
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def deliver_due(self) -> int:
        """Claim and attempt one round of due deliveries; returns how many were claimed."""
        lease = self.settings.timeout_seconds + 30
        async with self.pool.acquire() as conn:
            claimed = await conn.fetch(
                queries.CLAIM_DUE, CLAIM_BATCH, lease, float(self.settings.retry_window_seconds)
            )
            if not claimed:
                return 0
            alerts = {
                str(r["id"]): r
                for r in await conn.fetch(
                    queries.SELECT_DELIVERY_DATA, [r["alert_id"] for r in claimed]
                )
            }
        await asyncio.gather(*(self._attempt(row, alerts[str(row["alert_id"])]) for row in claimed))
        return len(claimed)

    async def _attempt(self, row: Any, alert: Any) -> None:
        alert_id = str(row["alert_id"])
        # The webhook its budget (or customer) has now; the one it was raised with when
        # that webhook has since been removed (the alert is still owed to someone).
        url = alert["current_webhook_url"] or row["webhook_url"]
        try:
            error = await deliver_alert(self.client, url, alert, self.settings, self.resolve)
        except Exception as exc:
            # Whatever a target does (a name the resolver chokes on, a bug), the attempt
            # is a failed one: backed off and, past the retry window, dead, rather than
            # left leased, to be claimed again every lease forever.
            log.exception("webhook_attempt_raised", alert_id=alert_id)
            error = f"{type(exc).__name__}: {exc}"
        async with self.pool.acquire() as conn:
            if error is None:
                await conn.execute(queries.MARK_DELIVERED, row["alert_id"])
                log.info("webhook_delivered", alert_id=alert_id, attempt=row["attempts"])
                return
            delay = backoff_seconds(row["attempts"], self.settings)
            await conn.execute(
                queries.MARK_FAILED, row["alert_id"], error[:500], delay, error == GONE
            )
            log.warning(
                "webhook_failed", alert_id=alert_id, attempt=row["attempts"], error=error[:200]
            )


async def deliver_alert(
    client: httpx.AsyncClient,
    url: str,
    alert: Any,
    settings: BudgetSettings,
    resolve: Resolver = system_resolver,
) -> str | None:
    """One attempt at posting ``alert`` to ``url``; the error text, or None on a 2xx answer.

    The target is checked (and resolved, once) now, not when the budget was saved: the
    allow-list or the name's addresses may have changed since.
    """
    secret = alert["webhook_secret"] or settings.webhook_secret
    if not secret:
        return "no webhook secret: set LUC_WEBHOOK_SECRET" + (
            " or the budget's webhook_secret" if alert["budget_id"] is not None else ""
        )
    try:
        target = await resolve_target(url, settings.allowed_hosts, resolve)
    except InvalidRequestError as exc:
        return exc.message
    body = webhook_body(alert)
    headers = signed_headers(secret, str(alert["id"]), body, datetime.now(UTC))
    try:
        # One deadline for the whole attempt: httpx's timeouts bound each read, so a
        # receiver sending a header line every few seconds would never time out, and the
        # dispatcher's round (every other alert with it) would wait on it for ever.
        async with asyncio.timeout(settings.timeout_seconds):
            response = await post_to_target(client, target, body, headers)
    except TimeoutError:
        return f"timed out: no answer within {settings.timeout_seconds:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status_code < 300:
        return None
    if response.status_code == 410:
        return GONE
    return f"HTTP {response.status_code}"


async def redeliver(conn: Connection, alert_id: str, retry_window_seconds: int) -> None:
    """Put a dead (or delivered) alert back in the outbox for another round."""
    alert = await get_alert(conn, alert_id)  # no such alert: "does not exist", as GET says
    result = await conn.execute(queries.REDELIVER, alert.id, float(retry_window_seconds))
    if result == "UPDATE 0":
        raise NotFoundError(f"alert {alert_id!r} has no webhook delivery")
