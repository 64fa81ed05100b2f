"""The fallback chain: providers tried in the order of ``LUC_GATEWAY_CHAIN``
(default ``vertex,openrouter,stub``).

A provider without credentials is left out (Vertex without a token source, OpenRouter
without ``OPENROUTER_API_KEY``), as is one that does not serve the model (Vertex serves
``LUC_VERTEX_MODELS``, default ``google/``). With no provider left, the stub answers:
heuristic mode, no network call, usage still metered with provider ``stub``.

Each provider first retries in place (see ``upstream``: 429, 408, 5xx, timeouts and
connection errors, ``Retry-After`` honoured, bounded). Then:

falls through to the next provider
    5xx (500, 502, 503, 524, 529…), 408 and timeouts, connection errors, and 429 once
    its retries are spent (or its ``Retry-After`` is longer than
    ``LUC_GATEWAY_MAX_RETRY_AFTER_SECONDS``). The provider is down or busy; another
    one can answer the same request.
stops the call
    401 (LUC's credentials are wrong), 402 (out of credits), unknown model (400 model
    not found, 404), and any other 4xx (the request itself is refused). An operator or
    the caller must fix these; trying elsewhere would only hide them — and would let the
    stub hand out fake answers for a configuration error.

Only failures before the first token fall through. Once a provider answered 200, its
tokens are spent and billed, and a later failure (an error event mid-stream) ends the
call with that provider. A non-stream 200 that is no answer (not JSON, an error object,
a body that stalls) was billed too but gave the caller nothing: its error carries
``billed``, the chain hands it to ``on_billed`` (the gateway meters it) and then raises
or falls through as the error says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import httpx
import structlog

from service.errors import GatewayError, UnknownModelError
from service.gateway.models import ChatRequest, Completion, ProviderUsage, StreamEvent
from service.gateway.network import LoopTransport
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.stub import StubProvider
from service.gateway.upstream import METER_ATTEMPT, RetryPolicy
from service.gateway.vertex import VertexProvider
from service.pricing.catalog import STUB_PROVIDER
from service.settings import Settings

log = structlog.get_logger("luc.gateway")

T = TypeVar("T")

OnBilled = Callable[["Provider", GatewayError], Awaitable[None]]
"""Meters an attempt that a provider answered 2xx but that failed (``error.billed``)."""


class UpstreamStream(Protocol):
    @property
    def generation_id(self) -> str | None: ...

    def events(self) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    @property
    def name(self) -> str: ...

    def serves(self, model: str) -> bool: ...

    def usage_of(self, usage: Mapping[str, Any]) -> ProviderUsage | None:
        """The call's usage from the provider's ``usage`` object; ``None`` when it holds no
        readable counts (the call is then billed as one whose usage is unknown)."""

    def redacted(self, text: str) -> str:
        """``text`` with LUC's credentials for the provider blanked."""

    def redacted_bytes(self, content: bytes) -> bytes:
        """What the provider sent, relayed as sent but for LUC's credentials, blanked."""

    async def usage_after(
        self, generation_id: str, *, patient: bool = False
    ) -> ProviderUsage | None:
        """The provider's record of a generation, asked by its id (None: none kept, or not
        found); ``patient``: no caller waits (a call a dead process held), so look longer."""

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def open_stream(self, request: ChatRequest) -> UpstreamStream: ...


