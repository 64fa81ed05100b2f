"""The upstream client's sockets (``gateway.network``): httpcore over the event loop's own
transports, under asyncio's loop and under uvloop's (``luc serve``'s). Real servers on
loopback: the scripted HTTP/1.1 server, and a TLS one with a self-signed certificate.
The metering of what these bytes carry is tested through the same client elsewhere
(``test_unanswered_attempts``: an attempt sent whole, or not; ``test_stream_arrivals``)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from service.gateway.chain import upstream_client
from service.gateway.network import READ_AHEAD_BYTES, LoopTransport
from tests.support.certificates import self_signed
from tests.support.ports import closed_port
from tests.support.scripted_http import CLOSE, ok, scripted_server

Run = Callable[[Coroutine[Any, Any, None]], None]
LOOPS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


@LOOPS
def test_an_answer_read_slowly_is_held_back_by_tcp_and_arrives_whole(run: Run) -> None:
    answer = bytes(range(256)) * (8 * 1024)  # 2 MiB, eight times the read-ahead
    assert len(answer) == 8 * READ_AHEAD_BYTES

    async def scenario() -> None:
        async with scripted_server() as server, upstream_client(timeout_seconds=10) as http:
            server.answer(ok(answer), CLOSE)  # closed once written: the end comes paused
            async with http.stream("GET", f"{server.url}/big") as response:
                stream = response.extensions["network_stream"]
                await asyncio.sleep(0.3)  # nothing read: the server has written all it could
                held = len(stream._connection.received)
                # Received until the read-ahead was passed, then no more (one last read of
                # the transport, at most 256 KiB, may have taken it past the mark).
                assert READ_AHEAD_BYTES <= held <= 2 * READ_AHEAD_BYTES
                got = bytearray()
                async for chunk in response.aiter_raw():
                    got += chunk
                    await asyncio.sleep(0)
            assert bytes(got) == answer

    run(scenario())


@LOOPS
def test_a_request_larger_than_the_kernel_takes_at_once_is_sent_whole(run: Run) -> None:
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB: the write waits for the kernel to drain

    async def scenario() -> None:
        async with scripted_server() as server, upstream_client(timeout_seconds=10) as http:
            server.answer(ok(b"taken"))
            answer = await http.post(f"{server.url}/big", content=body)
            assert answer.content == b"taken"
        [seen] = server.seen
        assert seen.body == body

    run(scenario())


@LOOPS
def test_no_answer_within_the_timeout_is_a_read_timeout(run: Run) -> None:
    async def scenario() -> None:
        async with scripted_server() as server, upstream_client(timeout_seconds=0.2) as http:
            never = asyncio.Event()
            server.answer(never)
            began = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await http.post(f"{server.url}/slow", content=b"{}")
            assert 0.2 <= time.monotonic() - began < 2
            never.set()

    run(scenario())


@LOOPS
def test_a_refused_connection_is_a_connect_error(run: Run) -> None:
    async def scenario() -> None:
        async with upstream_client(timeout_seconds=5) as http:
            with closed_port() as port, pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")

    run(scenario())


@LOOPS
def test_a_kept_connection_the_server_closed_is_not_used_again(run: Run) -> None:
    async def scenario() -> None:
        async with scripted_server() as server, upstream_client(timeout_seconds=5) as http:
            server.answer(ok(b"one"))
            server.answer(ok(b"two"))
            first = await http.get(f"{server.url}/a")
            assert first.content == b"one"
            server.answer(ok(b"three"), CLOSE)
            assert (await http.get(f"{server.url}/b")).content == b"two"
            # The third answer's connection is closed by the server once answered; the next
            # call opens another instead of writing into the closed one.
            assert (await http.get(f"{server.url}/c")).content == b"three"
            await asyncio.wait_for(server.closed.wait(), 5)
            server.answer(ok(b"four"))
            assert (await http.get(f"{server.url}/d")).content == b"four"
        ports = [seen.port for seen in server.seen]
        assert ports[0] == ports[1] == ports[2] != ports[3]

    run(scenario())


@LOOPS
def test_over_tls_the_certificate_is_verified_and_the_answer_read(run: Run, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=4)
        async with (
            scripted_server(tls=server_tls) as server,
            httpx.AsyncClient(transport=LoopTransport(limits, trust)) as http,
        ):
            by_name = server.url.replace("127.0.0.1", "localhost")
            server.answer(ok(b"seen hello"))
            server.answer(ok(b"seen again"))
            answer = await http.post(f"{by_name}/chat", content=b"hello")
            assert (answer.status_code, answer.content) == (200, b"seen hello")
            assert answer.extensions["network_stream"].get_extra_info("ssl_object") is not None
            again = await http.post(f"{by_name}/chat", content=b"again")
            assert again.content == b"seen again"
            # The same server by its address: the certificate names only "localhost".
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.post(f"{server.url}/chat", content=b"hello")
        assert [seen.body for seen in server.seen] == [b"hello", b"again"]
        assert server.seen[0].port == server.seen[1].port  # one connection, kept

    run(scenario())
