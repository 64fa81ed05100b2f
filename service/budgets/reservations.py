"""May a call go ahead? A look (``check``), a reservation that holds its estimate against
every hard budget of the call (``reserve``), the settling of a reservation by the usage
event that names it (``settle``), and the release of one whose call spent nothing
(``release``).

A reservation's headroom is freed only by its own call's usage, by its release, or when it
expires: usage without a reservation id adds spend and never frees what another call
holds, so spent + reserved stays the measure of what is promised.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from service.budgets import queries
from service.budgets.models import BudgetStanding, CheckResult
from service.budgets.service import budget_from_row, period_start
from service.catalog.service import CatalogCache
from service.customers.credits import CreditStop, credit_stop
from service.customers.plans import PlanCache
from service.db import Connection
from service.errors import InvalidRequestError, NotFoundError
from service.money import EXACT, decimal_places
from service.pricing.plans import PlanVersion
from service.pricing.price import price_estimate
from service.wire import money_text

# An estimate is held as NUMERIC: keep it to amounts a bill can hold, as ingest does for
# provider costs, so that a wild one is refused by name rather than by the database.
_MAX_DIGITS_BEFORE_POINT = 18
_MAX_DECIMAL_PLACES = 30


def _estimate(estimated_cost_usd: Decimal | None) -> Decimal:
    if estimated_cost_usd is None:
        return Decimal(0)
    value = estimated_cost_usd
    if not value.is_finite() or value < 0:
        raise InvalidRequestError("estimated_cost_usd: must be a decimal amount, not negative")
    if (value and value.adjusted() >= _MAX_DIGITS_BEFORE_POINT) or (
        decimal_places(value) > _MAX_DECIMAL_PLACES
    ):
        raise InvalidRequestError(
            # money_text: the amount as sent, never an exponent (1E-31).
            f"estimated_cost_usd: {money_text(value)} is out of range (below "
            f"10^{_MAX_DIGITS_BEFORE_POINT} USD, at most {_MAX_DECIMAL_PLACES} decimal places)"
        )
    return value


async def _standings(
    conn: Connection,
    job_id: str | None,
    agent: str | None,
    models: Sequence[str],
    customer_id: str | None,
    now: datetime,
) -> list[BudgetStanding]:
    """The standing of every budget a call falls under; ``models``: those that may answer
    it (a model budget of any of them counts)."""
    budgets = [
        budget_from_row(r)
        for r in await conn.fetch(
            queries.SELECT_APPLICABLE, job_id, agent, list(models), customer_id
        )
    ]
    standings = []
    for b in budgets:
        start = period_start(b.period, now)
        row = await conn.fetchrow(queries.SELECT_STANDING, b.id, start)
        assert row is not None
        standings.append(BudgetStanding(b, start, row["spent_usd"], row["reserved_usd"]))
    return standings


def _refusing(
    standings: Iterable[BudgetStanding], estimates: Mapping[str, Decimal]
) -> list[BudgetStanding]:
    """Hard budgets without room: less left than the estimate in their measure, or nothing
    left at all."""
    return [
        s
        for s in standings
        if s.budget.hard
        and (
            s.remaining_usd < (estimate := estimates[s.budget.measure])
            or (estimate == 0 and s.remaining_usd <= 0)
        )
    ]


async def _refuse_another_customer(
    conn: Connection, job_id: str | None, customer_id: str | None
) -> None:
    """A call naming another customer than its job's is refused, naming both: its usage
    event would be (SPEC §11), so admitting it buys usage the ledger will not take, and
    counting the named customer's budgets lets it past the job's customer's."""
    if job_id is None or customer_id is None:
        return
    owner = await conn.fetchval(queries.SELECT_JOB_CUSTOMER_ID, job_id)
    if owner is not None and owner != customer_id:
        raise InvalidRequestError(
            f"customer_id: job {job_id!r} belongs to customer {owner!r}, and this call names "
            f"customer {customer_id!r}; a job has one customer (send its own, or change it "
            f"with PATCH /v1/jobs/{job_id} first)"
        )


async def _customer(
    conn: Connection, job_id: str | None, customer_id: str | None
) -> tuple[str | None, str | None]:
    """The customer a call is for and that customer's plan: the one named, else the job's
    (the customer its usage will be priced for)."""
    if customer_id is not None:
        return customer_id, await conn.fetchval(queries.SELECT_CUSTOMER_PLAN, customer_id)
    row = None if job_id is None else await conn.fetchrow(queries.SELECT_JOB_CUSTOMER, job_id)
    return (None, None) if row is None else (row["customer_id"], row["plan_id"])


