"""``gateway.transport.Http11Transport`` under an ``httpx.AsyncClient``, against a real
HTTP/1.1 server on loopback that writes exactly the bytes each test scripts: framing
(length, chunked, to the end of the connection), streaming chunk by chunk, keep-alive
reuse and when a connection must not be reused, timeouts and the errors httpx raises.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.gateway.transport import Http11Transport
from tests.support.ports import free_port
from tests.support.scripted_http import CLOSE, Scripted, ok, scripted_server

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    async with scripted_server() as scripted:
        yield scripted


def client(timeout: float = 5.0, **limits: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=Http11Transport(**limits), timeout=httpx.Timeout(timeout, pool=0.2)
    )


async def test_an_answer_of_known_length_is_read_and_its_connection_kept_for_the_next(
    server: Scripted,
) -> None:
    server.answer(ok(b'{"a": 1}', b"content-type: application/json", b"x-twice: 1", b"x-twice: 2"))
    server.answer(ok(b"second"))
    async with client() as http:
        first = await http.post(f"{server.url}/v1/chat?x=1", content=b'{"q": "?"}')
        second = await http.get(f"{server.url}/two")
    assert (first.status_code, first.json(), first.headers.get_list("x-twice")) == (
        200,
        {"a": 1},
        ["1", "2"],
    )
    assert second.text == "second"
    # One connection for both; the request as httpx builds it, its body whole.
    assert server.seen[0].port == server.seen[1].port
    assert server.seen[0].head.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in server.seen[0].head
    assert b"\r\nContent-Length: 10\r\n" in server.seen[0].head
    assert server.seen[0].body == b'{"q": "?"}'
    assert server.seen[1].head.startswith(b"GET /two HTTP/1.1\r\n")


async def test_a_chunked_stream_passes_each_chunk_on_as_it_arrives(server: Scripted) -> None:
    more = asyncio.Event()
    server.answer(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n",
        b"7\r\ndata: 1\r\n",
        more,  # the rest only once the client has the first chunk
        b"7;ext=1\r\ndata: 2\r\n0\r\nx-trailer: t\r\n\r\n",
    )
    server.answer(ok(b"after"))
    async with client() as http:
        async with http.stream("POST", f"{server.url}/s", content=b"{}") as response:
            parts = []
            async with asyncio.timeout(5):  # fails rather than hangs if chunks were held back
                async for part in response.aiter_raw():
                    parts.append(part)
                    more.set()
        after = await http.get(f"{server.url}/after")
    assert parts == [b"data: 1", b"data: 2"]
    assert after.text == "after"
    assert server.seen[0].port == server.seen[1].port  # read to its end: kept


async def test_an_answer_without_length_ends_with_its_connection_which_is_not_reused(
    server: Scripted,
) -> None:
    server.answer(b"HTTP/1.1 200 OK\r\n\r\nto the end", CLOSE)
    server.answer(ok(b"next"))
    async with client() as http:
        first = await http.get(f"{server.url}/a")
        second = await http.get(f"{server.url}/b")
    assert (first.text, second.text) == ("to the end", "next")
    assert server.seen[0].port != server.seen[1].port


async def test_connection_close_and_http_1_0_answers_are_not_reused(server: Scripted) -> None:
    server.answer(ok(b"one", b"connection: close"))
    server.answer(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\ntwo")
    server.answer(ok(b"three"))
    async with client() as http:
        texts = [(await http.get(f"{server.url}/{n}")).text for n in range(3)]
    assert texts == ["one", "two", "three"]
    assert len({s.port for s in server.seen}) == 3


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The close arrives while the client's event loop is held up (as by a long callback),
    so the loop has not read it yet when the next request looks for a connection: the
    socket itself is asked."""
    closed = threading.Event()
    ports: list[int] = []
    listening = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:  # a blocking server in a thread of its own: its close lands at once
        for body in (b"one", b"two"):
            conn, peer = listening.accept()
            ports.append(peer[1])
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                conn.sendall(ok(body))
            closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    try:
        async with client() as http:
            assert (await http.get(f"{url}/1")).text == "one"
            assert closed.wait(5)  # blocks the loop: it cannot read the close meanwhile
            assert (await http.get(f"{url}/2")).text == "two"
    finally:
        thread.join(5)
        listening.close()
    assert ports[0] != ports[1]


async def test_a_connection_idle_beyond_the_keepalive_expiry_is_not_reused(
    server: Scripted,
) -> None:
    server.answer(ok(b"one"))
    server.answer(ok(b"two"))
    async with httpx.AsyncClient(transport=Http11Transport(keepalive_expiry=0.0)) as http:
        await http.get(f"{server.url}/1")
        await http.get(f"{server.url}/2")
    assert server.seen[0].port != server.seen[1].port


