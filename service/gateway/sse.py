"""Server-sent events, as OpenAI-compatible providers stream them.

Lines starting with ``:`` are comments (OpenRouter's ``: OPENROUTER PROCESSING``
keep-alives) and never reach a JSON parser; ``data:`` lines are joined until a blank line
ends the event; ``data: [DONE]`` ends the stream. Other fields (``event:``, ``id:``,
``retry:``) are ignored, as the SSE specification allows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    text: str
    """The data (lines joined by ``\\n``), or a comment's text after the ``:``."""
    comment: bool = False


async def sse_messages(lines: AsyncIterator[str]) -> AsyncIterator[SSEMessage]:
    """Messages of an SSE stream, from its lines (without line endings)."""
    data: list[str] = []
    async for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield SSEMessage("\n".join(data))
                data = []
            continue
        if line.startswith(":"):
            yield SSEMessage(line[1:], comment=True)
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a stream cut without the final blank line still delivers its last event
        yield SSEMessage("\n".join(data))
