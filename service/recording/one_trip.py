"""A small group recorded in one round trip.

A group recorded the long way (``service.record_batch``) is a transaction of four round
trips or more: begin with the re-pricing lock, open (stamps, the jobs locked with their
customers), the statement that stores, appends and rolls up, the budgets' spend and alerts,
commit. Each waits for PostgreSQL and then for the worker's event loop, busy with the other
requests: with 8 clients sending single events, a group of about three spent a median 4 ms
in them, most of a request's time.

What the opening reads rarely changes: the catalog and the plans (their stamps), whether
any budget or credit account exists, and each job's customer. So a small group is priced
with what the last opening found (``OneTrip``), and sent as one statement
(``queries.ONE_TRIPS``) that takes the lock, reads all of it again under the locks and
stores the group only if every assumption holds; outside a transaction block, PostgreSQL
commits it before it answers. When something moved (a new catalog version, a job's first
customer, a credit account, a first budget), nothing is stored and the group goes the long
way, which then knows. Once budgets exist, the statement counts the spend towards the live
budgets its opening read after the lock, and raises their alerts, as the long way does.

Only what the long way would do with no further statement goes in one trip: no event
naming a customer its job does not have (a claim or a rejection), no reservation to
settle, no credit account to draw on, no caller's transaction around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog

from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import Connection
from service.ingest.models import UsageEvent
from service.jobs.service import JobCustomer, JobRow, batch_job_ids
from service.ledger.service import INLINE_LIMIT, inline_staging
from service.recording import queries
from service.recording.early import price

log = structlog.get_logger("luc.ingest")

# The connection has no opening function yet (no pg_temp schema, or none in it).
_NO_FUNCTION = (asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError)

REMEMBERED_SESSIONS = 10_000
"""Server sessions the process remembers having made its opening function on (all
forgotten at once past this: each then makes it again, which costs a statement)."""

REMEMBERED_JOBS = 100_000
"""Jobs whose customer the process remembers (the oldest forgotten first): a forgotten job
is assumed to have none, and a group that finds otherwise goes the long way once."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What a group's one trip stored."""

    entries: list[tuple[str, int]]
    """Each stored event's id with its charge's entry id."""
    may_alert: bool
    """Its spend may have passed a threshold of a budget with a webhook
    (``budgets.queries.alerts_may_follow``): the dispatcher should look now."""


@dataclass
class OneTrip:
    """What the last openings found, in this process: the assumptions a group is priced
    with before it is sent in one trip."""

    enabled: bool = True
    """False behind a transaction pooler (a connection's function may not be on the next
    transaction's server session), and once a connection could not make or keep it (a role
    without TEMPORARY): every group goes the long way from then on."""
    opened: bool = False
    """An opening has been read: the flags below are what it found."""
    budgets_exist: bool = True
    """The group's statement then counts the spend towards them (else it expects none)."""
    credits_exist: bool = True
    _jobs: dict[str, JobRow] = field(default_factory=dict)
    _sessions: set[int] = field(default_factory=set)
    """Backend pids of the server sessions the opening function was made on."""

    async def opening_on(self, conn: Connection) -> bool:
        """Make ``conn``'s opening function (in pg_temp) once per server session, before its
        first group: a first statement left to fail instead would log an ERROR in
        PostgreSQL's log for every new pooled connection. False, and one trip off for the
        process, when it cannot be made (a role without TEMPORARY)."""
        session = conn.get_server_pid()
        if session in self._sessions:
            return True
        try:
            await conn.execute(queries.CREATE_OPEN_RECORDING)
        except (*_NO_FUNCTION, asyncpg.InsufficientPrivilegeError) as exc:
            self.enabled = False
            log.warning(
                "one_trip_recording_off",
                error=str(exc),
                detail="no function of the session's own (no TEMPORARY privilege, or a "
                "transaction pooler): every group takes four round trips",
            )
            return False
        if len(self._sessions) >= REMEMBERED_SESSIONS:
            self._sessions.clear()
        self._sessions.add(session)
        return True

    def forget(self, conn: Connection) -> None:
        """``conn``'s server session has no opening function after all."""
        self._sessions.discard(conn.get_server_pid())

    def learn(self, row: asyncpg.Record, jobs: Iterable[tuple[str, JobRow]]) -> None:
        """Remember an opening's flags (``row``: of OPEN_BATCH or ONE_TRIPS) and its jobs'
        customers and plans."""
        self.budgets_exist = bool(row["budgets_exist"])
        self.credits_exist = bool(row["credits_exist"])
        self.opened = True
        for job_id, held in jobs:
            self._jobs.pop(job_id, None)  # kept newest last
            self._jobs[job_id] = held
        while len(self._jobs) > REMEMBERED_JOBS:
            del self._jobs[next(iter(self._jobs))]

    @property
    def long_way(self) -> bool:
        """Whether groups take the long way here for now: one trip off, no opening read
        yet, or credit accounts exist."""
        return not (self.enabled and self.opened) or self.credits_exist

    def assumed(self, events: Sequence[UsageEvent]) -> dict[str, JobCustomer] | None:
        """Each job of ``events`` as they would be priced for it, or None when the group
        must go the long way."""
        if self.long_way:
            return None
        if len(events) > INLINE_LIMIT:
            return None
        jobs = {}
        for event in events:
            if event.reservation_id is not None:
                return None
            customer_id, plan_id = self._jobs.get(event.job_id, (None, None))
            if event.customer_id is not None and event.customer_id != customer_id:
                return None  # a job's first customer, or another one's: decided under lock
            jobs[event.job_id] = JobCustomer(customer_id, plan_id, set_now=False)
        return jobs


async def record_in_one_trip(
    conn: Connection,
    catalog_cache: CatalogCache,
    plan_cache: PlanCache,
    events: Sequence[UsageEvent],
    trip: OneTrip,
) -> Stored | None:
    """Store, append and roll up ``events`` (new ids, each once) in one statement, committed
    when it returns; answers what it stored, or None when nothing was stored because the
    group must go the long way (``record_batch``)."""
    catalog, plans_read = catalog_cache.loaded, plan_cache.loaded
    jobs = trip.assumed(events)
    if jobs is None or catalog is None or plans_read is None or conn.is_in_transaction():
        return None
    if not await trip.opening_on(conn):
        return None
    plans, plan_stamp = plans_read
    staged = price(events, catalog, plans, jobs)
    job_ids = batch_job_ids(events)
    statement = queries.one_trip(len(staged), budgets_counted=trip.budgets_exist)
    arguments = (
        *inline_staging(staged).arguments,
        job_ids,
        [jobs[j].customer_id for j in job_ids],
        [jobs[j].plan_id for j in job_ids],
        *catalog_cache.stamp,
        *plan_stamp,
    )
    try:
        row = await conn.fetchrow(statement, *arguments)
    except _NO_FUNCTION:
        # A session taken for one that had the function: a backend pid used again (after
        # a restart of the server, say). Made now, and the group sent again.
        trip.forget(conn)
        if not await trip.opening_on(conn):
            return None
        row = await conn.fetchrow(statement, *arguments)
    assert row is not None
    held = zip(row["customer_ids"], row["plan_ids"], strict=True)
    trip.learn(row, zip(row["job_ids"], held, strict=True))
    if not row["stored"]:
        return None
    return Stored(list(zip(row["event_ids"], row["entry_ids"], strict=True)), row["may_alert"])