async def _estimates(
    conn: Connection,
    estimate: Decimal,
    standings: Sequence[BudgetStanding],
    model: str | None,
    plan_id: str | None,
    now: datetime,
    catalog: CatalogCache | None,
    plans: PlanCache | None,
) -> dict[str, Decimal]:
    """The call's estimate in each measure (``models.MEASURES``). The estimate is at the
    catalog's list price, and stands for the actual cost before the call; a price budget
    holds what the customer's plan in force now would charge for it
    (``pricing.price.price_estimate``)."""
    estimates = {"cost": estimate, "actual_cost": estimate, "price": estimate}
    if any(s.budget.measure == "price" for s in standings):
        plan = (await (plans or PlanCache()).get(conn)).in_force(plan_id, now)
        quote = None
        if catalog is not None and model is not None:
            quote = (await catalog.get(conn)).quote(model, now).price
        estimates["price"] = price_estimate(estimate, plan, quote)
    return estimates


def _reason(refusing: Sequence[BudgetStanding], estimates: Mapping[str, Decimal]) -> str | None:
    if not refusing:
        return None
    first = refusing[0]
    b = first.budget
    # A price budget holds the estimate at the customer's price: said, or "10 USD left"
    # beside a refused estimate of 8 read as a contradiction.
    priced = (
        f"; it counts the customer's price, at which the call's estimate is "
        f"{money_text(estimates['price'])} USD"
        if b.measure == "price" and estimates["price"] != estimates["cost"]
        else ""
    )
    return (
        f"budget {b.id} ({b.scope}"
        + (f" {b.scope_id}" if b.scope_id else "")
        # money_text: str() of a Decimal under 10^-6 has an exponent (1E-7).
        + f", {b.period}) has {money_text(first.remaining_usd)} USD left of "
        f"{money_text(b.limit_usd)}{priced}"
    )


def _least_remaining(standings: Iterable[BudgetStanding]) -> Decimal | None:
    """The least the budgets that decide have left: the hard ones when any applies (a soft
    budget spent past its limit showed -5 beside "allowed": true), else every one."""
    standings = list(standings)
    deciding = [s for s in standings if s.budget.hard] or standings
    return min((s.remaining_usd for s in deciding), default=None)


@dataclass(frozen=True, slots=True)
class _Models:
    """The models that may answer a call, by catalog id (the ledger, so model budgets and
    settling, names models by id: an alias is resolved as pricing will resolve it), and
    those of them the catalog cannot price now."""

    model: str | None
    """The call's own model."""
    ids: list[str]
    """It and its fallbacks, each once."""
    unpriced: list[str]


async def _models(
    conn: Connection,
    catalog: CatalogCache | None,
    model: str | None,
    now: datetime,
    fallback_models: Sequence[str] = (),
) -> _Models:
    """The call's models, from one look at the catalog. Without a catalog, ``model`` and
    ``fallback_models`` are ids already (LUC's gateway resolved them, and refused one it
    cannot price)."""
    named = _listed(model) + list(fallback_models)
    if catalog is None:
        return _Models(model, list(dict.fromkeys(named)), [])
    prices = await catalog.get(conn)
    quotes = [prices.quote(name, now) for name in named]
    ids = [quote.model_id for quote in quotes]
    return _Models(
        ids[0] if model is not None else None,
        list(dict.fromkeys(ids)),
        list(dict.fromkeys(q.model_id for q in quotes if q.price is None)),
    )


def _price_unknown(plan: PlanVersion | None, model_id: str) -> bool:
    """Whether a call to ``model_id``, which the catalog cannot price, leaves its price under
    ``plan`` unknown: the plan prices it from the catalog's cost (or there is no plan, and
    the price is that cost), and does not list the model with prices of its own. On the
    ``actual`` basis the provider's reported cost makes the price, as it makes the spend of
    an ``actual_cost`` budget."""
    if plan is None:
        return True
    return model_id not in plan.models and plan.basis == "catalog"


async def _blind(
    conn: Connection,
    standings: Sequence[BudgetStanding],
    models: _Models,
    plan_id: str | None,
    now: datetime,
    plans: PlanCache | None,
) -> list[BudgetStanding]:
    """Hard budgets that could not count the call at all: it may be answered by a model
    the catalog cannot price, and they measure what such an event leaves unknown (SPEC §3:
    kept, listed, never counted as zero): its cost, or a price made from it. Admitted, its
    usage settled the reservation and added nothing: a 1 USD budget let through calls the
    provider billed 15 USD for. (``actual_cost`` counts the provider's reported cost.)"""
    if not models.unpriced:
        return []
    hard = [s for s in standings if s.budget.hard]
    blind = [s for s in hard if s.budget.measure == "cost"]
    if any(s.budget.measure == "price" for s in hard):
        plan = (await (plans or PlanCache()).get(conn)).in_force(plan_id, now)
        if any(_price_unknown(plan, model_id) for model_id in models.unpriced):
            blind += [s for s in hard if s.budget.measure == "price"]
    return sorted(blind, key=lambda s: s.budget.id)


