"""``POST /v1/chat/completions``: OpenAI's chat completions protocol, metered by LUC.

Point any OpenAI SDK at LUC (``base_url=<luc>/v1``, ``api_key=<LUC key of scope
ingest>``) and attribute each call with the ``X-LUC-Job`` and ``X-LUC-Agent`` headers.
LUC reserves the call's estimate under its hard budgets (or answers 402), calls the chain
(its own upstream keys never leave the server), answers as the provider did, and records
the call's usage once, with the reservation id that settles the reservation: durable in
the local spool before the answer's last byte, on the ledger just after, off the answer's
path (when the ledger cannot take it now, it waits in the spool, or is parked for an
operator: the answer is delivered either way; ``service.recording.sink``). Errors have
OpenAI's shape, ``{"error": {"message", "type", "code"}}``, so SDKs raise their usual
exceptions.

Streams are passed through chunk by chunk as they arrive. If the client goes away
mid-stream, LUC keeps reading the upstream stream to its end and records the whole
generation, which is what the provider bills (the usage comes in the last chunk).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Send, TypeEncodersMap
from litestar.utils.helpers import get_enum_string_value

from service.api.deps import LucController, Resources
from service.api.errors import RETRY_AFTER_SECONDS, http_error_handler, unexpected_error_handler
from service.api.params import ANY_QUERY
from service.api.request import OWN_BODY
from service.api.schemas.common import money
from service.api.schemas.proxy import OpenAIError
from service.auth.guard import INGEST
from service.auth.keys import ApiKey
from service.errors import (
    AuthenticationFailedError,
    BudgetExceededError,
    DatabaseUnavailableError,
    GatewayError,
    InvalidRequestError,
    LucError,
    RateLimitedError,
)
from service.gateway.metering import Gateway
from service.gateway.models import CallContext, ChatRequest, StreamHandle
from service.gateway.usage import attribution_problems
from service.ingest.models import MAX_TOKENS
from service.ingest.validate import body_not_json
from service.pricing.catalog import STUB_PROVIDER

log = structlog.get_logger("luc.proxy")

JOB_HEADER = "X-LUC-Job"
AGENT_HEADER = "X-LUC-Agent"
CUSTOMER_HEADER = "X-LUC-Customer"
STUB_HEADER = "X-LUC-Stub"
# Fields LUC sets itself; everything else in the body goes upstream untouched.
_OWN_FIELDS = ("model", "stream")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _documented(description: str) -> ResponseSpec:
    return ResponseSpec(OpenAIError, description=description, generate_examples=False)


def openai_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _code(exc: LucError) -> str:
    """``RateLimitedError`` → ``rate_limited``: a stable, readable error code."""
    name = type(exc).__name__.removesuffix("Error")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


SHOULD_RETRY_HEADER = "x-should-retry"
"""Read by OpenAI's SDKs (Python, Node) before their own rules: ``false`` and they do not
retry, which they otherwise do by default (twice) for every 5xx, 408 and 429."""


def paid_for(exc: LucError) -> bool:
    """Whether a provider was, or may have been, paid for the failed call: an attempt
    answered 2xx that broke (502), cut at the deadline (504), or sent whole and never
    answered. An SDK's retry of it is a new paid call, so LUC tells it not to."""
    return isinstance(exc, GatewayError) and (exc.paid or exc.billed is not None)


def proxy_luc_error(request: Request[Any, Any, Any], exc: LucError) -> Response[Any]:
    headers: dict[str, str] = {}
    if paid_for(exc) or isinstance(exc, AuthenticationFailedError):
        # Only here: a 429, or a 503 before any upstream call, is safe to retry, and the
        # SDK's own backoff (Retry-After honoured) is what its caller expects. A provider
        # refusing LUC's own key is an operator's to fix: retried twice, it failed thrice.
        headers[SHOULD_RETRY_HEADER] = "false"
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, DatabaseUnavailableError):
        headers["Retry-After"] = RETRY_AFTER_SECONDS  # as on every other route
    if exc.status_code >= 500:
        log.warning("proxy_call_failed", error=type(exc).__name__, detail=exc.message)
    return Response(
        openai_error(exc.status_code, exc.message, _code(exc)),
        status_code=exc.status_code,
        headers=headers,
    )


