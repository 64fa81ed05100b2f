"""The upstream client's sockets: httpcore's network backend on the event loop's own
transports (``loop.create_connection``), in place of the anyio backend httpx uses by
default.

httpcore keeps HTTP (h11's parsing, the pool, its ``trace`` events, which tell an attempt
sent whole from one never sent: ``upstream._Delivery``); only the reads and writes of bytes
are done here. anyio's stream gives up the loop once more on every write (a checkpoint),
stops and restarts the transport's reading around every read (two changes of the loop's
watch on the socket each time), and opens a cancel scope for each read's and write's
timeout. A proxied call makes a few of each; here a read takes what the transport has
already received, and a timeout is one timer on the loop. Measured against the fake
provider, alternated: 590 µs of CPU a call against 755 in a loop of calls; through LUC at
one client, p50 2.10 ms against 2.30 (plain) and 2.88 against 3.77 (streamed), and 20 %
more calls/s at 16 clients (docs/performance.md).

What a read or a write means is anyio's: a write returns once the kernel holds every byte
(the transport's write buffer limit is 0, so a write that the kernel could not take whole
waits for the rest to drain; over TLS, once TLS has encrypted it and handed it to that
transport), and a read returns what has arrived, up to ``max_bytes``, or ``b""`` once the
peer has closed its side. Failures are httpcore's exceptions, which httpx maps to its own.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
"""What httpcore passes as ``socket_options`` (its ``SOCKET_OPTION``)."""

READ_AHEAD_BYTES = 256 * 1024
"""How much a connection receives before anyone reads it, after which the transport stops
reading until the buffer is drained: an answer read slowly (a client reading a stream
slowly) is held back by TCP, not buffered here without end."""


class _Connection(asyncio.Protocol):
    """One connection's received bytes, and whoever waits for more or for the kernel to
    take a write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.at_eof = False
        self.lost: BaseException | None = None
        self.closed = False
        self.reading_paused = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._writing_paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport's subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        # A write is done once the kernel holds it all, as with anyio (``_Stream.write``).
        self.transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= READ_AHEAD_BYTES and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.at_eof = True
        self._wake_reader()
        return False  # the transport closes itself: an HTTP/1.1 peer never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.at_eof = True
        self.lost = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    # what the stream waits for

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _wake_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.set_result(None)

    async def wait_readable(self, timeout: float | None) -> None:
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await _within(self._reader, timeout, httpcore.ReadTimeout)
        finally:
            self._reader = None

    async def wait_drained(self, timeout: float | None) -> None:
        while self._writing_paused and self.lost is None and not self.closed:
            self._writer = asyncio.get_running_loop().create_future()
            try:
                await _within(self._writer, timeout, httpcore.WriteTimeout)
            finally:
                self._writer = None


async def _within(
    waiter: asyncio.Future[None], timeout: float | None, error: type[Exception]
) -> None:
    """Wait for ``waiter``; past ``timeout`` seconds raise ``error`` instead. One timer on
    the loop, cancelled when the waiter is done first."""
    if timeout is None:
        await waiter
        return
    loop = asyncio.get_running_loop()
    timer = loop.call_later(timeout, _expire, waiter, error)
    try:
        await waiter
    finally:
        timer.cancel()


def _expire(waiter: asyncio.Future[None], error: type[Exception]) -> None:
    if not waiter.done():
        waiter.set_exception(error("timed out"))


class _Stream(AsyncNetworkStream):
    """httpcore's view of one connection."""

    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self._connection
        if connection.closed:
            raise httpcore.ReadError("the connection is closed")
        if not connection.received and not connection.at_eof:
            await connection.wait_readable(timeout)
        received = connection.received
        if received:
            if len(received) <= max_bytes:
                data = bytes(received)
                received.clear()
            else:
                data = bytes(received[:max_bytes])
                del received[:max_bytes]
            if connection.reading_paused and len(received) < READ_AHEAD_BYTES:
                connection.reading_paused = False
                if not self._transport.is_closing():  # (the peer gone meanwhile)
                    self._transport.resume_reading()
            return data
        if connection.lost is not None:
            raise httpcore.ReadError(str(connection.lost) or type(connection.lost).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        connection = self._connection
        if connection.closed:
            raise httpcore.WriteError("the connection is closed")
        if connection.lost is not None or self._transport.is_closing():
            raise httpcore.WriteError(str(connection.lost or "the peer closed the connection"))
        self._transport.write(buffer)
        await connection.wait_drained(timeout)
        if connection.lost is not None:
            raise httpcore.WriteError(str(connection.lost) or type(connection.lost).__name__)

    async def aclose(self) -> None:
        self._connection.closed = True
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport,
                    self._connection,
                    ssl_context,
                    server_hostname=server_hostname,
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(str(exc) or "the TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        assert transport is not None
        # The TLS transport keeps its own write buffer limits: with 0, uvloop's pauses the
        # writer after every write and resumes it only at its next event (an answer that
        # never comes before the request is whole). Its bytes go at once to the socket's
        # transport, whose limit is 0 (``_Connection.connection_made``).
        self._connection.transport = transport
        return _Stream(transport, self._connection)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        connection = self._connection
        if info == "is_readable":
            # Asked of an idle pooled connection before it is reused: anything received
            # (or the peer gone) means the peer is closing it. The kernel is asked too, for
            # what arrived since the loop last looked.
            return bool(
                connection.received
                or connection.at_eof
                or connection.closed
                or transport.is_closing()
                or _readable(transport.get_extra_info("socket"))
            )
        if transport.is_closing():
            # Nothing left to tell (asyncio's TLS transport, closed, fails when asked).
            return None
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None


def _readable(sock: Any) -> bool:
    if sock is None:
        return True  # no socket left: nothing to reuse
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class LoopBackend(AsyncNetworkBackend):
    """httpcore's network backend on the running loop's transports (uvloop's, under LUC).
    TCP only: httpcore's own default refuses a Unix socket, which LUC's client never asks
    for (it is given no ``uds``)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    local_addr=None if local_address is None else (local_address, 0),
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "connecting timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(transport, connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class LoopTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (httpcore's pool, HTTP/1.1) over ``LoopBackend``; ``verify``:
    the certificates trusted, as httpx's (default: its own, certifi's)."""

    def __init__(self, limits: httpx.Limits, verify: ssl.SSLContext | None = None) -> None:
        ssl_context = verify or httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=LoopBackend(),
        )
