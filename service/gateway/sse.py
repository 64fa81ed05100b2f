"""Server-sent events, as OpenAI-compatible providers stream them.

Lines starting with ``:`` are comments (OpenRouter's ``: OPENROUTER PROCESSING``
keep-alives) and never reach a JSON parser; ``data:`` lines are joined until a blank line
ends the event; ``data: [DONE]`` ends the stream. Other fields (``event:``, ``id:``,
``retry:``) are ignored, as the SSE specification allows. Lines end with CRLF, LF or CR.

``SSEParser`` reads the body's bytes as they arrive, without decoding them to text first
(the JSON decoder takes bytes): the events of one arrival are handed on together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DONE = b"[DONE]"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventTooLarge(ValueError):
    """An event (or one line) past the parser's ``limit``: a provider that never ends its
    line would otherwise grow the worker without bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a stream event larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class SSEMessage:
    data: bytes
    """The data (lines joined by ``\\n``), or a comment's text after the ``:``, as
    received."""
    comment: bool = False


class SSEParser:
    """Feed the body's bytes as they come (``feed``), then ``close`` at its end; each call
    returns the messages completed so far, in order."""

    def __init__(self, limit: int | None = None) -> None:
        """``limit``: the most bytes one event's data (or any one line) may hold; past it
        ``feed`` raises ``EventTooLarge``. ``None``: no bound."""
        self.limit = limit
        self._rest: list[bytes] = []
        """An unfinished line, in the pieces it came in (with a trailing CR, which a LF
        may yet follow)."""
        self._rest_size = 0
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        if b"\n" not in chunk and b"\r" not in chunk and not self._held_cr():
            # The line goes on: kept as a piece, joined once it ends. Joining and splitting
            # it again with each chunk took time quadratic in the line's length, all of it
            # on the event loop: an event of 20 MB (an image inline) stalled every call of
            # the process for 17 s.
            self._rest.append(chunk)
            self._rest_size += len(chunk)
            self._check(self._rest_size)
            return []
        text = b"".join(self._rest) + chunk
        held = b""
        if text.endswith(b"\r"):  # a CRLF cut in two: the line ends with the next chunk
            text, held = text[:-1], b"\r"
        lines = _LINE_END.split(text)
        rest = lines.pop() + held
        self._rest, self._rest_size = [rest], len(rest)
        self._check(self._rest_size)
        return self._lines(lines)

    def _check(self, size: int) -> None:
        if self.limit is not None and size > self.limit:
            raise EventTooLarge(self.limit)

    def _held_cr(self) -> bool:
        return bool(self._rest) and self._rest[-1].endswith(b"\r")

    def close(self) -> list[SSEMessage]:
        """The end of the body: a stream cut without the final blank line still delivers
        its last event."""
        rest, self._rest, self._rest_size = b"".join(self._rest).rstrip(b"\r"), [], 0
        messages = self._lines([rest] if rest else [])
        if self._data:
            messages.append(SSEMessage(b"\n".join(self._data)))
            self._data, self._data_size = [], 0
        return messages

    def _lines(self, lines: list[bytes]) -> list[SSEMessage]:
        messages: list[SSEMessage] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    messages.append(SSEMessage(b"\n".join(data)))
                    data = self._data = []
                    self._data_size = 0
            elif line[0] == 0x3A:  # ":"
                self._check(len(line))
                messages.append(SSEMessage(line[1:], comment=True))
            else:
                name, _, value = line.partition(b":")
                if name == b"data":
                    self._data_size += len(value) + 1  # and the "\n" it is joined with
                    self._check(self._data_size)
                    data.append(value[1:] if value[:1] == b" " else value)
        return messages
