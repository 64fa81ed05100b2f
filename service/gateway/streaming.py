"""Reading a provider's stream to its end: each chunk goes on to the caller as it comes,
and what the chunks say of the call (its generation id, the model that answered, the text,
the usage, an error the provider sent) is gathered for metering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import GatewayError
from service.gateway.chain import Provider, UpstreamStream
from service.gateway.models import ProviderUsage, StreamHandle
from service.gateway.upstream import error_text, first_choice


@dataclass(frozen=True, slots=True)
class StreamRead:
    """What a stream said of its call, once it ended."""

    generation_id: str | None
    answered_model: str | None
    text: str
    generated: str
    """Content, reasoning and tool calls: what output tokens are estimated from."""
    finish_reason: str | None
    usage: ProviderUsage | None
    """From whichever chunk carried it; ``None`` when none did."""
    error: str | None
    chunks: int
    """Chunks with data: none means no sign that any token was spent."""


async def read_stream(
    provider: Provider, upstream: UpstreamStream, handle: StreamHandle
) -> StreamRead:
    """Pass every chunk to ``handle`` and gather the call's facts; always closes the stream."""
    generation_id = upstream.generation_id
    answered_model: str | None = None
    parts: list[str] = []
    generated: list[str] = []
    finish_reason: str | None = None
    usage: ProviderUsage | None = None
    error: str | None = None
    chunks = 0
    try:
        async for event in upstream.events():
            handle._queue.put_nowait(event)
            data = event.data
            if data is None:
                continue
            chunks += 1
            generation_id = generation_id or text_or_none(data.get("id"))
            answered_model = answered_model or text_or_none(data.get("model"))
            parts.append(event.delta)
            generated.append(event.generated)
            finish_reason = text_or_none(first_choice(data).get("finish_reason")) or finish_reason
            raw_usage = data.get("usage")
            if isinstance(raw_usage, dict):  # whichever chunk carries it, in any shape
                usage = provider.usage_of(raw_usage)
            if data.get("error"):
                error = error_text(data["error"])
                handle.error_forwarded = True
                break  # the provider ends the stream here; some never send [DONE]
    except GatewayError as exc:
        error = exc.detail
    finally:
        await upstream.aclose()
    return StreamRead(
        generation_id,
        answered_model,
        "".join(parts),
        "".join(generated),
        finish_reason,
        usage,
        error,
        chunks,
    )


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
