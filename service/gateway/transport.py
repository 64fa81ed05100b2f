"""The upstream calls' HTTP/1.1 transport under httpx: what httpcore does for them, at a
fraction of its cost.

httpx (its client: URLs, headers, cookies, decoding, proxies from the environment, the
errors LUC's providers catch) stays the API; this replaces only its default transport,
httpcore over anyio over h11, which spent about a third of the proxy's CPU per call
(profiled with py-spy, ``bench.proxy``): task groups, cancel scopes, locks and a state
machine for each of the request's events. Here a request is one write (head and body
together, where httpcore made two, each a wake-up of the provider's side) and the answer
is parsed from a buffer:

- keep-alive connections, one request at a time each, per scheme, host and port; an idle
  connection is reused only while it has neither expired (``keepalive_expiry``) nor been
  closed or written to by the server, else closed; at most ``max_connections`` requests
  at once (``pool`` timeout), ``max_keepalive_connections`` kept idle;
- an answer framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the
  connection, read as it arrives (a stream's chunks pass on one by one) under the
  ``read`` timeout for each wait, the request written under the ``write`` timeout and a
  connection opened under the ``connect`` timeout (TLS with httpx's context, ALPN
  ``http/1.1``);
- failures as httpx raises them (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
  ``WriteTimeout``, ``PoolTimeout``, ``ReadError``, ``RemoteProtocolError``…), so callers
  catch what they caught before. A connection that failed, was cancelled, or whose answer
  was not read to its end is closed, never reused.

Proxies named by the environment (``HTTPS_PROXY``…) still go through httpx's own proxy
transports: httpx mounts them beside this one.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections.abc import AsyncIterator

import httpx

DEFAULT_PORTS = {b"http": 80, b"https": 443}
MAX_HEAD_BYTES = 64 * 1024
"""An answer's status line and headers larger than this are refused (h11's limit too)."""
READ_HIGH_WATER = 256 * 1024
"""Bytes buffered from the server before the socket is paused until they are read."""

_Key = tuple[bytes, bytes, int]


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: what arrives is buffered until read."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self.idle_since = 0.0

    # asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # What the transport uses ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def reusable(self, now: float, expiry: float) -> bool:
        """Idle, still open, nothing unasked-for from the server (read, or waiting in the
        socket for the event loop's next turn: a close it sent just now), not expired."""
        return (
            not self.closed
            and not self.eof
            and not self.buffer
            and now - self.idle_since < expiry
            and not self._pending()
        )

    def _pending(self) -> bool:
        """Whether the socket has something to read right now (as httpcore asks before it
        reuses a connection)."""
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    async def write(self, data: bytes, within: float | None) -> None:
        assert self.transport is not None
        if self.closed:
            raise httpx.WriteError("the connection is closed")
        self.transport.write(data)
        if self._drained is not None:
            try:
                async with asyncio.timeout(within):
                    await self._drained
            except TimeoutError:
                raise httpx.WriteTimeout("the request could not be written in time") from None
        if self.error is not None:
            raise httpx.WriteError(str(self.error))

    async def fill(self, within: float | None) -> bool:
        """Bytes buffered, waiting for some if none are; False at the end of the connection
        (nothing more comes)."""
        return bool(self.buffer) or await self.more(within)

    def take(self, limit: int | None = None) -> bytes:
        """What is buffered (at most ``limit`` bytes)."""
        if limit is None or limit >= len(self.buffer):
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:limit])
            del self.buffer[:limit]
        if self._paused and len(self.buffer) < READ_HIGH_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read_line(self, within: float | None, limit: int) -> bytes:
        """Up to and without the next CRLF."""
        start = 0
        while (end := self.buffer.find(b"\r\n", start)) < 0:
            if len(self.buffer) > limit:
                raise httpx.RemoteProtocolError("a line of the answer is too long")
            start = max(0, len(self.buffer) - 1)
            if not await self.more(within):
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def more(self, within: float | None) -> bool:
        """Wait for bytes beyond those buffered; False at the end of the connection."""
        had = len(self.buffer)
        while len(self.buffer) == had:
            if self.eof:
                if self.error is not None:
                    raise httpx.ReadError(f"{type(self.error).__name__}: {self.error}")
                return False
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(within):
                    await self._waiter
            except TimeoutError:
                raise httpx.ReadTimeout("no answer within the read timeout") from None
            finally:
                self._waiter = None
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Http11Transport(httpx.AsyncBaseTransport):
    """httpx's ``AsyncHTTPTransport`` for HTTP/1.1 (see the module): pass it as
    ``httpx.AsyncClient(transport=...)``."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self.max_keepalive_connections = max_keepalive_connections
        self.keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = httpx.create_ssl_context(verify=self._verify)
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        if not url.raw_host:
            raise httpx.UnsupportedProtocol(f"no host in {url}")
        key = (scheme, url.raw_host, url.port or DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection came free within the pool timeout") from None
        connection: _Connection | None = None
        try:
            head = _head(request)
            body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
            if _chunked(request.headers):
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            connection = self._reuse(key) or await self._connect(key, timeouts.get("connect"))
            await connection.write(head + body, timeouts.get("write"))
            read_timeout = timeouts.get("read")
            while True:
                version, status, reason, headers = await _read_head(connection, read_timeout)
                if not 100 <= status < 200 or status == 101:
                    break  # an interim answer (100 Continue, 103 Early Hints) is skipped
            framing = _framing(request.method, status, headers)
            keep = version == b"HTTP/1.1" and not _has_token(headers, b"connection", b"close")
        except BaseException as exc:
            if connection is not None:
                connection.close()
                self._open.discard(connection)
            self._slots.release()
            if isinstance(exc, OSError):
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc
            raise
        stream = _Body(self, key, connection, framing, keep, read_timeout)
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    def _reuse(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable(now, self.keepalive_expiry):
                return connection
            connection.close()
            self._open.discard(connection)
        return None

    async def _connect(self, key: _Key, within: float | None) -> _Connection:
        scheme, host, port = key
        hostname = host.decode("ascii")
        tls = self._ssl_context() if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within):
                _, connection = await loop.create_connection(
                    _Connection,
                    hostname,
                    port,
                    ssl=tls,
                    server_hostname=hostname if tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {hostname}:{port} in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        self._open.add(connection)
        return connection

    def _done(self, key: _Key, connection: _Connection, reuse: bool) -> None:
        """The answer on ``connection`` was read to its end (``reuse``) or given up."""
        self._slots.release()
        idle = self._idle.setdefault(key, [])
        kept = sum(len(c) for c in self._idle.values())
        if (
            reuse
            and not self._closed
            and not connection.closed
            and (kept < self.max_keepalive_connections)
        ):
            connection.idle_since = time.monotonic()
            idle.append(connection)
            return
        connection.close()
        self._open.discard(connection)

    async def aclose(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; gives its connection back once read to its end."""

    def __init__(
        self,
        owner: Http11Transport,
        key: _Key,
        connection: _Connection,
        framing: int | None,
        keep: bool,
        timeout: float | None,
    ) -> None:
        self.owner = owner
        self.key = key
        self.connection: _Connection | None = connection
        self.framing = framing
        """Bytes to come (``Content-Length``), ``CHUNKED``, or ``None``: to the end."""
        self.keep = keep
        self.timeout = timeout
        self.complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self.connection
        if connection is None:
            raise httpx.StreamClosed()
        try:
            if self.framing == CHUNKED:
                async for part in self._chunks(connection):
                    yield part
            elif self.framing is None:
                while await connection.fill(self.timeout):
                    yield connection.take()
                self.keep = False  # the end of the connection ended the body
            else:
                left = self.framing
                while left > 0:
                    if not await connection.fill(self.timeout):
                        raise httpx.RemoteProtocolError(
                            "peer closed connection without sending complete message body "
                            f"(received {self.framing - left} bytes, expected {self.framing})"
                        )
                    part = connection.take(left)
                    left -= len(part)
                    yield part
            self.complete = True
        except OSError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def _chunks(self, connection: _Connection) -> AsyncIterator[bytes]:
        while True:
            line = await connection.read_line(self.timeout, MAX_HEAD_BYTES)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size < 0:
                raise httpx.RemoteProtocolError(f"bad chunk size line {line[:40]!r}")
            if size == 0:
                while await connection.read_line(self.timeout, MAX_HEAD_BYTES):
                    pass  # trailers, up to the blank line
                return
            while size > 0:
                if not await connection.fill(self.timeout):
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body "
                        "(incomplete chunked read)"
                    )
                part = connection.take(size)
                size -= len(part)
                yield part
            if await connection.read_line(self.timeout, MAX_HEAD_BYTES):
                raise httpx.RemoteProtocolError("a chunk did not end with CRLF")

    async def aclose(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        reuse = self.complete and self.keep and not connection.buffer and not connection.eof
        self.owner._done(self.key, connection, reuse)


CHUNKED = -1


def _head(request: httpx.Request) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _chunked(headers: httpx.Headers) -> bool:
    return (
        "content-length" not in headers
        and "chunked" in headers.get("transfer-encoding", "").lower()
    )


async def _read_head(
    connection: _Connection, within: float | None
) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    """The status line and headers of the next answer."""
    buffer = connection.buffer
    start = 0
    while (end := buffer.find(b"\r\n\r\n", start)) < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError("the answer's head is too large")
        start = max(0, len(buffer) - 3)
        if not await connection.more(within):
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    head = bytes(buffer[:end])
    del buffer[: end + 4]
    status_line, *lines = head.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError(f"a malformed header line: {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return version, int(code), reason, headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


def _has_token(headers: list[tuple[bytes, bytes]], name: bytes, token: bytes) -> bool:
    return any(t.strip().lower() == token for v in _header(headers, name) for t in v.split(b","))


def _framing(method: str, status: int, headers: list[tuple[bytes, bytes]]) -> int | None:
    """How the body ends: its length, ``CHUNKED``, or ``None`` (at the connection's end)."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0
    codings = _header(headers, b"transfer-encoding")
    if codings:
        last = codings[-1].split(b",")[-1].strip().lower()
        return CHUNKED if last == b"chunked" else None
    lengths = {v.strip() for v in _header(headers, b"content-length")}
    if not lengths:
        return None
    if len(lengths) > 1:
        raise httpx.RemoteProtocolError("conflicting Content-Length headers")
    (length,) = lengths
    if not length.isdigit():
        raise httpx.RemoteProtocolError(f"a bad Content-Length: {length[:20]!r}")
    return int(length)
