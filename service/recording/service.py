"""Recording a batch: the one place where events flow through every stage.

pricing (catalog in force at each event, then the price of the job's customer's plan in
force at it) → ingest and ledger (store the new ids, append their charges) → rollups →
budgets (spend, alerts, outbox), all in one transaction that ``record_batch`` owns, so a
reader never sees an entry without its rollup. Outcomes are returned only once that
transaction has committed.

A batch costs a fixed handful of round trips whatever its size: begin (with the lock),
open (what the stages need to know, and its jobs locked with their customers and plans;
a job's first customer claimed apart, once per job), the priced events staged (inline
for a small group, binary ``COPY`` for a batch), one statement that stores the new
events, appends their charges and rolls them up, budgets only when some exist, and the
commit. A large batch looks first at what it will be priced with, and is priced and
staged before it locks its jobs (``recording.early``); a lone event's statement adds it
to the rollups without grouping (``queries.RECORD_ONE``). A small group that what the
process's last opening found still describes (no credit account, no claim, no
reservation) goes in one round trip instead: one statement that opens, checks, stores,
appends, rolls up and counts the budgets' spend, committed as it answers
(``recording.one_trip``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
import msgspec
import structlog

from service.budgets.reservations import Call
from service.budgets.reservations import settle as settle_reservations
from service.budgets.service import apply_entries as apply_to_budgets
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import CONNECTION_ERRORS, Connection, gave_up
from service.ingest.models import Rejection, UsageEvent, differing_fields
from service.ingest.service import stored_events
from service.jobs.service import (
    JobCustomer,
    batch_job_ids,
    customer_mismatch,
    customer_mismatches,
    lock_job_customers,
)
from service.ledger.service import charges_for, staged_price
from service.locks import lock_repricing
from service.pricing.catalog import Catalog
from service.recording import queries
from service.recording.credits import burn_charges
from service.recording.early import price_and_stage, price_early
from service.recording.models import (
    ACCEPTED,
    CONFLICT,
    DUPLICATE,
    REJECTED,
    BatchOutcome,
    EventOutcome,
    RecordFn,
)
from service.recording.one_trip import OneTrip, record_in_one_trip
from service.recording.repricing import reprice_jobs

log = structlog.get_logger("luc.ingest")

# Failures caused by an event's own values: PostgreSQL refused one (SQLSTATE class 22, a
# CHECK or NOT NULL constraint), or it could not even be encoded for PostgreSQL. The same
# event fails the same way every time, so it is rejected and the rest recorded without it.
# Anything else (PostgreSQL away, a deadlock, a unique key raced) is not the event's fault:
# it fails the request, which the client retries.
_REFUSALS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.CheckViolationError,
    asyncpg.NotNullViolationError,
    ValueError,  # UnicodeEncodeError among them: text no UTF-8 encoding holds
    ArithmeticError,  # decimal.Inexact from exact pricing, OverflowError
    RecursionError,
    msgspec.EncodeError,
)


async def record_batch(
    conn: Connection,
    catalog_cache: CatalogCache,
    items: Sequence[UsageEvent | Rejection],
    *,
    plan_cache: PlanCache | None = None,
    one_event_per_request: bool = False,
    one_trip: OneTrip | None = None,
    retry_rejected: bool = True,
) -> BatchOutcome:
    """Store, price, append and roll up ``items`` in one transaction; outcomes in order.
    Each event is priced for its job's customer under the plan in force at its time
    (``plan_cache``, which knows ``LUC_DEFAULT_PLAN``; the service always passes its own,
    and without one, as tools and tests may, no default plan prices anything).
    ``one_event_per_request``: the items are the single events of as many requests (a
    group commit), so a repeated id was sent by an earlier request, not by this batch.
    ``one_trip``: what the process's last openings found; a small group that they still
    describe is recorded in one round trip (``recording.one_trip``)."""
    plan_cache = plan_cache or PlanCache()
    outcomes: list[EventOutcome | None] = [None] * len(items)
    first_by_id: dict[str, UsageEvent] = {}
    repeats: list[tuple[int, UsageEvent]] = []
    for index, item in enumerate(items):
        if isinstance(item, Rejection):
            outcomes[index] = EventOutcome(item.id, REJECTED, item.reason)
        elif item.id in first_by_id:
            repeats.append((index, item))
        else:
            first_by_id[item.id] = item

    fresh = list(first_by_id.values())
    alerts = 0
    inserted: set[str] = set()
    known: dict[str, UsageEvent] = {}
    mismatched: dict[str, str] = {}
    jobs: dict[str, JobCustomer] = {}
    warnings: dict[str, str] = {}
    stored = (
        None
        if not fresh or one_trip is None
        else await record_in_one_trip(conn, catalog_cache, plan_cache, fresh, one_trip)
    )
    if stored is not None:
        inserted = {event_id for event_id, _ in stored.entries}
        # Its alerts, if any, are committed: the dispatcher is woken for them on a hint.
        alerts = int(stored.may_alert)
        # Committed already: a replayed id's first event is stored for good.
        known = await stored_events(conn, [e.id for e in fresh if e.id not in inserted])
    elif fresh:
        inside_longer_transaction = conn.is_in_transaction()
        async with _recording_transaction(conn):
            # A large batch is priced and staged before its jobs are locked, and again
            # below only if what it was priced with moved meanwhile (service.recording.early).
            early = (
                None
                if inside_longer_transaction
                else await price_early(conn, catalog_cache, plan_cache, fresh)
            )
            opened = await conn.fetchrow(queries.OPEN_BATCH, batch_job_ids(fresh))
            assert opened is not None
            # A job has one customer: the first event naming one sets it, race-free (the
            # job's row stays locked until the commit, so its customer cannot change under
            # the prices below); an event naming another is rejected alone.
            locked = zip(opened["customer_ids"], opened["plan_ids"], strict=True)
            held = dict(zip(opened["job_ids"], locked, strict=True))
            jobs = await lock_job_customers(conn, fresh, held)
            if one_trip is not None:
                one_trip.learn(opened, ((j, (c.customer_id, c.plan_id)) for j, c in jobs.items()))
            mismatched = await customer_mismatches(conn, fresh, jobs)
            fresh = [e for e in fresh if e.id not in mismatched]
            # Every event is priced before knowing which ids are new: replays are rare,
            # and the database tells new from replayed in the statement that stores them.
            if early is not None and early.holds(opened, jobs, mismatched):
                priced = early.priced
            else:
                priced = await price_and_stage(
                    conn,
                    catalog_cache,
                    plan_cache,
                    opened,
                    fresh,
                    jobs,
                    # What was staged early goes, as a longer transaction's earlier batch.
                    rows_staged_before=inside_longer_transaction or early is not None,
                )
            statement = queries.recording(priced.staging.source, len(priced.staged))
            rows = await conn.fetch(statement, *priced.staging.arguments)
            inserted = {r["event_id"] for r in rows}
            # Prepaid credits burn down as the charges land, before the re-pricing below
            # appends its adjustments (ledger order). Asked once per batch: while no
            # customer holds credits, nothing more happens.
            if opened["credits_exist"]:
                alerts += await burn_charges(
                    conn, map(staged_price, priced.staged), {r["event_id"]: r["id"] for r in rows}
                )
            # A job given its first customer by this batch: what it recorded before was
            # priced for no customer, and is re-priced now (SPEC §11), in this transaction.
            # Its row is locked: every batch of it before has committed, none after can
            # price its events until this one commits.
            claimed = sorted(job for job, c in jobs.items() if c.set_now)
            if claimed:
                alerts += await reprice_jobs(
                    conn,
                    priced.catalog,
                    priced.plans,
                    claimed,
                    "the job's customer was set by its events",
                )
            # A call admitted under a reservation releases it as its spend lands; a
            # replayed event settled its reservation when it was first recorded.
            # Only the key that reserved (or LUC itself, or an admin key) settles.
            warnings = await settle_reservations(
                conn,
                [
                    Call(e.id, e.job_id, e.reservation_id, e.reservation_key)
                    for e in fresh
                    if e.reservation_id and e.id in inserted
                ],
            )
            if opened["budgets_exist"]:
                alerts += await apply_to_budgets(conn, [r["id"] for r in rows])
            known = await stored_events(conn, [e.id for e in fresh if e.id not in inserted])

    for index, item in enumerate(items):
        if outcomes[index] is not None or not isinstance(item, UsageEvent):
            continue
        if item.id in mismatched:
            outcomes[index] = EventOutcome(item.id, REJECTED, mismatched[item.id])
        elif first_by_id.get(item.id) is item:
            if item.id in inserted:
                outcomes[index] = EventOutcome(item.id, ACCEPTED, warning=warnings.get(item.id))
            else:
                outcomes[index] = _compare(item, known[item.id], "an earlier request")
    # The repeats of an id whose first event named another customer than its job's: that
    # event stored nothing, so a repeat that differs from it is recorded as if it had never
    # been sent (the next one of them first), never rejected for its reason; one the same
    # as it is rejected as it was. Another transaction, after this one: each is an event of
    # its own, and a request retried whole finds this one's events stored (rare: a gateway
    # resending a corrected event, or two requests with the same id in one group commit).
    # A repeat that names another customer of its job too is rejected for that at once, and
    # the second round is the last (a repeat that mismatches again there keeps its first's
    # reason): a batch of one id thousands of times takes two rounds, not one per copy.
    after_rejected: list[tuple[int, UsageEvent]] = []
    for index, item in repeats:
        if item.id in mismatched:
            job = jobs.get(item.job_id)
            own = None if job is None else customer_mismatch(item, job)
            if own is not None:  # it names another customer of its (locked) job too
                outcomes[index] = EventOutcome(item.id, REJECTED, own)
            elif retry_rejected and differing_fields(item, first_by_id[item.id]):
                after_rejected.append((index, item))
            else:
                outcomes[index] = EventOutcome(item.id, REJECTED, mismatched[item.id])
            continue
        # Compare with what is kept under the id: this batch's first event when it was
        # inserted, else the stored one (a repeat of a conflicting event is a conflict too).
        if item.id in inserted:
            outcomes[index] = _compare(item, first_by_id[item.id], _repeated(one_event_per_request))
        else:
            outcomes[index] = _compare(item, known[item.id], "an earlier request")
    if after_rejected:
        again = await record_batch(
            conn,
            catalog_cache,
            [item for _, item in after_rejected],
            plan_cache=plan_cache,
            one_event_per_request=one_event_per_request,
            retry_rejected=False,
        )
        alerts += again.alerts
        for (index, _), outcome in zip(after_rejected, again.results, strict=True):
            outcomes[index] = outcome
    return BatchOutcome([o for o in outcomes if o is not None], alerts=alerts)


@contextlib.asynccontextmanager
async def _recording_transaction(conn: Connection) -> AsyncIterator[None]:
    """The transaction of a batch, holding the re-pricing lock shared: batches run side by
    side, but not beside a new catalog version that is pricing unpriced events, nor a
    budget being created (service.locks).

    Begun with the lock in one round trip (``queries.BEGIN_BATCH``) where asyncpg's
    ``conn.transaction()`` would send its ``BEGIN`` alone: a lone event's transaction
    costs a handful of round trips, so one less is felt (nothing in it opens a nested
    ``conn.transaction()``, which asyncpg refuses inside a transaction begun so). Inside a
    caller's transaction, a savepoint, as ``conn.transaction()`` makes."""
    if conn.is_in_transaction():
        async with conn.transaction():
            await lock_repricing(conn, shared=True)
            yield
        return
    try:
        await conn.execute(queries.BEGIN_BATCH)
        yield
    except BaseException as exc:
        # As asyncpg's own transaction does; a connection that broke meanwhile has no
        # transaction left to end (the pool drops it), and the failure is the caller's. One
        # PostgreSQL did not answer in time is closed instead (db.gave_up): a ROLLBACK
        # would wait as long again.
        if not conn.is_closed() and conn.is_in_transaction() and not gave_up(conn, exc):
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


