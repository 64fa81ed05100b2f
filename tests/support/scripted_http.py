"""A raw HTTP/1.1 server on loopback that writes exactly the bytes a test scripts: for
tests of framing, streaming and connection reuse, which a framework server would smooth
over (it decides itself how answers are framed and written)."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

CLOSE = object()
"""In a script: the server closes the connection here."""


@dataclass(frozen=True)
class Forever:
    """In a script: ``data`` written again every ``every`` seconds until the client hangs
    up (an upstream that never ends: keep-alives, or a trickle of tokens)."""

    data: bytes
    every: float = 0.02
    until: float | None = None
    """Seconds after which the server gives up and closes the connection after all (so a
    test whose client never hangs up fails instead of hanging)."""


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
                    elif isinstance(step, Forever):
                        until = None if step.until is None else time.monotonic() + step.until
                        try:
                            while until is None or time.monotonic() < until:
                                writer.write(step.data)
                                await writer.drain()
                                # The fake upstream's pace, not a wait on the test's part.
                                await asyncio.sleep(step.every)
                        except ConnectionError:
                            pass
                        return
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
async def scripted_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[Scripted]:
    """The server on a loopback port; with ``tls`` (a server context), over TLS."""
    scripted = Scripted()
    listening = await asyncio.start_server(scripted.serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    scripted.url = f"{'http' if tls is None else 'https'}://127.0.0.1:{port}"
    async with listening:
        yield scripted
        listening.close()


@contextmanager
def scripted_server_thread() -> Iterator[Scripted]:
    """``scripted_server`` on an event loop of its own thread: for a LUC app under
    ``AsyncTestClient``, which runs the app on its own thread and blocks the test's loop
    while it answers. Scripts of bytes, ``Forever`` and ``CLOSE`` only (an ``asyncio.Event``
    belongs to one loop)."""
    scripted = Scripted()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listen = asyncio.start_server(scripted.serve, "127.0.0.1", 0)
    listening = asyncio.run_coroutine_threadsafe(listen, loop).result(10)
    port = listening.sockets[0].getsockname()[1]
    scripted.url = f"http://127.0.0.1:{port}"
    try:
        yield scripted
    finally:

        async def stop() -> None:
            listening.close()
            serving = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in serving:  # connections still served (a Forever)
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
