"""The stub provider: heuristic mode, when no provider key is set (or the chain ends here).

No network: the reply is deterministic (it says it is a stub and echoes the last user
message), token counts are estimated from text length (one token per four characters),
and the answer has the shape of an OpenAI chat completion — streamed too — so callers and
the proxy need no special case. Its usage is metered like any other, with provider
``stub`` and ``usage_source: estimate``, but at a zero price: a stub answer is not an LLM
call and is never billed as one (``PriceQuote.for_provider``). The proxy marks each stub
answer (``X-LUC-Stub: true``), and ``/readyz`` and ``/metrics`` say when LUC runs in this
mode.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec

from service.gateway.models import ChatRequest, Completion, ProviderUsage, StreamEvent
from service.gateway.usage import CHARS_PER_TOKEN, ESTIMATE, estimated_usage, from_openai_usage
from service.pricing.catalog import STUB_PROVIDER

REPLY_PREFIX = "[stub reply: no LLM provider answered this] "
"""True in both ways the stub answers: no provider is configured (heuristic mode), or the
chain's providers failed and it ended here (``cause="fallback"``)."""
CHUNK_CHARS = 16


def stub_reply(request: ChatRequest) -> str:
    """The same request always gets the same reply, cut to ``max_tokens`` if asked."""
    last = ""
    for message in request.messages:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            last = content if isinstance(content, str) else last
    reply = REPLY_PREFIX + (f"You said: {last[:200]}" if last else "Hello.")
    limit = request.max_output_tokens()
    return reply[: limit * CHARS_PER_TOKEN] if limit else reply


def _usage_json(usage: ProviderUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


class StubProvider:
    name: ClassVar[str] = STUB_PROVIDER

    def serves(self, model: str) -> bool:
        return True

    def redacted(self, text: str) -> str:
        return text  # no credentials

    def redacted_bytes(self, content: bytes) -> bytes:
        return content

    def usage_of(self, usage: Any) -> ProviderUsage | None:
        return from_openai_usage(usage, source=ESTIMATE)

    async def usage_after(
        self, generation_id: str, *, patient: bool = False
    ) -> ProviderUsage | None:
        return None

    def _answer(self, request: ChatRequest) -> tuple[str, str, ProviderUsage, int]:
        reply = stub_reply(request)
        usage = estimated_usage(request.prompt_text(), reply)
        return f"stub-{uuid.uuid4().hex}", reply, usage, int(time.time())

    async def complete(self, request: ChatRequest) -> Completion:
        generation_id, reply, usage, created = self._answer(request)
        body = {
            "id": generation_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "provider": "stub",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage_json(usage),
        }
        return Completion(
            provider=self.name,
            body=msgspec.json.encode(body),
            generation_id=generation_id,
            model=request.model,
            text=reply,
            finish_reason="stop",
            usage=usage,
        )

    async def open_stream(self, request: ChatRequest) -> StubStream:
        return StubStream(request, *self._answer(request))


class StubStream:
    def __init__(
        self,
        request: ChatRequest,
        generation_id: str,
        reply: str,
        usage: ProviderUsage,
        created: int,
    ) -> None:
        self.generation_id = generation_id
        self._base = {
            "id": generation_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "provider": "stub",
        }
        self._reply = reply
        self._usage = usage

    def _event(self, **fields: Any) -> StreamEvent:
        data = {**self._base, **fields}
        return StreamEvent(msgspec.json.encode(data), data=data)

    async def events(self) -> AsyncIterator[StreamEvent]:
        pieces = [self._reply[i : i + CHUNK_CHARS] for i in range(0, len(self._reply), CHUNK_CHARS)]
        for index, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            yield self._event(choices=[{"index": 0, "delta": delta, "finish_reason": None}])
        yield self._event(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        yield self._event(choices=[], usage=_usage_json(self._usage))

    async def aclose(self) -> None:
        return None
