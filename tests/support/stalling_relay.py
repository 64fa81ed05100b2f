"""A TCP relay in front of the tests' PostgreSQL that can stop passing bytes: a database
that does not answer (stopped, hung on its disk, or across a network partition) while
its connections stay open, which no server-side timeout can end.

The relay listens on 127.0.0.1 and passes each connection's bytes both ways to the
server's Unix socket (the embedded server the tests share listens on one only), where
PostgreSQL's local rules let it in as on the socket itself. ``stall()`` holds every byte
in either direction, and every new connection, until ``flow()``: then what was held goes
on in order, as TCP delivers it once a partition heals.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit


@dataclass
class StallingRelay:
    socket_path: Path
    """The server's Unix socket, ``<host folder>/.s.PGSQL.<port>``."""
    url: str = ""
    """The database URL through the relay (set once it listens)."""
    _loop: asyncio.AbstractEventLoop | None = None
    _flowing: asyncio.Event | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def stall(self) -> None:
        """Hold every byte and every new connection from now on."""
        assert self._loop is not None and self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def flow(self) -> None:
        """Pass bytes again, what was held first."""
        assert self._loop is not None and self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.set)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.socket_path))
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except OSError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


def _socket_path(database_url: str) -> Path:
    """The Unix socket of a ``postgresql://user@/db?host=<folder>&port=<n>`` URL."""
    query = parse_qs(urlsplit(database_url).query)
    folder = query["host"][0]
    port = query.get("port", ["5432"])[0]
    return Path(folder) / f".s.PGSQL.{port}"


@contextmanager
def stalling_relay(database_url: str) -> Iterator[StallingRelay]:
    """A relay to the server of ``database_url`` (a Unix-socket URL, as the embedded server
    gives), its ``url`` naming the same database and user over TCP, on a thread of its own."""
    parts = urlsplit(database_url)
    relay = StallingRelay(_socket_path(database_url))
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        relay._loop = asyncio.get_running_loop()
        relay._flowing = asyncio.Event()
        relay._flowing.set()
        stop = asyncio.Event()
        server = await asyncio.start_server(relay._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        user = quote(parts.username or "postgres")
        relay.url = f"postgresql://{user}@127.0.0.1:{port}{parts.path}"
        ready.set()
        async with server:
            await stop.wait()
            server.close()
            tasks = list(relay._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the stalling relay did not start")
    try:
        yield relay
    finally:
        assert relay._loop is not None and stop is not None
        relay._loop.call_soon_threadsafe(stop.set)
        thread.join(10)
