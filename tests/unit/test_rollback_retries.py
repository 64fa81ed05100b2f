"""A batch whose transaction PostgreSQL rolled back to break a cycle of waits (nothing of
it stored) is recorded again, up to ``ROLLBACK_RETRIES`` times, before its client sees the
error; a failure of another kind is not retried."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest

from service.ingest.models import Rejection, UsageEvent
from service.recording.models import ACCEPTED, BatchOutcome, EventOutcome
from service.recording.service import ROLLBACK_RETRIES, record_apart
from tests.support.events import usage_event


class Flaky:
    """A ``RecordFn`` that raises ``failures`` (in turn) before it records."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return BatchOutcome([EventOutcome(i.id, ACCEPTED) for i in items])


async def test_a_batch_rolled_back_by_a_deadlock_is_recorded_again() -> None:
    record = Flaky(
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
    )
    outcome = await record_apart(record, [usage_event("e1"), usage_event("e2")])
    assert [(o.id, o.status) for o in outcome.results] == [("e1", ACCEPTED), ("e2", ACCEPTED)]
    assert record.calls == 3


async def test_rollbacks_past_the_retries_reach_the_client() -> None:
    record = Flaky(
        *(asyncpg.DeadlockDetectedError("deadlock") for _ in range(ROLLBACK_RETRIES + 1))
    )
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await record_apart(record, [usage_event("e1")])
    assert record.calls == ROLLBACK_RETRIES + 1


async def test_a_failure_of_another_kind_is_not_retried() -> None:
    record = Flaky(asyncpg.UniqueViolationError("duplicate key"))
    with pytest.raises(asyncpg.UniqueViolationError):
        await record_apart(record, [usage_event("e1")])
    assert record.calls == 1
