"""Shared by the budget and webhook tests: usage events with hand-priced costs, a hard
budget, and a real webhook receiver on loopback.

Costs are worked out here with Decimal from the AIMS catalog prices (USD per 1M tokens),
copied by hand from ``catalog/aims-v1.json``, never by calling LUC.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg

from service.budgets.models import NewBudget
from service.budgets.service import create_budget
from tests.support.events import wire_event

MILLION = Decimal(1_000_000)

# anthropic/claude-opus-4.6: input 5.00, output 25.00 USD per 1M tokens.
OPUS = "anthropic/claude-opus-4.6"
OPUS_INPUT = Decimal("5.00")
OPUS_OUTPUT = Decimal("25.00")


def opus_cost(input_tokens: int, output_tokens: int = 0) -> Decimal:
    """SPEC §3 for an Opus 4.6 call without cache or reasoning tokens."""
    return (input_tokens * OPUS_INPUT + output_tokens * OPUS_OUTPUT) / MILLION


def opus_tokens_for(usd: str) -> int:
    """Input tokens whose Opus 4.6 price is exactly ``usd`` (at 5 USD per 1M, 200,000 per
    dollar)."""
    tokens = Decimal(usd) * MILLION / OPUS_INPUT
    assert tokens == tokens.to_integral_value(), usd
    return int(tokens)


def opus_event(
    event_id: str,
    usd: str,
    *,
    occurred_at: str,
    job_id: str = "job-1",
    agent: str = "ACHEEVY",
) -> dict[str, Any]:
    """A usage event whose catalog cost is exactly ``usd`` (input tokens only)."""
    tokens = opus_tokens_for(usd)
    assert opus_cost(tokens) == Decimal(usd)
    return wire_event(
        event_id,
        occurred_at=occurred_at,
        job_id=job_id,
        agent=agent,
        model=OPUS,
        input_tokens=tokens,
        output_tokens=0,
    )


def hard_lifetime_budget(scope: str, scope_id: str, limit: str) -> NewBudget:
    """A hard lifetime budget of ``limit`` USD on ``scope`` ``scope_id``, no webhook."""
    return NewBudget(
        scope=scope,
        scope_id=scope_id,
        period="lifetime",
        limit_usd=Decimal(limit),
        thresholds=[Decimal(1)],
        hard=True,
        webhook_url=None,
        webhook_secret=None,
    )


def watched_global_budget(
    limit: str, thresholds: list[Decimal], webhook_url: str, webhook_secret: str | None
) -> NewBudget:
    """A soft lifetime budget of ``limit`` USD on all spend, its alerts sent to
    ``webhook_url``."""
    return NewBudget(
        scope="global",
        scope_id=None,
        period="lifetime",
        limit_usd=Decimal(limit),
        thresholds=thresholds,
        hard=False,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )


async def hard_budget(db: asyncpg.Connection, scope: str, scope_id: str, limit: str) -> int:
    """``hard_lifetime_budget`` created; its id."""
    return (await create_budget(db, hard_lifetime_budget(scope, scope_id, limit))).id


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    received_at: float
    """Unix time, seconds."""
    status: int


# How the receiver answers a request: (status, extra headers), given the path and how
# many requests that path had before this one.
Answer = Callable[[str, int], tuple[int, dict[str, str]]]


def always(status: int) -> Answer:
    return lambda path, seen: (status, {})


@dataclass
class Receiver:
    """A webhook receiver: a real HTTP server on loopback in a thread. The first start binds
    a port the system picks; later starts bind that same port again, so that the receiver
    can go down (connection refused) and come back at the same URL."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 until the first start."""
    answer: Answer = field(default_factory=lambda: always(200))
    tls: ssl.SSLContext | None = None
    """A server context: serve HTTPS with its certificate."""
    deliveries: list[Delivery] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    """The TLS server name (SNI) of each handshake."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        assert self.port, "start the receiver first: its port is picked when it binds"
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{path}"

    def received(self, path: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if path is None or d.path == path]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    seen = sum(1 for d in receiver.deliveries if d.path == self.path)
                    status, extra = receiver.answer(self.path, seen)
                    receiver.deliveries.append(
                        Delivery(self.path, headers, body, time.time(), status)
                    )
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._server.daemon_threads = True
        if self.tls is not None:
            self.tls.sni_callback = self._note_server_name
            # The handshake runs in the handler's thread, on the first read.
            self._server.socket = self.tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _note_server_name(
        self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, context: ssl.SSLContext
    ) -> None:
        with self._lock:
            self.server_names.append(name)

    def stop(self) -> None:
        """Down: the port is closed, so connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None
