"""The group writer answers each request from the commit that held its event."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import asyncpg
import pytest

from service.ingest.models import Rejection, UsageEvent
from service.recording.group_commit import GroupWriter, RecordRequestsFn
from service.recording.models import ACCEPTED, REJECTED, BatchOutcome, EventOutcome
from service.recording.one_trip import OneTrip
from service.recording.service import record_apart
from tests.support.events import usage_event
from tests.support.waiting import wait_until


async def test_concurrent_events_share_a_commit_and_each_gets_its_own_answer() -> None:
    groups: list[list[str]] = []

    async def record(events: Sequence[UsageEvent], *, one_event_per_request: bool) -> BatchOutcome:
        groups.append([e.id for e in events])
        return BatchOutcome([EventOutcome(e.id, ACCEPTED) for e in events])

    writer = GroupWriter(cast(RecordRequestsFn, record))  # submit() takes only UsageEvents
    answers = asyncio.gather(*(writer.submit(usage_event(f"e{i}")) for i in range(50)))
    # Every request is queued before any writer looks (as under load, while the previous
    # commit is in flight): no scheduling order or sleep decides what a group holds.
    await wait_until(lambda: writer.waiting == 50, 5, "the 50 requests to be queued")
    writer.start()
    answered = await answers
    await writer.stop()

    assert [a.id for a in answered] == [f"e{i}" for i in range(50)]
    # All 50 were waiting when the writer looked: one commit holds them all.
    assert groups == [[f"e{i}" for i in range(50)]]


async def test_a_failed_commit_fails_every_request_in_it_and_the_writer_goes_on() -> None:
    groups: list[list[str]] = []
    first_taken = asyncio.Event()
    release = asyncio.Event()

    async def record(events: Sequence[UsageEvent], *, one_event_per_request: bool) -> BatchOutcome:
        groups.append([e.id for e in events])
        if len(groups) == 1:
            first_taken.set()
            await release.wait()  # the commit is in flight until the test lets it fail
            raise ConnectionError("database went away")
        return BatchOutcome([EventOutcome(e.id, ACCEPTED) for e in events])

    writer = GroupWriter(cast(RecordRequestsFn, record))  # submit() takes only UsageEvents
    writer.start()
    first = asyncio.ensure_future(writer.submit(usage_event("a")))
    await first_taken.wait()  # "a" is taken alone into the commit that will fail
    rest = [asyncio.ensure_future(writer.submit(usage_event(i))) for i in ("b", "c")]
    release.set()
    with pytest.raises(ConnectionError):
        await first
    assert [(await r).status for r in rest] == [ACCEPTED, ACCEPTED]
    await writer.stop()
    assert groups[0] == ["a"]
    assert sorted(i for g in groups[1:] for i in g) == ["b", "c"]


async def test_a_group_the_database_refuses_is_recorded_without_the_event_at_fault() -> None:
    attempts: list[list[str]] = []

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        ids = [i.id or "" for i in items]
        attempts.append(ids)
        if "culprit" in ids:  # as PostgreSQL refuses a numeric it cannot hold
            raise asyncpg.NumericValueOutOfRangeError("numeric field overflow")
        return BatchOutcome([EventOutcome(i, ACCEPTED) for i in ids])

    writer = GroupWriter(lambda items, **_: record_apart(record, items))
    writer.start()
    ids = [f"e{i}" for i in range(7)] + ["culprit"] + [f"e{i}" for i in range(7, 15)]
    answers = await asyncio.gather(*(writer.submit(usage_event(i)) for i in ids))
    await writer.stop()

    assert [(a.id, a.status) for a in answers] == [
        (i, REJECTED if i == "culprit" else ACCEPTED) for i in ids
    ]
    assert answers[7].reason == (
        "the database refused this event (NumericValueOutOfRangeError: numeric field overflow)"
    )
    # Halved down to the culprit: 16 → 8 → 4 → 2 → 1, each refused half split again and
    # each clean half committed once: 9 transactions, not 16.
    assert len(attempts) == 9
    assert sorted(i for a in attempts[1:] if "culprit" not in a for i in a) == sorted(
        i for i in ids if i != "culprit"
    )


async def test_a_failure_that_is_not_the_events_fault_fails_the_group_unsplit() -> None:
    attempts = 0

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        nonlocal attempts
        attempts += 1
        raise asyncpg.InsufficientPrivilegeError("permission denied for table jobs")

    # (A deadlock is recorded again whole first: tests/unit/test_rollback_retries.py.)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await record_apart(record, [usage_event("a"), usage_event("b"), usage_event("c")])
    assert attempts == 1


@pytest.mark.parametrize(("overlap", "flying"), [(False, [1, 1]), (True, [1, 2])])
async def test_a_second_group_is_in_flight_only_while_groups_overlap(
    overlap: bool, flying: list[int]
) -> None:
    # Two writers. The first group is held in flight; a second event comes meanwhile. With
    # overlap (groups taking the long way), the second writer sends it at once: two groups
    # in flight. Without (groups in one round trip), it waits for the first commit, and the
    # group in flight is always one.
    in_flight = 0
    seen: list[int] = []
    first_taken = asyncio.Event()
    release = asyncio.Event()

    async def record(events: Sequence[UsageEvent], *, one_event_per_request: bool) -> BatchOutcome:
        nonlocal in_flight
        in_flight += 1
        seen.append(in_flight)
        if not first_taken.is_set():
            first_taken.set()
            await release.wait()
        await asyncio.sleep(0)
        in_flight -= 1
        return BatchOutcome([EventOutcome(e.id, ACCEPTED) for e in events])

    # submit() takes only UsageEvents
    writer = GroupWriter(cast(RecordRequestsFn, record), writers=2, overlap=lambda: overlap)
    writer.start()
    first = asyncio.ensure_future(writer.submit(usage_event("a")))
    await first_taken.wait()
    second = asyncio.ensure_future(writer.submit(usage_event("b")))
    if overlap:
        await wait_until(lambda: len(seen) == 2, 5, "the second group to be sent")
    else:
        for _ in range(20):  # time enough for a second writer to take it, were it allowed
            await asyncio.sleep(0)
        assert seen == [1] and not second.done()
    release.set()
    assert [(await first).status, (await second).status] == [ACCEPTED, ACCEPTED]
    await writer.stop()
    assert seen == flying


def _opening(budgets_exist: bool, credits_exist: bool) -> asyncpg.Record:
    """An opening's row as ``OneTrip.learn`` reads it, by column name: a dict stands in."""
    row = {"budgets_exist": budgets_exist, "credits_exist": credits_exist}
    return row  # type: ignore[return-value]


def test_groups_take_the_long_way_until_an_opening_says_no_credit_account_exists() -> None:
    trip = OneTrip()
    assert trip.long_way  # nothing read yet
    trip.learn(_opening(budgets_exist=False, credits_exist=False), [])
    assert not trip.long_way
    trip.learn(_opening(budgets_exist=True, credits_exist=True), [])
    assert trip.long_way  # prepaid credits: draws want statements of their own
    trip.learn(_opening(budgets_exist=True, credits_exist=False), [])
    assert not trip.long_way  # budgets go in one trip
    trip.enabled = False  # a transaction pooler, or no TEMPORARY privilege
    assert trip.long_way
