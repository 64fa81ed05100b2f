"""A fake OpenRouter: a real HTTP server on loopback speaking the protocol of
/work/shared/reference/openrouter.md, scripted by tests.

- ``POST /api/v1/chat/completions``: ``Authorization: Bearer`` checked (401 ``No auth
  credentials found`` otherwise); an answer with a ``gen-<unix>-<20 alphanumerics>`` id,
  ``provider``, full ``usage`` with ``cost`` as a JSON number, and ``X-Generation-Id``;
  streamed as SSE with ``: OPENROUTER PROCESSING`` keep-alives, the usage chunk in any of
  the three real shapes, ``data: [DONE]``; or a mid-stream error event after some text
  (HTTP 200, no ``[DONE]``); or a scripted HTTP error in the ``{"error": {...}}``
  envelope with headers such as ``Retry-After``; or a ``BrokenAnswer``: HTTP 200 (tokens
  spent, a generation record kept) whose body is no answer, or stalls until the client
  hangs up.
- ``GET /api/v1/models`` (no auth needed): pricing as decimal strings per token.
- ``GET /api/v1/generation?id=``: the generation record, 404 for the first
  ``generation_misses`` look-ups (as the real one is for a moment after a call).

Unknown request fields are ignored. Header names are matched case-insensitively.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self
from urllib.parse import parse_qs

import msgspec

from service.gateway.openrouter import OpenRouterProvider
from service.gateway.upstream import RetryPolicy
from tests.support.loopback import LoopbackServer

# Decimals go out as JSON numbers with exactly their digits, as OpenRouter writes cost.
_encode = msgspec.json.Encoder(decimal_format="number").encode
_ALNUM = string.ascii_letters + string.digits

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base_seconds=0.02, max_retry_after_seconds=5)
"""Retries quick enough for a test against the fakes: the same rules, shorter waits."""


def openrouter_at(http: Any, url: str) -> OpenRouterProvider:
    """OpenRouter's client for a server on loopback at ``url`` (its ``/api/v1`` there),
    retrying fast and never waiting for ``/generation``."""
    return OpenRouterProvider(http, url + "/api/v1", "sk-or-v1-k", FAST_RETRY, generation_delays=())


MODELS = [
    {
        "id": "google/gemini-3.0-flash",
        "canonical_slug": "google/gemini-3.0-flash-001",
        "name": "Google: Gemini 3.0 Flash",
        "created": 1767225600,
        "description": "Fast.",
        "context_length": 1000000,
        "architecture": {
            "modality": "text+image->text",
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tokenizer": "Gemini",
            "instruct_type": None,
        },
        "pricing": {"prompt": "0.0000001", "completion": "0.0000004", "request": "0"},
        "top_provider": {
            "context_length": 1000000,
            "max_completion_tokens": 65536,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature"],
        "default_parameters": None,
        "expiration_date": None,
    },
    {
        "id": "anthropic/claude-sonnet-4.5",
        "canonical_slug": "anthropic/claude-4.5-sonnet-20250929",
        "name": "Anthropic: Claude Sonnet 4.5",
        "created": 1759161676,
        "context_length": 1000000,
        "architecture": {"modality": "text->text", "tokenizer": "Claude"},
        "pricing": {
            "prompt": "0.000003",
            "completion": "0.000015",
            "input_cache_read": "0.0000003",
            "input_cache_write": "0.00000375",
        },
        "top_provider": {"context_length": 1000000, "max_completion_tokens": 64000},
    },
]


def generation_id() -> str:
    return f"gen-{int(time.time())}-{''.join(random.choices(_ALNUM, k=20))}"


def usage(
    prompt: int,
    completion: int,
    *,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    cost: str | None = None,
) -> dict[str, Any]:
    """An OpenRouter usage object; ``cost`` is written as a JSON number."""
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "is_byok": False,
        "prompt_tokens_details": {
            "cached_tokens": cached,
            "cache_write_tokens": cache_write,
            "audio_tokens": 0,
            "video_tokens": 0,
        },
        "cost_details": {"upstream_inference_cost": None},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "image_tokens": 0,
            "audio_tokens": 0,
        },
    }
    if cost is not None:
        body["cost"] = Decimal(cost)
        body["cost_details"]["upstream_inference_cost"] = Decimal(cost)
    return body


@dataclass
class Reply:
    """One scripted successful answer (or a stream that fails after some text)."""

    text: str = "Hello from the fake."
    usage: dict[str, Any] | None = field(default_factory=lambda: usage(12, 3, cost="0.0000036"))
    usage_shape: int = 1
    """1: ``choices: []`` + usage; 2: a choice with ``finish_reason: null`` and an empty
    delta + usage; 3: a repeat of the finish choice + usage."""
    keepalives: int = 2
    chunk_chars: int = 3
    delay: float = 0.0
    """Seconds between stream events."""
    model: str | None = None
    provider: str = "Google"
    id: str | None = None
    error_after: int | None = None
    """Stream only: characters sent before a mid-stream error event (HTTP stays 200)."""
    usage_with_error: bool = False
    usage_after_error: bool = False
    """Stream only: the usage in a chunk of its own after the error event."""
    error_message: str = "Provider disconnected unexpectedly"
    cut_after: int | None = None
    """Stream only: characters sent before the body just ends, cleanly at the HTTP level
    but with no usage, no error event and no ``[DONE]`` (a connection cut behind a proxy)."""
    leading_newlines: bool = False
    """Non-stream only: the body starts with blank lines (seen behind proxies)."""
    think: float = 0.0
    """Seconds the provider takes before it answers at all (its status and headers)."""


@dataclass
class Failure:
    """A scripted HTTP error before any token."""

    status: int
    message: str = "error"
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None


def failure(
    status: int, message: str | None = None, *, retry_after: float | None = None, **metadata: Any
) -> Failure:
    defaults = {
        400: "openai/gpt-nope is not a valid model ID",
        401: "No auth credentials found",
        402: "This request requires more credits, or fewer max_tokens. You requested up to "
        "16384 tokens, but can only afford 3324.",
        429: "Rate limit exceeded: free-models-per-minute.",
        502: "Provider returned error",
        503: "No available provider meets your routing requirements",
    }
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return Failure(status, message or defaults.get(status, "error"), headers, metadata or None)


@dataclass
class BrokenAnswer:
    """A scripted HTTP 200 whose body is no answer: cut short, not JSON, an error object.
    The provider spent (and bills) ``usage`` all the same, kept as a generation record."""

    body: bytes = b'{"id": "gen-cut", "choices": [{"message": {"content": "Hel'
    usage: dict[str, Any] | None = field(default_factory=lambda: usage(40, 8, cost="0.0000072"))
    id: str | None = None
    with_id: bool = True
    """Send ``X-Generation-Id`` (and keep the generation record)."""
    stall: bool = False
    """After the body, send nothing more until the client hangs up (its read timeout)."""


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    client: tuple[str, int] | None = None
    """The caller's address and port: one per TCP connection."""


