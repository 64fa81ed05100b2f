"""Waiting on a condition with a deadline: the one way tests synchronise with a server, a
thread or PostgreSQL (never a bare ``sleep`` that hopes the other side is done).

The deadline is generous on purpose: it only bounds how long a broken run hangs. A slow
machine makes a test slower, never wrong; the poll interval is short so a fast one wastes
little time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

import asyncpg

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    every: float = 0.05,
    said: Callable[[], object] | None = None,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail naming
    ``what`` once ``timeout`` seconds have passed, with what ``said()`` gives then (the
    lines a server logged meanwhile, say: a run on another machine leaves only that)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            meanwhile = f"; meanwhile: {said()}" if said is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{meanwhile}")
        time.sleep(every)


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T | None]], within: float, what: str, every: float = 0.05
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T | None], within: float, what: str, every: float = 0.05
) -> T: ...


async def wait_until(
    condition: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    within: float,
    what: str,
    every: float = 0.05,
) -> T:
    """``wait_for`` inside an event loop: ``condition`` may be a coroutine function, and
    the loop keeps running between calls."""
    deadline = time.monotonic() + within
    while True:
        value: Any = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)


async def proxied_usage_recorded(app: Any, within: float = 30.0) -> None:
    """Wait until the usage of every call the in-process ``app``'s proxy answered has left
    its spool: on the ledger, or parked. The proxy answers once the usage is durable in the
    spool and records it off the answer's path (SPEC §8), so a test that reads the ledger
    right after an answer waits for this first."""

    async def settled() -> bool:
        pending, _ = await app.state.luc.recording.spool_counts()
        return bool(pending == 0)

    await wait_until(settled, within, "the proxied calls' usage to reach the ledger")


async def until_waiting_for_transaction(
    db: asyncpg.Connection, waiting: asyncpg.Connection, what: str
) -> None:
    """Until PostgreSQL shows ``waiting``'s statement queued on another transaction (a row
    that transaction locked or wrote), asked on ``db``."""
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND pid = $1 "
            "AND NOT granted",
            waiting.get_server_pid(),
        ),
        10,
        what,
    )
