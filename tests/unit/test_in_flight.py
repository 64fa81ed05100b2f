"""``observe.InFlight``: the requests a process is answering, a stream until its last byte
(what lets the proxy's usage journal write on the event loop when a call is alone)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar, get
from litestar.response import Stream
from litestar.testing import AsyncTestClient

from service.api.observe import InFlight, observe_requests
from service.metrics.instruments import Metrics

pytestmark = pytest.mark.asyncio


async def test_a_request_counts_until_its_last_byte_and_then_no_more() -> None:
    in_flight = InFlight()
    seen: list[int] = []

    async def pieces() -> AsyncIterator[bytes]:
        seen.append(in_flight.count)
        yield b"a"
        seen.append(in_flight.count)
        yield b"b"

    @get("/stream")
    async def stream() -> Stream:
        return Stream(pieces())

    @get("/plain")
    async def plain() -> int:
        return in_flight.count

    app = Litestar([stream, plain], middleware=[observe_requests(Metrics(), in_flight)])
    async with AsyncTestClient(app) as client:
        streamed = await client.get("/stream")
        answered = await client.get("/plain")
    assert (streamed.text, seen) == ("ab", [1, 1])
    assert answered.json() == 1
    assert in_flight.count == 0
