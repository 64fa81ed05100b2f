"""``GatheredWrites``: a lone answer's head waits for its body and no longer, a busy
worker's writes go out as one at the end of the loop's turn, in order, never lost at a
close."""

from __future__ import annotations

import asyncio

from service.http_head import GatheredWrites


class Transport:
    """What a socket's transport is asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.calls.append(("pause_reading", b""))


def _gathered(requests: set[object]) -> tuple[GatheredWrites, Transport]:
    transport = Transport()
    return GatheredWrites(transport, asyncio.get_running_loop(), requests), transport  # type: ignore[arg-type]


async def test_a_lone_answers_head_waits_for_its_body_only() -> None:
    writes, transport = _gathered({"this request"})
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.calls == []
    writes.write(b"{}")  # the body takes the head along at once, not at the turn's end
    assert transport.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]
    await asyncio.sleep(0)
    assert len(transport.calls) == 1


async def test_a_lone_write_with_nothing_after_it_leaves_at_the_turns_end() -> None:
    writes, transport = _gathered({"this request"})
    writes.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")  # a stream's head
    assert writes.get_write_buffer_size() == 47
    await asyncio.sleep(0)
    assert transport.calls == [("write", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")]
    writes.write(b"5\r\nhello\r\n")  # a chunk come later waits for nothing but the turn
    writes.write(b"0\r\n\r\n")
    assert transport.calls[-1] == ("write", b"5\r\nhello\r\n0\r\n\r\n")


async def test_a_busy_worker_writes_head_and_body_as_one_at_the_end_of_the_turn() -> None:
    writes, transport = _gathered({"this request", "another"})
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"{}")
    assert transport.calls == []
    assert writes.get_write_buffer_size() == 38 + 2
    await asyncio.sleep(0)
    assert transport.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]
    assert writes.get_write_buffer_size() == 0


async def test_held_bytes_keep_their_order_when_the_worker_becomes_idle() -> None:
    requests: set[object] = {"this request", "another"}
    writes, transport = _gathered(requests)
    writes.write(b"first")
    requests.discard("another")
    writes.write(b"second")  # joins what is held, never overtakes it
    assert transport.calls == []
    await asyncio.sleep(0)
    assert transport.calls == [("write", b"firstsecond")]
    writes.write(b"third")
    writes.write(b"fourth")  # idle now: the second write takes the first along at once
    assert transport.calls[-1] == ("write", b"thirdfourth")


async def test_a_close_writes_what_is_held_first() -> None:
    writes, transport = _gathered({"this request", "another"})
    writes.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
    writes.close()
    assert transport.calls == [
        ("write", b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n"),
        ("close", b""),
    ]
    await asyncio.sleep(0)
    assert len(transport.calls) == 2  # the turn's end finds nothing left to write


async def test_bytes_held_for_a_peer_that_went_away_are_dropped() -> None:
    writes, transport = _gathered({"this request", "another"})
    writes.write(b"an answer nobody reads")
    transport.closing = True  # the connection was lost meanwhile
    await asyncio.sleep(0)
    assert transport.calls == []


async def test_everything_else_is_the_transports() -> None:
    writes, transport = _gathered({"this request"})
    writes.pause_reading()
    assert transport.calls == [("pause_reading", b"")]
    assert writes.is_closing() is False