def proxy_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """The framework's errors (the key guard, the body limit, the rate limit) with the
    message and headers LUC's other routes give them (a 413 names the limit, a 429 carries
    Retry-After), in OpenAI's shape; the framework's bare text ("Request Entity Too Large")
    told an SDK's user nothing of the limit."""
    answer = http_error_handler(request, exc)
    status = answer.content.status_code
    return Response(
        openai_error(status, answer.content.detail), status_code=status, headers=answer.headers
    )


def proxy_unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Whatever else fails, as LUC's other routes answer it (logged; 503 with Retry-After
    for the database, 500 for a bug) but in OpenAI's shape: the SDKs read ``error.message``
    from it, and an OpenAI client of LUC's own body showed the whole JSON as its message."""
    answer = unexpected_error_handler(request, exc)
    status = answer.content.status_code
    return Response(
        openai_error(status, answer.content.detail), status_code=status, headers=answer.headers
    )


def _text_header(request: Request[Any, Any, Any], name: str) -> str | None:
    """A header's value as UTF-8 text. SPEC §2 lets ids hold any character (but NUL); a
    client sends them as UTF-8 bytes, which the ASGI server hands over as latin-1 text (one
    character per byte): read as given, "job-é" was stored as "job-Ã©". Bytes that are no
    UTF-8 are refused rather than guessed at (the call is not made), as is a header sent
    twice: which job or customer to bill is not LUC's to pick."""
    values = request.headers.getall(name, None)
    if values is not None and len(values) > 1:
        raise InvalidRequestError(
            f"{name}: sent {len(values)} times; send it once (a call is metered to one job, "
            "agent and customer)",
            status_code=400,
        )
    value = None if values is None else values[0]
    if value is None or value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"{name}: not valid UTF-8 (byte {exc.start + 1} of the value): send the header's "
            "text encoded as UTF-8",
            status_code=400,
        ) from None


def _attribution(request: Request[Any, Any, Any]) -> tuple[str, str, str | None]:
    job = (_text_header(request, JOB_HEADER) or "").strip()
    agent = (_text_header(request, AGENT_HEADER) or "").strip()
    customer = _text_header(request, CUSTOMER_HEADER)  # optional; present and empty is wrong
    customer = None if customer is None else customer.strip()
    missing = [h for h, v in ((JOB_HEADER, job), (AGENT_HEADER, agent)) if not v]
    if missing:
        raise InvalidRequestError(
            f"missing {' and '.join(missing)} header: every call is metered to a job and an "
            f"agent (OpenAI SDK: default_headers={{'{JOB_HEADER}': 'job-42', "
            f"'{AGENT_HEADER}': 'ACHEEVY'}})",
            status_code=400,
        )
    # Checked as the ledger checks the event's job_id and agent, before the provider is
    # paid: usage the ledger would refuse must never be bought.
    if problems := attribution_problems(job, agent, customer):
        header = {"job_id": JOB_HEADER, "agent": AGENT_HEADER, "customer_id": CUSTOMER_HEADER}
        raise InvalidRequestError(
            "; ".join(f"{header[name]}: {problem}" for name, problem in problems.items()),
            status_code=400,
        )
    return job, agent, customer


_WHOLE_FIELDS = {"max_tokens": MAX_TOKENS, "max_completion_tokens": MAX_TOKENS, "n": 128}
"""The body's counts: the output bound (at most the ledger's bound on a count) and how many
answers, each one paid for (at most 128, as OpenAI takes)."""


