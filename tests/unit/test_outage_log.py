"""The reminders of a long outage come at 10 s, then 20 s, 40 s, … apart, at most every
10 minutes, whatever the polling rate."""

from __future__ import annotations

import logging
import sys

import asyncpg
import structlog
from structlog.testing import capture_logs

from service.db import is_unavailable
from service.db.outage import OutageLog, PoolFloorFilter


def test_reminders_double_up_to_ten_minutes_and_the_end_is_said_once() -> None:
    now = 0.0
    outage = OutageLog(structlog.get_logger("test"), "loop", clock=lambda: now)
    with capture_logs() as logged:
        # A failed round every second for an hour.
        while now <= 3600:
            outage.failed(OSError("connection refused"))
            now += 1.0
        outage.succeeded()
        outage.succeeded()  # a second success says nothing more
    lines = logged
    assert [line["event"] for line in lines[:2]] == [
        "loop_database_unavailable",
        "loop_database_still_unavailable",
    ]
    reminders = [line["down_seconds"] for line in lines if "still" in line["event"]]
    # 10, +20, +40, +80, +160, +320, then every 600 s.
    assert reminders == [10.0, 30.0, 70.0, 150.0, 310.0, 630.0, 1230.0, 1830.0, 2430.0, 3030.0]
    assert lines[-1] == {
        "event": "loop_database_available",
        "down_seconds": 3601.0,
        "failed_rounds": 3601,
        "log_level": "info",
    }


def _floor_warning(exc: BaseException) -> logging.LogRecord:
    """The record asyncpg's pool logs when it fails to reopen its floor (``exc_info``)."""
    try:
        raise exc
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "asyncpg.pool",
        logging.WARNING,
        "pool.py",
        571,
        "Failed to restore the pool connection floor; retrying",
        None,
        exc_info,
    )


def test_asyncpg_floor_warnings_are_dropped_in_an_outage_and_one_line_otherwise() -> None:
    floor = PoolFloorFilter(is_unavailable)
    with capture_logs() as logged:
        # PostgreSQL away (its socket gone, or starting up): the dispatcher says it.
        assert floor.filter(_floor_warning(FileNotFoundError(2, "No such file"))) is False
        assert floor.filter(_floor_warning(asyncpg.CannotConnectNowError("starting"))) is False
        assert logged == []
        # Another cause: one structured line, without asyncpg's traceback.
        refused = asyncpg.InvalidPasswordError('password authentication failed for user "luc"')
        assert floor.filter(_floor_warning(refused)) is False
        # asyncpg's other lines pass.
        other = logging.LogRecord("asyncpg.pool", logging.WARNING, "", 0, "other", None, None)
        assert floor.filter(other) is True
    assert logged == [
        {
            "event": "database_pool_reconnect_failed",
            "error": 'InvalidPasswordError: password authentication failed for user "luc"',
            "detail": "asyncpg retries after 1 s, 2 s, 4 s, … at most every 60 s",
            "log_level": "warning",
        }
    ]