class Chain:
    """Providers in order; ``complete`` and ``open_stream`` walk them as the module says."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers: list[Provider] = list(providers) or [StubProvider()]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    @property
    def heuristic(self) -> bool:
        """Only the stub answers: no real call is ever made."""
        return all(p.name == STUB_PROVIDER for p in self.providers)

    async def complete(
        self, request: ChatRequest, on_billed: OnBilled | None = None
    ) -> tuple[Provider, Completion]:
        return await self._walk(request, lambda p: p.complete(request), on_billed)

    async def open_stream(
        self, request: ChatRequest, on_billed: OnBilled | None = None
    ) -> tuple[Provider, UpstreamStream]:
        return await self._walk(request, lambda p: p.open_stream(request), on_billed)

    async def _walk(
        self,
        request: ChatRequest,
        call: Callable[[Provider], Awaitable[T]],
        on_billed: OnBilled | None,
    ) -> tuple[Provider, T]:
        candidates = [p for p in self.providers if p.serves(request.model)]
        if not candidates:
            raise UnknownModelError(
                f"no provider of the chain ({', '.join(self.names)}) serves {request.model!r}",
                advice="add openrouter to LUC_GATEWAY_CHAIN or the model's prefix to "
                "LUC_VERTEX_MODELS",
            )
        failures: list[str] = []
        paid = False
        for provider in candidates:

            async def meter(error: GatewayError, provider: Provider = provider) -> None:
                nonlocal paid
                paid = True
                if on_billed is not None:
                    await on_billed(provider, error)

            # For the attempts the provider's own retries leave behind (``upstream``).
            metering = METER_ATTEMPT.set(meter)
            try:
                return provider, await call(provider)
            except GatewayError as exc:
                if exc.billed is not None:
                    # Before anything else: the next provider is paid again, and this
                    # attempt's usage must not be lost (SPEC §8).
                    await meter(exc)
                if not exc.falls_through or provider is candidates[-1]:
                    # The caller's SDK must not ask again on its own: a new paid call.
                    exc.paid = paid
                    if failures:
                        exc.message = f"{exc.message} [earlier: {'; '.join(failures)}]"
                        exc.args = (exc.message,)
                    raise
                failures.append(f"{provider.name}: {exc.detail}")
                log.warning(
                    "provider_failed_falling_through",
                    provider=provider.name,
                    error=type(exc).__name__,
                    detail=exc.detail,
                )
            finally:
                METER_ATTEMPT.reset(metering)
        raise AssertionError("unreachable: the last candidate raises or answers")


def build_chain(
    settings: Settings,
    *,
    openrouter_http: httpx.AsyncClient | None = None,
    vertex_http: httpx.AsyncClient | None = None,
) -> Chain:
    """The chain ``settings`` describe; a provider needs its credentials and a client."""
    gateway = settings.gateway
    retry = RetryPolicy(
        max_retries=gateway.max_retries,
        backoff_base_seconds=gateway.backoff_base_seconds,
        max_retry_after_seconds=gateway.max_retry_after_seconds,
        answer_deadline_seconds=gateway.stream_deadline_seconds,
        max_answer_bytes=gateway.max_answer_bytes,
    )
    providers: list[Provider] = []
    for name in gateway.chain:
        if name == "vertex" and gateway.vertex_configured and vertex_http is not None:
            assert gateway.vertex_url is not None
            providers.append(
                VertexProvider(
                    vertex_http,
                    gateway.vertex_url,
                    retry,
                    access_token=gateway.vertex_access_token,
                    token_command=gateway.vertex_token_command,
                    model_prefixes=gateway.vertex_models,
                )
            )
        elif name == "openrouter" and gateway.openrouter_api_key and openrouter_http is not None:
            providers.append(
                OpenRouterProvider(
                    openrouter_http,
                    settings.openrouter.base_url,
                    gateway.openrouter_api_key,
                    retry,
                    http_referer=gateway.http_referer,
                    app_title=gateway.app_title,
                )
            )
        elif name == "stub":
            providers.append(StubProvider())
    chain = Chain(providers)
    if chain.heuristic:
        log.warning(
            "gateway_heuristic_mode",
            detail="no provider credentials (OPENROUTER_API_KEY, LUC_VERTEX_*): the stub "
            "answers every call, without network; usage is recorded with provider 'stub' "
            "at zero cost (never billed), each answer carries X-LUC-Stub: true",
        )
    return chain


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing a provider sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class UpstreamClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps no cookies: every caller's calls share it, and
    a cookie one answer set (a CDN's) is no business of the next caller's call. Keeping
    them also cost about 40 µs an answer: httpx builds urllib's request and response
    objects to read ``Set-Cookie`` even when there is none."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("the upstream client keeps no cookies")


def upstream_client(timeout_seconds: float, max_connections: int = 100) -> httpx.AsyncClient:
    """One long-lived client per upstream: explicit timeouts (the read timeout bounds the
    wait for each next chunk of a stream) and connection limits; no redirects, no cookies.
    httpx's own transport (httpcore): a hand-written HTTP/1.1 client measured about 0.45 ms
    less CPU a call, but parsing a provider's answers is that library's job, not LUC's. Its
    bytes go over the loop's own sockets (``gateway.network``), not anyio's streams."""
    return UpstreamClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_seconds, connect=10.0, pool=30.0),
        transport=LoopTransport(
            httpx.Limits(max_connections=max_connections, max_keepalive_connections=20)
        ),
    )
