"""Reading a provider's stream to its end: each chunk goes on to the caller as it comes,
and what the chunks say of the call (its generation id, the model that answered, the text,
the usage, an error the provider sent) is gathered for metering."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from service.errors import GatewayError
from service.gateway.chain import Provider, UpstreamStream
from service.gateway.models import ProviderUsage, StreamHandle
from service.gateway.upstream import error_text, first_choice
from service.gateway.usage import merged

AFTER_ERROR_SECONDS = 2.0
"""How long a stream is read on after the provider's error, for the usage that may follow
it: the provider has ended the answer, so the caller waits no longer than this."""


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
    cut: bool = False
    """Cut at the deadline: the provider answered, so the call is billed even without
    chunks."""
    cancelled: bool = False
    """Its reading was cancelled (shutdown): billed likewise, and the task is to end."""
    billed: bool = False
    """Broken off by an error that says the answer was paid for (``GatewayError.billed``:
    an event past LUC's size limit), billed likewise even without chunks."""


async def read_stream(
    provider: Provider,
    upstream: UpstreamStream,
    handle: StreamHandle,
    deadline_seconds: float | None = None,
) -> StreamRead:
    """Pass every chunk to ``handle`` and gather the call's facts; always closes the stream.

    A stream still going after ``deadline_seconds`` is cut (``StreamRead.cut``); one whose
    reading is cancelled (LUC shutting down past its grace period) ends the same way, with
    ``StreamRead.cancelled``: in both the provider began answering and is paid, so what
    was read so far is returned for metering instead of lost with the task."""
    generation_id = upstream.generation_id
    answered_model: str | None = None
    parts: list[str] = []
    generated: list[str] = []
    finish_reason: str | None = None
    usage: ProviderUsage | None = None
    error: str | None = None
    chunks = 0
    cut = cancelled = paid = after_error = False
    deadline = asyncio.timeout(deadline_seconds)
    try:
        async with deadline:
            async for event in upstream.events():
                relayed = provider.redacted_bytes(event.payload)
                handle._queue.put_nowait(
                    event if relayed is event.payload else replace(event, payload=relayed)
                )
                data = event.data
                if data is None:
                    continue
                chunks += 1
                generation_id = generation_id or text_or_none(data.get("id"))
                answered_model = answered_model or text_or_none(data.get("model"))
                parts.append(event.delta)
                generated.append(event.generated)
                finish_reason = (
                    text_or_none(first_choice(data).get("finish_reason")) or finish_reason
                )
                raw_usage = data.get("usage")
                # Whichever chunk carries it, in any shape; one whose counts cannot be read
                # (its cost alone: ``ProviderUsage.counted``) keeps those read before it.
                if isinstance(raw_usage, dict):
                    usage = merged(usage, provider.usage_of(raw_usage))
                if data.get("error") and not after_error:
                    error = provider.redacted(error_text(data["error"]))
                    handle.error_forwarded = True
                    # The provider ends the stream here, but its usage may come after the
                    # error, in a chunk of its own (read to here, it was lost, and the call
                    # billed on an estimate when the provider's record was not found in
                    # time); some providers never send [DONE]: read on a little only.
                    after_error = True
                    tail = asyncio.get_running_loop().time() + AFTER_ERROR_SECONDS
                    when = deadline.when()
                    deadline.reschedule(tail if when is None else min(when, tail))
    except GatewayError as exc:
        if not after_error:  # after one, the stream's end without [DONE] is no news
            error = exc.detail
        paid = exc.billed is not None
    except TimeoutError:
        if not deadline.expired():  # not the deadline's (the upstream's come as GatewayError)
            raise
        if not after_error:  # after an error, the stream's end was waited for long enough
            cut = True
            error = f"the stream went on past LUC's deadline of {deadline_seconds:g} s and was cut"
    except asyncio.CancelledError:
        # Swallowed here only to meter what was read; the caller cancels itself again.
        cancelled = True
        error = "LUC shut down before the stream ended"
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
        cut,
        cancelled,
        paid,
    )


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
