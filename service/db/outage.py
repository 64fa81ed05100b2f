"""Saying a database outage in the log: once when it begins, then at growing intervals
while it lasts, and once when it ends.

A loop that polls PostgreSQL (the webhook dispatcher, every ``LUC_WEBHOOK_POLL_SECONDS``)
fails once per round while PostgreSQL is away; a line per round buried the log of an
outage of an hour under thousands of identical warnings, and never said when it ended.
Those lines are the process's account of an outage: asyncpg's own warnings of one (its
pool reconnecting its floor) are kept out of the log (``PoolFloorFilter``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import structlog

FIRST_REPEAT_SECONDS = 10.0
"""How long after the first line of an outage the second comes (if it still lasts)."""
LONGEST_REPEAT_SECONDS = 600.0
"""The interval between reminders doubles up to this (10 s, 20 s, 40 s, … 10 min)."""


class OutageLog:
    """The log lines of one loop's database outages: ``<name>_database_unavailable`` at the
    first failure, ``<name>_database_still_unavailable`` when it still fails after 10 s,
    20 s, 40 s, … (at most every 10 minutes), and ``<name>_database_available`` at the
    first success after it, each with how long it has lasted and how many rounds failed."""

    def __init__(
        self,
        logger: Any,
        name: str,
        *,
        first_repeat_seconds: float = FIRST_REPEAT_SECONDS,
        longest_repeat_seconds: float = LONGEST_REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._name = name
        self._first_repeat = first_repeat_seconds
        self._longest_repeat = longest_repeat_seconds
        self._clock = clock
        self._since: float | None = None
        self._failures = 0
        self._next_at = 0.0
        self._repeat = first_repeat_seconds

    @property
    def down(self) -> bool:
        """Is an outage going on (the last round failed)?"""
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """A round failed because PostgreSQL is away."""
        now = self._clock()
        self._failures += 1
        error = f"{type(exc).__name__}: {exc}"
        if self._since is None:
            self._since = now
            self._repeat = self._first_repeat
            self._next_at = now + self._repeat
            self._log.warning(
                f"{self._name}_database_unavailable",
                error=error,
                detail="said again at growing intervals while it lasts, and when it ends",
            )
            return
        if now >= self._next_at:
            self._log.warning(
                f"{self._name}_database_still_unavailable",
                error=error,
                down_seconds=round(now - self._since, 1),
                failed_rounds=self._failures,
            )
            self._repeat = min(self._repeat * 2, self._longest_repeat)
            self._next_at = now + self._repeat

    def succeeded(self) -> None:
        """A round reached PostgreSQL: the end of an outage, if one was going on."""
        if self._since is None:
            return
        self._log.info(
            f"{self._name}_database_available",
            down_seconds=round(self._clock() - self._since, 1),
            failed_rounds=self._failures,
        )
        self._since = None
        self._failures = 0


# asyncpg's pool --------------------------------------------------------------------------

ASYNCPG_POOL_LOGGER = "asyncpg.pool"
FLOOR_MESSAGE = "Failed to restore the pool connection floor"
"""What asyncpg's pool logs, with the traceback of the failed connect, each time it fails
to reopen the connections of its floor (``LUC_DB_POOL_MIN``) in the background: after 1 s,
2 s, 4 s, … 60 s, in each worker, for as long as PostgreSQL is away."""


class PoolFloorFilter(logging.Filter):
    """Keeps asyncpg's floor-restoration warnings out of the log.

    During an outage they said nothing the webhook dispatcher does not say already, in
    structured lines (``dispatcher_database_unavailable`` at its start, reminders at growing
    intervals, ``dispatcher_database_available`` at its end), and they said it with a
    traceback of asyncpg's internals every few seconds per worker: such a warning is
    dropped when what failed is PostgreSQL being away. Any other cause (a password changed
    under a running LUC, a refused connection setting) is said in one structured line
    without the traceback, ``database_pool_reconnect_failed``, at asyncpg's own backoff.
    """

    def __init__(self, is_outage: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self._is_outage = is_outage
        self._log = structlog.get_logger("luc.db")

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(FLOOR_MESSAGE):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or self._is_outage(exc):
            return False
        self._log.warning(
            "database_pool_reconnect_failed",
            error=f"{type(exc).__name__}: {exc}",
            detail="asyncpg retries after 1 s, 2 s, 4 s, … at most every 60 s",
        )
        return False


def quiet_pool_floor(is_outage: Callable[[BaseException], bool]) -> None:
    """Install ``PoolFloorFilter`` on asyncpg's pool logger, once per process."""
    logger = logging.getLogger(ASYNCPG_POOL_LOGGER)
    if not any(isinstance(f, PoolFloorFilter) for f in logger.filters):
        logger.addFilter(PoolFloorFilter(is_outage))