async def record_apart(record: RecordFn, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
    """``record(items)`` (one transaction); when the database refuses it because of some
    event's values, the items are recorded again in halves, each in its own transaction,
    down to the events at fault, which are rejected with the database's reason. One value
    that validation let through never sinks its neighbours, nor the other requests of a
    group commit; a batch that fails this way is committed in parts, every part whole.
    Any other failure propagates (parts already committed stay: a retry finds them as
    duplicates).
    """
    try:
        return await _record_again_after_rollbacks(record, items)
    except _REFUSALS as exc:
        refusal = exc
    events = [i for i, item in enumerate(items) if isinstance(item, UsageEvent)]
    if len(events) > 1:
        # Split between two events, so that each half holds at least one to store.
        middle = events[len(events) // 2]
        first = await record_apart(record, items[:middle])
        second = await record_apart(record, items[middle:])
        return BatchOutcome(first.results + second.results, alerts=first.alerts + second.alerts)
    reason = f"the database refused this event ({type(refusal).__name__}: {refusal})"
    outcomes = []
    for item in items:
        if isinstance(item, Rejection):
            outcomes.append(EventOutcome(item.id, REJECTED, item.reason))
        else:
            log.warning("event_refused", event_id=item.id, error=repr(refusal))
            outcomes.append(EventOutcome(item.id, REJECTED, reason))
    return BatchOutcome(outcomes)


ROLLBACK_RETRIES = 3
"""How often a batch whose transaction PostgreSQL rolled back to break a lock cycle (a
deadlock, a serialization failure) is recorded again before its client gets the error."""


async def _record_again_after_rollbacks(
    record: RecordFn, items: Sequence[UsageEvent | Rejection]
) -> BatchOutcome:
    """``record(items)``, again when PostgreSQL rolled its transaction back to break a cycle
    of waits: nothing of it was stored, and the next attempt, which finds the other side
    committed, is the answer the client would get by retrying, without a 500 to retry on.
    LUC takes its locks in one order so that no cycle forms (``jobs.queries.locked_jobs``);
    this is for one that would form anyway."""
    for attempt in range(ROLLBACK_RETRIES):
        try:
            return await record(items)
        except asyncpg.TransactionRollbackError as exc:
            log.warning(
                "batch_rolled_back",
                error=type(exc).__name__,
                attempt=attempt + 1,
                events=len(items),
            )
    return await record(items)


def _repeated(one_event_per_request: bool) -> str:
    """Who sent the first of an id repeated inside one transaction: in a group commit each
    event is its own client's request, so the client never sent the first one beside it."""
    return "an earlier request" if one_event_per_request else "an earlier event of this batch"


def _compare(event: UsageEvent, first: UsageEvent, where: str) -> EventOutcome:
    differs = differing_fields(first, event)
    if not differs:
        return EventOutcome(event.id, DUPLICATE)
    return EventOutcome(
        event.id,
        CONFLICT,
        f"id already recorded by {where} with different {', '.join(differs)}; the first is kept",
    )


def price_only(
    catalog: Catalog,
    items: Sequence[UsageEvent | Rejection],
    *,
    one_event_per_request: bool = False,
) -> BatchOutcome:
    """What ``record_batch`` answers, without the database: ``LUC_INGEST_PERSIST=0``.

    A benchmarking switch (issue 9's B2 reference): every event is validated (already) and
    priced as ingest prices it, but nothing is stored, so an id sent twice in two requests
    is accepted twice. Repeats inside the batch are still told apart.
    """
    first_by_id: dict[str, UsageEvent] = {}
    outcomes = []
    charges = charges_for(catalog)
    for item in items:
        if isinstance(item, Rejection):
            outcomes.append(EventOutcome(item.id, REJECTED, item.reason))
        elif (first := first_by_id.get(item.id)) is not None:
            outcomes.append(_compare(item, first, _repeated(one_event_per_request)))
        else:
            first_by_id[item.id] = item
            charges.row(item)
            outcomes.append(EventOutcome(item.id, ACCEPTED))
    return BatchOutcome(outcomes)


def rejected_only(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
    """Outcomes for a batch in which no event passed validation (nothing to store)."""
    return BatchOutcome(
        [EventOutcome(i.id, REJECTED, i.reason) for i in items if isinstance(i, Rejection)]
    )
