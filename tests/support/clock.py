"""The clock a test runs under, for tests whose expectations depend on it.

The suite must pass on any day it is run: in a later year, on 1 January, in the last
seconds of a UTC day or month. A test that records usage "now" and then reads the figures
of the day, month or year containing now derives both from one instant read here, and
starts clear of the period's end: it waits out the last seconds of a UTC day, month or
year (at most ``margin`` seconds, only when the clock is in them), so its writes and reads
fall in one period instead of failing once a month at 23:59.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

# Long enough for the few requests of a test, short enough to wait once in a while.
MARGIN = timedelta(seconds=20)


def day_start(when: datetime) -> datetime:
    """The UTC midnight that starts the day of ``when``."""
    return when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(when: datetime) -> datetime:
    """The first instant of the UTC month of ``when``."""
    return day_start(when).replace(day=1)


def next_month_start(when: datetime) -> datetime:
    """The first instant of the UTC month after the one of ``when``."""
    start = month_start(when)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def period_end(period: str, when: datetime) -> datetime:
    """Where the UTC ``period`` (``day``, ``month``, ``year``) containing ``when`` ends."""
    if period == "day":
        return day_start(when) + timedelta(days=1)
    if period == "month":
        return next_month_start(when)
    if period == "year":
        return datetime(when.astimezone(UTC).year + 1, 1, 1, tzinfo=UTC)
    raise ValueError(f"no period {period!r}")


def wait_needed(period: str, now: datetime, margin: timedelta = MARGIN) -> timedelta:
    """How long to wait from ``now`` so a test starts clear of the period's end: zero
    unless ``now`` is in its last ``margin``, else until just past that end."""
    left = period_end(period, now) - now
    return left + timedelta(milliseconds=100) if left < margin else timedelta(0)


async def clear_of_end(period: str = "month", margin: timedelta = MARGIN) -> datetime:
    """Now, once at least ``margin`` before the end of the UTC ``period`` containing it
    (waiting, when needed, until the next period has begun)."""
    wait = wait_needed(period, datetime.now(UTC), margin)
    if wait:
        await asyncio.sleep(wait.total_seconds())
    return datetime.now(UTC)


def earlier_this_month(now: datetime) -> datetime:
    """An instant of the UTC month of ``now`` a minute before it (or the month's first
    instant, in its first minute): usage "of this month" that is not in the future."""
    return max(now - timedelta(minutes=1), month_start(now))