class FakeOpenRouter:
    prefix = "/api/v1"

    def __init__(self, api_key: str = "sk-or-v1-fake-key") -> None:
        self.api_key = api_key
        self.script: deque[Reply | Failure | BrokenAnswer] = deque()
        self.default = Reply()
        self.calls: list[Call] = []
        self.generations: dict[str, dict[str, Any]] = {}
        self.generation_misses = 0
        self.streams_finished = 0
        self.models = MODELS
        self.server = LoopbackServer(self)

    @property
    def base_url(self) -> str:
        return self.server.root + self.prefix

    def push(self, *items: Reply | Failure | BrokenAnswer) -> None:
        self.script.extend(items)

    def chat_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/chat/completions")]

    @property
    def requests(self) -> list[str]:
        """The path of each request, in order."""
        return [c.path for c in self.calls]

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    # What differs between OpenRouter and Vertex --------------------------------------------------

    def new_id(self) -> str:
        return generation_id()

    def authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.api_key

    def error_body(self, status: int, message: str, metadata: dict[str, Any] | None) -> Any:
        error: dict[str, Any] = {"code": status, "message": message}
        if metadata:
            error["metadata"] = metadata
        return {"error": error, "user_id": "user_2fake"}

    def base_fields(self, reply: Reply, gen_id: str, model: str) -> dict[str, Any]:
        return {
            "id": gen_id,
            "created": int(time.time()),
            "model": reply.model or model,
            "provider": reply.provider,
        }

    def usage_json(self, reply: Reply) -> dict[str, Any] | None:
        return reply.usage

    # ASGI ---------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path, method = scope["path"], scope["method"]
        body: Any = msgspec.json.decode(raw) if raw else None  # the JSON: any shape a client sent
        client = tuple(scope["client"]) if scope.get("client") else None
        self.calls.append(Call(method, path, headers, body, time.monotonic(), client))
        if path == f"{self.prefix}/models" and method == "GET":
            data = {"data": self.models, "total_count": len(self.models), "links": {"next": None}}
            return await _send_json(send, 200, data)
        if not self.authorized(headers):
            return await _send_json(send, 401, self.error_body(401, _NO_AUTH, None))
        if path == f"{self.prefix}/generation" and method == "GET":
            return await self._generation(scope, send)
        if path == f"{self.prefix}/chat/completions" and method == "POST":
            item = self.script.popleft() if self.script else self.default
            if isinstance(item, Failure):
                data = self.error_body(item.status, item.message, item.metadata)
                return await _send_json(send, item.status, data, item.headers)
            model = body.get("model") or "openrouter/auto"
            if isinstance(item, BrokenAnswer):
                return await self._broken(send, receive, item, model)
            if item.think:
                await asyncio.sleep(item.think)
            if body.get("stream"):
                return await self._stream(send, item, model, body)
            return await self._complete(send, item, model, body)
        return await _send_json(send, 404, self.error_body(404, "Not Found", None))

    async def _generation(self, scope: dict[str, Any], send: Any) -> None:
        query = parse_qs(scope["query_string"].decode())
        gen_id = (query.get("id") or [""])[0]
        if self.generation_misses > 0 or gen_id not in self.generations:
            self.generation_misses -= 1
            return await _send_json(send, 404, self.error_body(404, "Generation not found", None))
        return await _send_json(send, 200, {"data": self.generations[gen_id]})

    def _remember(self, reply: Reply, gen_id: str, model: str, streamed: bool) -> None:
        u = reply.usage or {}
        self.generations[gen_id] = {
            "id": gen_id,
            "model": reply.model or model,
            "provider_name": reply.provider,
            "streamed": streamed,
            "cancelled": False,
            "total_cost": u.get("cost", 0),
            "tokens_prompt": u.get("prompt_tokens", 0),
            "tokens_completion": u.get("completion_tokens", 0),
            "native_tokens_prompt": u.get("prompt_tokens", 0),
            "native_tokens_completion": u.get("completion_tokens", 0),
            "native_tokens_reasoning": (u.get("completion_tokens_details") or {}).get(
                "reasoning_tokens", 0
            ),
            "native_tokens_cached": (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
        }

    async def _broken(self, send: Any, receive: Any, item: BrokenAnswer, model: str) -> None:
        headers = [(b"content-type", b"application/json")]
        if item.with_id:
            gen_id = item.id or self.new_id()
            self._remember(Reply(usage=item.usage), gen_id, model, streamed=False)
            headers.append((b"x-generation-id", gen_id.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": item.body, "more_body": item.stall})
        if item.stall:
            while (await receive())["type"] != "http.disconnect":
                pass

    async def _complete(self, send: Any, reply: Reply, model: str, body: Any) -> None:
        gen_id = reply.id or self.new_id()
        self._remember(reply, gen_id, model, streamed=False)
        data = {
            "object": "chat.completion",
            "system_fingerprint": None,
            "service_tier": None,
            **self.base_fields(reply, gen_id, model),
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": reply.text,
                        "refusal": None,
                        "reasoning": None,
                    },
                }
            ],
        }
        if (u := self.usage_json(reply)) is not None:
            data["usage"] = u
        prefix = b"\n\n  " if reply.leading_newlines else b""
        await _send_json(send, 200, data, {"X-Generation-Id": gen_id}, prefix=prefix)

    async def _stream(self, send: Any, reply: Reply, model: str, body: Any) -> None:
        gen_id = reply.id or self.new_id()
        self._remember(reply, gen_id, model, streamed=True)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-generation-id", gen_id.encode()),
                ],
            }
        )

        async def event(data: bytes) -> None:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await send({"type": "http.response.body", "body": data, "more_body": True})

        for _ in range(reply.keepalives):
            await event(b": OPENROUTER PROCESSING\n\n")
        base = {**self.base_fields(reply, gen_id, model), "object": "chat.completion.chunk"}

        def chunk(**fields: Any) -> bytes:
            return b"data: " + _encode({**base, **fields}) + b"\n\n"

        def choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "native_finish_reason": finish,
                "logprobs": None,
            }

        text = reply.text if reply.error_after is None else reply.text[: reply.error_after]
        if reply.cut_after is not None:
            text = text[: reply.cut_after]
        step = reply.chunk_chars
        for i in range(0, len(text), step):
            delta = {"content": text[i : i + step]}
            if i == 0:
                delta["role"] = "assistant"
            await event(chunk(choices=[choice(delta, None)]))
        if reply.cut_after is not None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if reply.error_after is not None:
            fields: dict[str, Any] = {
                "error": {
                    "code": 502,
                    "message": reply.error_message,
                    "metadata": {"error_type": "provider_unavailable"},
                },
                "choices": [choice({"content": ""}, "error")],
            }
            if reply.usage_with_error and reply.usage is not None:
                fields["usage"] = reply.usage
            await event(chunk(**fields))
            if reply.usage_after_error and reply.usage is not None:
                await event(chunk(choices=[], usage=reply.usage))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.streams_finished += 1
            return
        finish = choice({"content": ""}, "stop")
        await event(chunk(choices=[finish]))
        u = self.usage_json(reply)
        if u is not None:
            if reply.usage_shape == 1:
                await event(chunk(choices=[], usage=u))
            elif reply.usage_shape == 2:
                await event(chunk(choices=[choice({}, None)], usage=u))
            else:
                await event(chunk(choices=[finish], usage=u))
        await event(b"data: [DONE]\n\n")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.streams_finished += 1


_NO_AUTH = "No auth credentials found"


async def _send_json(
    send: Any,
    status: int,
    data: Any,
    headers: dict[str, str] | None = None,
    prefix: bytes = b"",
) -> None:
    body = prefix + _encode(data)
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
