"""What the gateway hands out (``ChatResult``) and what flows between its parts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from service.errors import GatewayError
from service.tokens import TokenCounts, counts_of

DEFAULT_MODEL = "google/gemini-3.0-flash"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens(TokenCounts):
    """A call's tokens as billed (``TokenCounts``), with the short names gateway callers
    read: ``input`` counts cached reads and cache writes, ``output`` counts reasoning."""

    @property
    def input(self) -> int:
        return self.input_tokens

    @property
    def output(self) -> int:
        return self.output_tokens

    @property
    def cached(self) -> int:
        return self.cached_input_tokens

    @property
    def cache_write(self) -> int:
        return self.cache_write_tokens

    @property
    def reasoning(self) -> int:
        return self.reasoning_tokens

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Cost:
    usd: Decimal
    """Priced by LUC's catalog at the time of the call, exactly as the ledger prices it."""
    provider_usd: Decimal | None = None
    """What the provider reported (OpenRouter ``usage.cost``); ``None`` when it says nothing."""
    catalog_version: int | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    cost: Cost
    tokens: Tokens
    provider: str
    """``openrouter``, ``vertex`` or ``stub``: who answered."""
    model: str
    """The catalog model id the call was metered under."""
    generation_id: str
    """The provider's id of the generation; also the usage event's id."""
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderUsage(TokenCounts):
    """A provider's usage block mapped to SPEC §2 token classes (``TokenCounts``)."""

    provider_cost_usd: Decimal | None = None
    source: str = "response"
    """``response`` (the provider's usage), ``generation`` (OpenRouter's /generation
    record) or ``estimate`` (counted from text length: the stub, or no usage arrived)."""
    model: str | None = None
    """The model that answered, when the usage record names it (OpenRouter's
    /generation): what a call known only by its id is priced under."""
    counted: bool = True
    """False: the provider's usage block said what the call cost but gave no token counts
    LUC could read (``usage.counted``); the counts are to be found elsewhere."""

    def tokens(self) -> Tokens:
        return Tokens(**counts_of(self))


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """An OpenAI chat completions body as it goes upstream (``stream`` is the provider's)."""

    model: str
    body: dict[str, Any]

    @property
    def messages(self) -> list[Any]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    def prompt_text(self) -> str:
        """What the provider reads as the prompt's text, for estimates (the stub, budget
        checks): every message's text, the arguments of earlier tool calls, and the tools
        offered (their JSON: a provider writes their schemas into the prompt)."""
        parts: list[str] = []
        for message in self.messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                parts.extend(
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    parts.append(function["arguments"])
        tools = self.body.get("tools")
        if isinstance(tools, list) and tools:
            parts.append(msgspec.json.encode(tools).decode())
        return "\n".join(parts)

    def prompt_images(self) -> int:
        """How many images the prompt holds (``image_url`` content parts)."""
        return sum(
            1
            for message in self.messages
            if isinstance(message, dict) and isinstance(message.get("content"), list)
            for part in message["content"]
            if isinstance(part, dict) and part.get("type") == "image_url"
        )

    def max_output_tokens(self) -> int | None:
        """The output bound: the larger of ``max_tokens`` and ``max_completion_tokens``
        when both are given (both go upstream, and a provider may honour either)."""
        bounds = [
            value
            for value in (self.body.get("max_completion_tokens"), self.body.get("max_tokens"))
            if isinstance(value, int) and not isinstance(value, bool) and value > 0
        ]
        return max(bounds, default=None)

    def choices(self) -> int:
        """How many answers the call asks for (OpenAI's ``n``): each may write up to the
        output bound, and each is paid for. 1 unless ``n`` is a whole number above it."""
        n = self.body.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1

    def fallback_models(self) -> list[str]:
        """The other models OpenRouter may answer with (its ``models`` list, tried in turn
        when the first cannot answer), this request's own model left out."""
        models = self.body.get("models")
        if not isinstance(models, list):
            return []
        return [m for m in models if isinstance(m, str) and m != self.model]


@dataclass(frozen=True, slots=True)
class Completion:
    """One non-streaming upstream answer (HTTP 200: tokens were spent)."""

    provider: str
    body: bytes
    """The answer as the provider sent it, passed through by the proxy."""
    generation_id: str | None
    model: str | None
    text: str
    finish_reason: str | None
    usage: ProviderUsage | None
    error: str | None = None
    """A failure reported inside a 200 answer (partial output, then an error)."""
    generated: str = ""
    """``generated_text`` of every choice of the answer (``text`` when empty), for an
    estimate."""


def generated_text(part: Any) -> str:
    """What a stream's ``delta`` or an answer's ``message`` says the model generated: its
    content, its reasoning and its tool calls (name and arguments). All are output tokens;
    when no usage came, LUC estimates them from this, and content alone (empty for a tool
    call) would bill such a generation at no output."""
    if not isinstance(part, dict):
        return ""
    pieces = [part.get("content"), part.get("reasoning")]
    calls = part.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            pieces += [function.get("name"), function.get("arguments")]
    return "".join(p for p in pieces if isinstance(p, str))


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event from upstream: a ``data:`` JSON chunk or a ``:`` comment."""

    payload: bytes
    """The data text (JSON) or the comment text, exactly as received."""
    data: dict[str, Any] | None = None
    comment: bool = False

    def sse(self) -> bytes:
        if self.comment:
            return b":" + self.payload + b"\n\n"
        if b"\n" in self.payload:
            # Data that came on several ``data:`` lines (joined by newlines) goes on as it
            # came: after one prefix, its second line would be no data to the client.
            return b"".join(b"data: " + line + b"\n" for line in self.payload.split(b"\n")) + b"\n"
        return b"data: " + self.payload + b"\n\n"

    @property
    def generated(self) -> str:
        """All this chunk says the model generated (``generated_text`` of the delta of
        each of its choices: with ``n``, each is generated and paid for)."""
        choices = self.data.get("choices") if self.data else None
        if not isinstance(choices, list):
            return ""
        return "".join(generated_text(c.get("delta")) for c in choices if isinstance(c, dict))

    @property
    def delta(self) -> str:
        """The text this chunk adds (``choices[0].delta.content``), ``""`` if none."""
        choices = self.data.get("choices") if self.data else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        delta = choices[0].get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""


class StreamHandle:
    """A stream being read by the gateway's own task: ``events()`` for its chunks as they
    come (once), ``result()`` for the metered outcome."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[str] = loop.create_future()
        self._done: asyncio.Future[ChatResult | None] = loop.create_future()
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self.provider: str | None = None
        self.error: GatewayError | None = None
        """Why the stream ended early, after its first byte."""
        self.error_forwarded = False
        """Whether the provider's own error event was among the events."""

    async def events(self) -> AsyncIterator[StreamEvent]:
        while (event := await self._queue.get()) is not None:
            yield event

    async def arrivals(self) -> AsyncIterator[tuple[list[StreamEvent], bool]]:
        """The chunks as they come, those that arrived together in one list (for one
        write downstream, not one each), with whether the stream ended after them."""
        while True:
            first = await self._queue.get()
            if first is None:
                yield [], True
                return
            together = [first]
            while not self._queue.empty():
                event = self._queue.get_nowait()
                if event is None:
                    yield together, True
                    return
                together.append(event)
            yield together, False

    async def result(self) -> ChatResult:
        """The metered result; raises the stream's error (after it was metered)."""
        result = await asyncio.shield(self._done)
        if self.error is not None:
            raise self.error
        assert result is not None
        return result


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a call is for, and what travels with its usage event."""

    job_id: str
    agent: str
    attributes: dict[str, Any] = field(default_factory=dict)
    customer_id: str | None = None
    """The customer the job is done for: the event's ``customer_id``."""


def decode_json(raw: bytes | str) -> Any:
    """JSON with every non-integer number as a Decimal (``usage.cost`` stays exact)."""
    return _decoder.decode(raw)


_decoder = msgspec.json.Decoder(float_hook=Decimal)
