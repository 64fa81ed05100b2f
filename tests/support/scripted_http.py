"""A raw HTTP/1.1 server on loopback that writes exactly the bytes a test scripts: for
tests of framing, streaming and connection reuse, which a framework server would smooth
over (it decides itself how answers are framed and written)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

CLOSE = object()
"""In a script: the server closes the connection here."""


@dataclass
class Seen:
    port: int
    """The client's port: one per TCP connection."""
    head: bytes
    body: bytes


@dataclass
class Scripted:
    """Answers each request with the next script: bytes written as given, events waited
    for, ``CLOSE``. Requests are read by their ``Content-Length``, or chunked."""

    scripts: deque[list[object]] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the server has closed a connection."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a request has been read."""
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.lower().split(b"\r\n")
                length = next(
                    (int(x.split(b":")[1]) for x in lines if x.startswith(b"content-length:")),
                    0,
                )
                if any(x.startswith(b"transfer-encoding:") for x in lines):
                    body = b""
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                else:
                    body = await reader.readexactly(length)
                self.seen.append(Seen(port, head, body))
                self.arrived.set()
                for step in self.scripts.popleft():
                    if step is CLOSE:
                        return
                    if isinstance(step, asyncio.Event):
                        await step.wait()
                    else:
                        assert isinstance(step, bytes)
                        writer.write(step)
                        await writer.drain()
        finally:
            writer.close()
            self.closed.set()

    def answer(self, *steps: object) -> None:
        self.scripts.append(list(steps))


def ok(body: bytes, *headers: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body)
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@asynccontextmanager
async def scripted_server() -> AsyncIterator[Scripted]:
    scripted = Scripted()
    listening = await asyncio.start_server(scripted.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    scripted.url = f"http://127.0.0.1:{port}"
    async with listening:
        yield scripted
        listening.close()
