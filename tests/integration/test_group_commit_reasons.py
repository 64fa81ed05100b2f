"""The reason a conflict gives names who sent the id first. Two single events
(``POST /v1/events``, one each, from two requests) with one id and different content are a
conflict with an earlier request, whether they land in two transactions or the group
commit puts them in one; an id repeated inside one client's batch stays "an earlier event
of this batch". On the real write path (``Recorder`` on PostgreSQL), the group driven
deterministically: both requests are queued before the writer starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import create_pool
from service.metrics.instruments import Metrics
from service.recording.group_commit import GroupWriter
from service.recording.models import ACCEPTED, CONFLICT, EventOutcome
from service.recording.recorder import Recorder
from service.settings import DatabaseSettings, IngestSettings
from tests.support.events import usage_event
from tests.support.waiting import wait_until

FIRST = usage_event("same", input_tokens=1000)
OTHER = usage_event("same", input_tokens=2000)
BY_REQUEST = (
    "id already recorded by an earlier request with different input_tokens; the first is kept"
)
BY_BATCH = (
    "id already recorded by an earlier event of this batch with different input_tokens; "
    "the first is kept"
)


@pytest.fixture(params=[True, False], ids=["stored", "persist-off"])
async def recorder(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Recorder]:
    """The write path; also with LUC_INGEST_PERSIST=0, which answers without storing."""
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    try:
        yield Recorder(
            pool, CatalogCache(), PlanCache(), IngestSettings(persist=request.param), Metrics()
        )
    finally:
        await pool.close()


async def test_two_requests_of_one_id_in_one_group_conflict_with_an_earlier_request(
    recorder: Recorder,
) -> None:
    writer = GroupWriter(recorder.record_events, writers=1)  # as the app builds it
    answers = asyncio.gather(writer.submit(FIRST), writer.submit(OTHER))
    # Both requests wait in the queue before the writer looks: one group holds both.
    await wait_until(lambda: writer.waiting == 2, 5, "both requests to be queued")
    writer.start()
    first, second = await answers
    await writer.stop()

    # One call of the write path, with two events.
    process = recorder.metrics.process
    assert process.get_sample_value("luc_ingest_batch_events_count") == 1
    assert process.get_sample_value("luc_ingest_batch_events_sum") == 2
    assert first == EventOutcome("same", ACCEPTED)
    assert second == EventOutcome("same", CONFLICT, BY_REQUEST)


async def test_a_repeat_inside_one_batch_still_names_the_batch(recorder: Recorder) -> None:
    outcome = await recorder.record_events([FIRST, OTHER])
    assert outcome.results == [
        EventOutcome("same", ACCEPTED),
        EventOutcome("same", CONFLICT, BY_BATCH),
    ]


async def test_two_requests_in_two_transactions_give_the_same_reason(recorder: Recorder) -> None:
    first = (await recorder.record_events([FIRST])).results
    second = (await recorder.record_events([OTHER])).results
    assert first == [EventOutcome("same", ACCEPTED)]
    if recorder.settings.persist:
        assert second == [EventOutcome("same", CONFLICT, BY_REQUEST)]
    else:  # nothing stored: the second transaction does not know the first
        assert second == [EventOutcome("same", ACCEPTED)]