async def test_an_answer_not_read_to_its_end_closes_its_connection(server: Scripted) -> None:
    server.answer(ok(b"x" * 1000))
    server.answer(ok(b"next"))
    async with client() as http:
        async with http.stream("GET", f"{server.url}/big"):
            pass  # closed unread
        assert (await http.get(f"{server.url}/next")).text == "next"
    assert server.seen[0].port != server.seen[1].port


async def test_the_read_timeout_bounds_each_wait_for_the_answer(server: Scripted) -> None:
    never = asyncio.Event()
    server.answer(never)  # no answer at all
    server.answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", never)
    async with client(timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{server.url}/silent")
        async with http.stream("GET", f"{server.url}/stalls") as response:
            received = []
            with pytest.raises(httpx.ReadTimeout):
                async for part in response.aiter_raw():
                    received.append(part)
    assert received == [b"abc"]
    never.set()


async def test_a_body_cut_short_is_a_remote_protocol_error(server: Scripted) -> None:
    server.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b", CLOSE)
    server.answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", CLOSE)
    server.answer(CLOSE)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await http.get(f"{server.url}/sized")
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await http.get(f"{server.url}/chunked")
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.get(f"{server.url}/nothing")


async def test_a_malformed_answer_is_a_remote_protocol_error(server: Scripted) -> None:
    server.answer(b"SMTP ready\r\n\r\n", CLOSE)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="status line"):
            await http.get(f"{server.url}/x")


async def test_nothing_listening_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{free_port()}/")


async def test_past_max_connections_a_request_waits_for_one_then_times_out_on_the_pool(
    server: Scripted,
) -> None:
    server.answer(ok(b"held"))
    server.answer(ok(b"next"))
    async with client(max_connections=1) as http:
        held = await http.send(http.build_request("GET", f"{server.url}/held"), stream=True)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(f"{server.url}/waits")
        await held.aread()  # read to its end, and so closed: the connection comes free
        assert (await http.get(f"{server.url}/next")).text == "next"


async def test_a_cancelled_request_closes_its_connection_and_frees_its_place(
    server: Scripted,
) -> None:
    never = asyncio.Event()
    server.answer(never)
    server.answer(ok(b"after"))
    async with client(max_connections=1) as http:
        request = asyncio.create_task(http.get(f"{server.url}/slow"))
        await asyncio.wait_for(server.arrived.wait(), 5)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert (await http.get(f"{server.url}/after")).text == "after"
    assert server.seen[0].port != server.seen[1].port
    never.set()


async def test_interim_answers_are_skipped_and_bodiless_answers_keep_the_connection(
    server: Scripted,
) -> None:
    server.answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"))
    server.answer(b"HTTP/1.1 204 No Content\r\n\r\n")
    server.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n")  # a HEAD: no body
    server.answer(ok(b"last"))
    async with client() as http:
        final = await http.post(f"{server.url}/c", content=b"x")
        empty = await http.delete(f"{server.url}/d")
        head = await http.head(f"{server.url}/h")
        last = await http.get(f"{server.url}/l")
    assert (final.text, empty.status_code, head.headers["content-length"], last.text) == (
        "final",
        204,
        "50",
        "last",
    )
    assert len({s.port for s in server.seen}) == 1


async def test_a_compressed_answer_is_decoded_by_httpx(server: Scripted) -> None:
    server.answer(ok(gzip.compress(b'{"usage": 1}'), b"content-encoding: gzip"))
    async with client() as http:
        assert (await http.get(f"{server.url}/z")).json() == {"usage": 1}


async def test_a_chunked_request_body_is_sent_chunked(server: Scripted) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"he"
        yield b"llo"

    server.answer(ok(b"got it"))
    async with client() as http:
        answer = await http.post(f"{server.url}/up", content=parts())
    assert answer.text == "got it"
    assert server.seen[0].body == b"hello"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian: apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_with_the_given_trust(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    scripted = Scripted()
    scripted.answer(ok(b"secret"))
    scripted.answer(ok(b"again"))
    listening = await asyncio.start_server(scripted.serve, "127.0.0.1", 0, ssl=serving)
    port = listening.sockets[0].getsockname()[1]
    trust = ssl.create_default_context(cafile=str(cert))
    async with listening:
        async with httpx.AsyncClient(transport=Http11Transport(verify=trust)) as http:
            assert (await http.get(f"https://localhost:{port}/")).text == "secret"
            assert (await http.get(f"https://localhost:{port}/")).text == "again"
        async with httpx.AsyncClient(transport=Http11Transport()) as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"https://localhost:{port}/")
        listening.close()
    assert scripted.seen[0].port == scripted.seen[1].port