def _blind_reason(blind: Sequence[BudgetStanding], models: _Models) -> str:
    b = blind[0].budget
    return (
        f"budget {b.id} ({b.scope}"
        + (f" {b.scope_id}" if b.scope_id else "")
        + f", {b.period}) is hard and counts {b.measure.replace('_', ' ')}, which the call "
        f"would leave unknown: the catalog prices no {', '.join(map(repr, models.unpriced))} "
        "now (add it to the catalog, or count the budget's actual_cost)"
    )


async def check(
    conn: Connection,
    *,
    job_id: str | None,
    agent: str | None,
    model: str | None,
    estimated_cost_usd: Decimal | None,
    now: datetime,
    catalog: CatalogCache | None = None,
    customer_id: str | None = None,
    plans: PlanCache | None = None,
) -> CheckResult:
    """Would a call of this estimate be admitted now? Only looks: holds nothing.

    With ``catalog``, ``model`` may be an alias (see ``_models``). The customer's budgets
    count too: ``customer_id``'s, else the job's customer's. The job's customer (else
    ``customer_id``) refuses it under credit_stop while its prepaid credits are at zero."""
    estimate = _estimate(estimated_cost_usd)
    await _refuse_another_customer(conn, job_id, customer_id)
    models = await _models(conn, catalog, model, now)
    stop = await credit_stop(conn, job_id, customer_id)
    customer_id, plan_id = await _customer(conn, job_id, customer_id)
    standings = await _standings(conn, job_id, agent, models.ids, customer_id, now)
    if stop is not None:
        return _stopped(stop, standings)
    if blind := await _blind(conn, standings, models, plan_id, now, plans):
        return _judged(standings, blind, {}, _blind_reason(blind, models))
    estimates = await _estimates(
        conn, estimate, standings, models.model, plan_id, now, catalog, plans
    )
    return _judged(standings, _refusing(standings, estimates), estimates)


def _listed(model: str | None) -> list[str]:
    return [] if model is None else [model]


def _judged(
    standings: list[BudgetStanding],
    refusing: list[BudgetStanding],
    estimates: Mapping[str, Decimal],
    reason: str | None = None,
) -> CheckResult:
    """The budgets' answer without a reservation: refused by those with no room left for
    the estimate (``refusing``; or that could not count the call, with its ``reason``),
    else admitted."""
    return CheckResult(
        allowed=not refusing,
        remaining_usd=_least_remaining(standings),
        standings=standings,
        reason=reason or _reason(refusing, estimates),
        refused_by="budget" if refusing else None,
    )


def _stopped(stop: CreditStop, standings: list[BudgetStanding]) -> CheckResult:
    return CheckResult(
        allowed=False,
        remaining_usd=_least_remaining(standings),
        standings=standings,
        reason=stop.reason,
        refused_by="credits",
    )