def _chat_request(raw: bytes, gateway: Gateway) -> tuple[ChatRequest, bool]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise body_not_json(raw, exc) from exc
    except RecursionError:  # msgspec decodes nesting by recursion (service.api.request)
        raise InvalidRequestError(
            "body is not valid JSON: it nests too deeply", status_code=400
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError("body must be a JSON object", status_code=400)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages: required, a non-empty list", status_code=400)
    model = body.get("model") or gateway.default_model
    if not isinstance(model, str):
        raise InvalidRequestError("model: must be a string", status_code=400)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        # As OpenAI refuses it: "yes" or 1 read as false would answer in another shape.
        raise InvalidRequestError("stream: must be a boolean (or null)", status_code=400)
    for name, most in _WHOLE_FIELDS.items():
        value = body.get(name)
        if value is not None and (type(value) is not int or not 1 <= value <= most):
            # As OpenAI refuses them. A hard budget's estimate reads these as whole numbers:
            # n: 4.0 or max_completion_tokens: 2000000.0 beside max_tokens: 100 were left
            # out of it, and went upstream, where a provider may well read them as numbers.
            # Past the ledger's bound on a count, the estimate's money overflowed into a
            # 422 naming estimated_cost_usd, a field the caller never sent.
            raise InvalidRequestError(
                f"{name}: must be a whole number from 1 to {most} (or null)",
                status_code=400,
            )
    forward = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    return ChatRequest(model=model, body=forward), stream is True


def _stub_header(luc: Resources, gateway: Gateway, provider: str | None) -> dict[str, str]:
    """``X-LUC-Stub`` on every answer: ``true`` when the stub answered (no LLM was called;
    recorded at zero, never billed), counted in /metrics by why the stub answered."""
    if provider != STUB_PROVIDER:
        return {STUB_HEADER: "false"}
    cause = "stub_mode" if gateway.chain.heuristic else "fallback"
    luc.metrics.gateway_stub_answers.labels(cause).inc()
    return {STUB_HEADER: "true"}


async def _sse(handle: StreamHandle) -> AsyncIterator[bytes]:
    """The stream as it arrives: what came from upstream together goes on in one write.
    The end (``[DONE]``) only comes once the gateway has made the call's usage durable."""
    async for events, ended in handle.arrivals():
        out = b"".join(event.sse() for event in events)
        if ended:
            out += _end(handle)
        if out:
            yield out


def _end(handle: StreamHandle) -> bytes:
    if handle.error is None:
        return b"data: [DONE]\n\n"
    if handle.error_forwarded:
        return b""
    # The upstream broke off without saying why (or LUC cut it at its deadline: 504): tell
    # the client as OpenRouter would.
    error = {"error": {"code": handle.error.status_code, "message": handle.error.message}}
    return b"data: " + msgspec.json.encode(error) + b"\n\n"


class _PassedThrough(ASGIStreamingResponse):
    """Litestar's streaming response without its task group listening for the client's
    disconnect beside the body: a task, cancel scopes and their checks for every stream,
    0.4 ms of CPU and of latency per streamed call, a quarter of it (paired rounds of
    bench.proxy's calls). Nothing here needs to stop early: the gateway reads the upstream
    to its end whoever listens (its usage comes last), and uvicorn drops what is sent to a
    client that left (a server that raises ``OSError`` instead, as ASGI 2.4 allows, ends
    the sending)."""

    async def send_body(self, send: Send, receive: Receive) -> None:
        iterator = self.iterator
        try:
            async for chunk in iterator:
                body = chunk if isinstance(chunk, bytes) else chunk.encode(self.encoding)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            return  # the client went away
        finally:
            if isinstance(iterator, AsyncGenerator):
                await iterator.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class PassThrough(Stream):
    """A ``Stream`` sent by ``_PassedThrough``."""

    def to_asgi_response(
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        iterator = self.iterator
        if callable(iterator):  # Stream takes a callable too; the proxy gives a generator
            iterator = iterator()
        return _PassedThrough(
            background=self.background or background,
            content_length=0,
            cookies=list(self.cookies) + list(cookies or ()),
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers={**(headers or {}), **self.headers},
            is_head_response=is_head_response,
            iterator=iterator,
            media_type=get_enum_string_value(media_type or self.media_type or MediaType.JSON),
            status_code=self.status_code or status_code,
        )


class ChatCompletionsController(LucController):
    path = "/v1/chat/completions"
    tags = ["gateway"]
    opt = {**INGEST, ANY_QUERY: True, OWN_BODY: True}  # OpenAI SDKs may add their own query
    exception_handlers = {
        LucError: proxy_luc_error,
        HTTPException: proxy_http_error,
        Exception: proxy_unexpected_error,
    }

    @post(
        "/",
        operation_id="createChatCompletion",
        summary="OpenAI-compatible chat completion, metered per job and agent",
        description=(
            "OpenAI's chat completions protocol, streaming or not. Headers X-LUC-Job and "
            "X-LUC-Agent (required) attribute the call; X-LUC-Customer (optional) names the "
            "customer the job is done for. Under hard budgets the call's "
            "estimate is reserved first (prompt and max_tokens at list price), and a budget "
            "without room for it answers 402, as does a customer with credit_stop and no "
            "prepaid credits left; the call's usage settles the reservation. "
            "Upstream failures carry advice in error.message. Every call's usage is "
            "recorded once, also when the client disconnects mid-stream. "
            "X-LUC-Stub: true marks a stub answer (no LLM called, never billed)."
        ),
        status_code=200,
        responses={
            400: _documented(
                "Missing or invalid X-LUC-Job (1-128 characters) or X-LUC-Agent (1-64), an "
                "invalid X-LUC-Customer (1-128), a "
                "body that is no chat request, a model LUC cannot price, or a request the "
                "provider refused"
            ),
            402: _documented(
                "A hard budget has no room for the call's estimate, the customer's prepaid "
                "credits are at zero under credit_stop, or the provider is out of credits"
            ),
            429: _documented("Rate-limited upstream after LUC's retries; see Retry-After"),
            502: _documented("The providers failed (or refused LUC's credentials)"),
            504: _documented(
                "The provider's answer was still arriving at "
                "LUC_GATEWAY_STREAM_DEADLINE_SECONDS and was cut (its tokens are billed)"
            ),
        },
    )
    async def create(
        self, request: Request[Any, Any, Any], luc: NamedDependency[Resources]
    ) -> Response[Any]:
        if luc.gateway is None:
            raise GatewayError("the gateway is not configured in this process")
        job, agent, customer = _attribution(request)
        chat, stream = _chat_request(await request.body(), luc.gateway)
        attributes: dict[str, Any] = {"route": "proxy"}
        key = request.scope.get("luc_key")  # set by the guard
        if isinstance(key, ApiKey):
            attributes["api_key_id"] = key.id
        context = CallContext(job, agent, attributes, customer)
        try:
            if stream:
                handle = await luc.gateway.open_stream(chat, context)
                return PassThrough(
                    _sse(handle),
                    media_type="text/event-stream",
                    headers={
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",
                        "X-LUC-Provider": handle.provider or "",
                        **_stub_header(luc, luc.gateway, handle.provider),
                    },
                )
            result, completion = await luc.gateway.complete(chat, context)
        except BudgetExceededError as exc:
            log.info("proxy_call_refused_by_budget", job_id=job, agent=agent, reason=exc.message)
            raise
        return Response(
            completion.body,
            media_type="application/json",
            headers={
                "X-LUC-Provider": result.provider,
                "X-LUC-Event-Id": result.generation_id,
                "X-LUC-Cost-USD": money(result.cost.usd) or "0",
                **_stub_header(luc, luc.gateway, result.provider),
            },
        )