async def reserve(
    conn: Connection,
    *,
    job_id: str,
    agent: str,
    model: str | None,
    estimated_cost_usd: Decimal,
    now: datetime,
    reservation_seconds: int,
    customer_id: str | None = None,
    catalog: CatalogCache | None = None,
    plans: PlanCache | None = None,
    api_key_id: int | None = None,
    fallback_models: Sequence[str] = (),
) -> CheckResult:
    """Admit a call or refuse it: refused while the job's customer (else ``customer_id``)
    has credit_stop and no prepaid credits left. Admitted under hard budgets, its estimate
    is held against each of them under one new reservation id until the call's usage names
    that id, or the reservation expires. Without a hard budget nothing needs holding (no
    reservation id). With ``catalog``, ``model`` may be an alias (see ``_models``). The
    customer's budgets count too (``customer_id``'s, else the job's customer's); a price
    budget holds the estimate as the customer's plan prices it (``plans``). The
    reservation remembers ``api_key_id``, the key that asked (see ``release``).
    ``fallback_models``: the other models that may answer the call (OpenRouter's
    ``models``); a hard budget of any of them must have room for the estimate too, and
    holds it under the same reservation, or a budget on a model could be spent past its
    limit by a call that merely names it as a fallback.
    """
    estimate = _estimate(estimated_cost_usd)
    await _refuse_another_customer(conn, job_id, customer_id)
    called = await _models(conn, catalog, model, now, fallback_models)
    models, model = called.ids, called.model
    # Prepaid credits first: a customer under credit_stop with none left is refused
    # whatever its budgets say. (No lock: a grant that commits meanwhile admits the next
    # call; a batch drawing the last credit meanwhile lets this one through, as a call
    # admitted just before would have been: credit_stop stops calls at zero, it does not
    # reserve credit.)
    if (stop := await credit_stop(conn, job_id, customer_id)) is not None:
        customer_id, _ = await _customer(conn, job_id, customer_id)
        return _stopped(stop, await _standings(conn, job_id, agent, models, customer_id, now))
    locked: list[int] | None = None
    while True:
        async with conn.transaction():
            customer_id, plan_id = await _customer(conn, job_id, customer_id)
            hard_ids = locked
            if hard_ids is None:
                hard_ids = [
                    r["id"]
                    for r in await conn.fetch(
                        queries.SELECT_APPLICABLE, job_id, agent, models, customer_id
                    )
                    if r["hard"]
                ]
            if hard_ids:
                # Concurrent reservations of a budget queue here, and each reads the
                # standing (spend and open reservations, in one statement) only once those
                # before it have committed: together they never promise more than the limit.
                await conn.execute(queries.LOCK_BUDGETS, hard_ids)
            standings = await _standings(conn, job_id, agent, models, customer_id, now)
            hard = [s for s in standings if s.budget.hard]
            if any(s.budget.id not in hard_ids for s in hard):
                # A hard budget that appeared (created, or made hard) while this waited
                # for its locks: holding against it unlocked, two reservations would read
                # its standing side by side and together pass its limit. Start again
                # (nothing is written yet; this ends the transaction and its locks) and
                # lock the whole set, in id order as every reservation does.
                locked = sorted(s.budget.id for s in hard)
                continue
            if blind := await _blind(conn, standings, called, plan_id, now, plans):
                return _judged(standings, blind, {}, _blind_reason(blind, called))
            estimates = await _estimates(
                conn, estimate, standings, model, plan_id, now, catalog, plans
            )
            refusing = _refusing(standings, estimates)
            if refusing or not hard:
                return _judged(standings, refusing, estimates)
            reservation_id = uuid.uuid4()
            rows = await conn.fetch(
                queries.INSERT_RESERVATIONS,
                reservation_id,
                [s.budget.id for s in hard],
                [s.period_start for s in hard],
                job_id,
                agent,
                model,
                customer_id,
                [estimates[s.budget.measure] for s in hard],
                float(reservation_seconds),  # an interval length in seconds, not money
                api_key_id,
                estimate,  # as asked: what a hard budget made later holds (``holds``)
            )
        break
    held = [
        # Exact: at Python's default 28 digits the sum, and so remaining_usd, would round.
        BudgetStanding(
            s.budget,
            s.period_start,
            s.spent_usd,
            EXACT.add(s.reserved_usd, estimates[s.budget.measure]),
        )
        if s.budget.hard
        else s
        for s in standings
    ]
    return CheckResult(
        allowed=True,
        remaining_usd=_least_remaining(held),
        standings=held,
        reason=None,
        reservation_id=str(reservation_id),
        expires_at=rows[0]["expires_at"],
    )


@dataclass(frozen=True, slots=True)
class Call:
    """A newly recorded call that names a reservation: its event id and job, the id it
    names, and the key that sent it (None: any reservation, see ``settle``)."""

    event_id: str
    job_id: str
    reservation_id: str
    key_id: int | None


async def settle(conn: Connection, calls: Sequence[Call]) -> dict[str, str]:
    """Settle the reservations that newly recorded calls name; returns, by event id, why
    a call settled nothing.

    Runs in the recording transaction, so the spend of a call and the release of its
    reservation commit together. A call settles its reservation only when it was sent by
    the key that made it (``key_id``; None is LUC's own gateway, an admin key, or
    authentication off, and settles any): the headroom another caller holds is its own, as
    for ``release``. A reservation made keyless (by LUC's own gateway, or an admin key: an
    operator's hold belongs to no gateway) is settled by its call's usage whatever the key.
    An id that is no reservation of the key's (not even a UUID, or another key's: answered
    alike, as ``release`` answers), one of another job, one expired or released, or one
    already settled (by an earlier call, or by an earlier one of the same batch) settles
    nothing: the event is recorded all the same, since the call was paid for, and its
    answer says why.
    """
    notes: dict[str, str] = {}
    named: list[tuple[Call, uuid.UUID]] = []
    for call in calls:
        try:
            named.append((call, uuid.UUID(call.reservation_id)))
        except ValueError:
            notes[call.event_id] = _not_issued(call)
    if not named:
        return notes
    rows = await conn.fetch(
        queries.SETTLE_RESERVATIONS,
        [key for _, key in named],
        [call.job_id for call, _ in named],
        [call.key_id for call, _ in named],
    )
    # A reservation settled by this statement is credited to the first call that could
    # settle it (its job, its key); any other call naming it settled nothing.
    owners = {r["reservation_id"]: (r["job_id"], r["api_key_id"]) for r in rows}
    credited: set[uuid.UUID] = set()
    unsettled: list[tuple[Call, uuid.UUID]] = []
    for call, key in named:
        owner = owners.get(key)
        if (
            owner is not None
            and key not in credited
            and owner[0] == call.job_id
            and (call.key_id is None or owner[1] in (None, call.key_id))
        ):
            credited.add(key)
        else:
            unsettled.append((call, key))
    if unsettled:
        states = {
            r["reservation_id"]: r
            for r in await conn.fetch(
                queries.SELECT_RESERVATION_STATES, list({key for _, key in unsettled})
            )
        }
        for call, key in unsettled:
            notes[call.event_id] = _unsettled(call, states.get(key))
    return notes


_NOTHING_SETTLED = "the usage is recorded and no reservation was settled"


def _not_issued(call: Call) -> str:
    among = "" if call.key_id is None else " among this key's reservations"
    return (
        f"reservation_id: {call.reservation_id!r} is no reservation{among} "
        f"(POST /v1/budgets/reservations issues them); {_NOTHING_SETTLED}"
    )


def _unsettled(call: Call, state: asyncpg.Record | None) -> str:
    """Why ``call`` settled nothing, given its reservation's row (None: no such id)."""
    if state is None or (
        call.key_id is not None and state["api_key_id"] not in (None, call.key_id)
    ):
        # Another key's reservation is answered as one LUC never issued.
        return _not_issued(call)
    rid = call.reservation_id
    if state["job_id"] != call.job_id:
        return (
            f"reservation_id: reservation {rid} was made for job {state['job_id']!r}, not "
            f"this event's job; {_NOTHING_SETTLED}"
        )
    if state["settled"]:
        return (
            f"reservation_id: reservation {rid} was settled already by another usage event; "
            f"this one's spend is counted besides it and settles nothing"
        )
    return (
        f"reservation_id: reservation {rid} no longer holds anything (it expired, or was "
        f"released); {_NOTHING_SETTLED}"
    )


async def release(conn: Connection, reservation_id: str, api_key_id: int | None = None) -> None:
    """Stop holding ``reservation_id``: its call ended without spending (an upstream error
    before any token, a stream that never started, a caller gone before the call).

    Idempotent: a released or expired reservation stays so, and a settled one stays
    settled (its spend is counted; releasing takes nothing back). ``NotFoundError`` when
    LUC never issued the id.

    With ``api_key_id`` (a key of scope ingest), only a reservation that key made: the
    headroom another caller holds is its own (SPEC §9: keys, not callers, are trusted), so
    another key's reservation, or one LUC's gateway made in-process, is answered as one
    that does not exist (the same 404: whether someone else holds that id is not this
    key's to learn). ``None`` is LUC itself or an admin key: any reservation.
    """
    missing = NotFoundError(
        f"reservation {reservation_id!r} does not exist"
        + ("" if api_key_id is None else " among this key's reservations")
    )
    try:
        key = uuid.UUID(reservation_id)
    except ValueError:
        raise missing from None
    if not await conn.fetchval(queries.RELEASE_RESERVATION, key, api_key_id):
        raise missing


PRUNE_ROUND = 10_000
"""Rows one pruning transaction deletes at most: a backlog never holds one long lock."""


async def prune(conn: Connection, retention_seconds: int, round_rows: int = PRUNE_ROUND) -> int:
    """Delete the reservations that stopped holding more than ``retention_seconds`` ago
    (settled, expired or released); returns how many rows went. Nothing that holds
    headroom goes, and nothing a late event needs (see ``queries.PRUNE_RESERVATIONS``):
    an event naming a pruned reservation is recorded and settles nothing, as it would have
    before; only its warning, and a repeated ``release`` (404, no longer 204), tell that
    LUC forgot it. Runs outside any transaction, one round at a time."""
    pruned = 0
    while True:
        status = await conn.execute(
            queries.PRUNE_RESERVATIONS, float(retention_seconds), round_rows
        )
        rows = int(status.rsplit(" ", 1)[-1])  # "DELETE n"
        pruned += rows
        if rows < round_rows:
            return pruned
