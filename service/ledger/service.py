"""Appending to the ledger and reading it back. Nothing is updated or deleted."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import asyncpg
import msgspec

from service.db import Connection, from_row
from service.ingest.models import UsageEvent
from service.ledger import queries
from service.ledger.models import LedgerEntry, NewLedgerEntry, UnpricedEvent
from service.pricing.catalog import STUB_PROVIDER, Catalog, PriceQuote
from service.pricing.cost import RateTerms, actual_cost
from service.pricing.cost import priced as priced_at
from service.pricing.models import PRICE_CLASSES, RATE_MARKER, Rate
from service.pricing.plans import PlanVersion
from service.pricing.price import customer_price
from service.tokens import TOKEN_FIELDS, TokenCounts, counts_of


def price_columns(rate: Rate | None) -> dict[str, Any]:
    """The rate an entry was priced at: its marker (``long_context_from``) and its unit
    prices (``price_input``, …); all None for an unpriced entry."""
    return {
        RATE_MARKER: None if rate is None else rate.long_context_from,
        **{f"price_{k}": None if rate is None else getattr(rate, k) for k in PRICE_CLASSES},
    }


def customer_pricing(
    tokens: TokenCounts,
    cost_usd: Decimal | None,
    provider_cost_usd: Decimal | None,
    model_id: str,
    provider: str,
    customer_id: str | None,
    plan: PlanVersion | None,
    catalog_rate: Rate | None,
) -> dict[str, Any]:
    """An entry's price for its customer (``pricing.price.customer_price``), and who set
    it, as keyword arguments of ``NewLedgerEntry``; ``catalog_rate``: the rate the catalog
    priced the call at (None: unpriced)."""
    price_usd, setter = _customer_price(
        tokens, cost_usd, provider_cost_usd, model_id, provider, plan, catalog_rate
    )
    return {
        "price_usd": price_usd,
        "customer_id": customer_id,
        "plan_id": None if setter is None else setter.plan_id,
        "plan_version": None if setter is None else setter.id,
    }


def _customer_price(
    tokens: TokenCounts,
    cost_usd: Decimal | None,
    provider_cost_usd: Decimal | None,
    model_id: str,
    provider: str,
    plan: PlanVersion | None,
    catalog_rate: Rate | None,
) -> tuple[Decimal | None, PlanVersion | None]:
    """The price for the customer, and the plan version that set it. A stub answer names
    no plan: none priced it (it costs nothing, and is never billed)."""
    setter = None if provider == STUB_PROVIDER else plan
    actual = actual_cost(cost_usd, provider_cost_usd)
    return customer_price(
        tokens, cost_usd, actual, setter, model_id, provider, catalog_rate
    ), setter


@dataclass(frozen=True, slots=True)
class _Tariff:
    """What a quote (for the event's provider) makes of a charge, whatever its tokens."""

    quote: PriceQuote
    tier: str | None
    catalog_version: int | None
    unpriced_count: int


def _tariff(quote: PriceQuote) -> _Tariff:
    price = quote.price
    priced = price is not None and quote.version is not None
    return _Tariff(
        quote,
        tier=price.tier if price else None,
        catalog_version=quote.version.id if priced and quote.version else None,
        unpriced_count=0 if priced else 1,
    )


def event_entry(
    event: UsageEvent,
    *,
    model: str,
    tier: str | None,
    catalog_version: int | None,
    sign: int = 1,
) -> dict[str, Any]:
    """What every entry of ``event`` says of it, as keyword arguments of ``NewLedgerEntry``:
    its id, job, agent, provider, instant and billing day, the line it is booked on (the
    model, tier and catalog version named), and its token counts times ``sign`` (-1 for an
    entry that takes a booking back, 0 for a change of price alone)."""
    return {
        "event_id": event.id,
        "job_id": event.job_id,
        "agent": event.agent,
        "model": model,
        "provider": event.provider,
        "tier": tier,
        "catalog_version": catalog_version,
        "occurred_at": event.occurred_at,
        "billing_day": event.occurred_at.date(),
        **counts_of(event, sign=sign),
    }


def charge_for(
    event: UsageEvent,
    quote: PriceQuote,
    customer_id: str | None = None,
    plan: PlanVersion | None = None,
) -> NewLedgerEntry:
    """The first entry of an event: priced when the quote has a price, else unpriced (a
    stub answer at zero: ``PriceQuote.for_provider``). A priced entry keeps the rate that
    priced it: the model's base prices, or the long-context entry the event reached. Its
    price is its customer's (``customer_id``, the job's) under ``plan``, the version in
    force at the event; no plan: the catalog cost. (``BatchCharges.row`` is the same
    charge as a batch stages it.)"""
    tariff = _tariff(quote.for_provider(event.provider))
    quote = tariff.quote
    price = quote.price
    rate, cost = (None, None) if price is None else priced_at(event, price)
    return NewLedgerEntry(
        kind="charge",
        **event_entry(
            event, model=quote.model_id, tier=tariff.tier, catalog_version=tariff.catalog_version
        ),
        event_count=1,
        unpriced_count=tariff.unpriced_count,
        cost_usd=cost,
        provider_cost_usd=event.provider_cost_usd,
        **price_columns(rate),
        reason=quote.reason,
        **customer_pricing(
            event,
            cost,
            event.provider_cost_usd,
            quote.model_id,
            event.provider,
            customer_id,
            plan,
            rate,
        ),
    )


# NewLedgerEntry fields in the column order of queries.APPEND_ENTRIES.
INSERT_FIELDS = queries.INSERT_FIELDS
_insert_row = attrgetter(*INSERT_FIELDS)
_MONEY_COLUMNS = frozenset(i for i, f in enumerate(INSERT_FIELDS) if f in queries.MONEY_FIELDS)


def _decimal_text(value: Decimal | None) -> str | None:
    # str() of a Decimal is exact (exponent notation included) and PostgreSQL's numeric
    # input reads it back to the same value; see queries.APPEND_ENTRIES for why text.
    return None if value is None else str(value)


async def ensure_months_ahead(conn: Connection, months: int = queries.MONTHS_AHEAD) -> int:
    """Create the ledger partitions of the month before, this month and the next
    ``months``; returns how many were missing. Run at start-up and periodically by ``luc
    serve`` (``keep_months_ahead``), and by an operator's cron job (``luc partitions
    ensure``); several at once are safe.
    Gives up (``asyncpg.LockNotAvailableError``) rather than hold up ingest while a long
    reader keeps the ledger."""
    async with conn.transaction():
        await conn.execute(queries.MONTHS_LOCK_TIMEOUT)
        return int(await conn.fetchval(queries.ENSURE_MONTHS_AHEAD, months))


def entry_parameters(entries: Sequence[NewLedgerEntry]) -> list[list[Any]]:
    """The arguments of ``queries.APPEND_ENTRIES`` for ``entries``: one list per column."""
    return [
        [_decimal_text(v) for v in column] if i in _MONEY_COLUMNS else list(column)
        for i, column in enumerate(zip(*map(_insert_row, entries), strict=True))
    ]


StagedCharge = tuple[Any, ...]
"""An event with its first ledger entry, in the column order of ``queries.STAGED_COLUMNS``."""

INLINE_LIMIT = 32
"""Groups up to this many events travel inline (see ``queries.CREATE_STAGING_TABLE``)."""


_event_counts = attrgetter(*TOKEN_FIELDS)
_NO_RATE = (None,) * (1 + len(PRICE_CLASSES))
_STAGED_EVENT_ID = queries.STAGED_NAMES.index("event_id")
_STAGED_CUSTOMER = queries.STAGED_NAMES.index("job_customer_id")
_STAGED_PRICE = queries.STAGED_NAMES.index("price_usd")
_STAGED_OCCURRED_AT = queries.STAGED_NAMES.index("occurred_at")


@dataclass(frozen=True, slots=True)
class _StagedRate:
    """A rate with what pricing a call at it and staging its charge need of it."""

    rate: Rate
    terms: RateTerms
    columns: tuple[Any, ...]
    """``long_context_from`` and the unit prices as staged (decimal text)."""

    @classmethod
    def of(cls, rate: Rate) -> _StagedRate:
        columns = (
            rate.long_context_from,
            *(_decimal_text(getattr(rate, k)) for k in PRICE_CLASSES),
        )
        return cls(rate, RateTerms.of(rate), columns)


class BatchCharges:
    """``charge_for`` for the events of a catalog, as staging rows (``StagedCharge``): what
    events of one catalog version, model and provider share (the quote, each rate their
    tokens reach, its text) is looked up once instead of once per event (and kept from
    batch to batch: ``charges_for``), and a row is built straight from the event, without
    the ``NewLedgerEntry`` between.
    ``tests/unit/ledger/test_batch_charges.py`` holds every row equal to ``charge_for``'s."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._tariffs: dict[
            tuple[int | None, str, str], tuple[_Tariff, dict[int | None, _StagedRate]]
        ] = {}
        """By (catalog version, model, provider): the tariff, and the rates of its price
        by their marker (``long_context_from``), made as events reach them."""

    def __len__(self) -> int:
        """Tariffs looked up so far."""
        return len(self._tariffs)

    def _tariff(
        self, event: UsageEvent, key: tuple[int | None, str, str]
    ) -> tuple[_Tariff, dict[int | None, _StagedRate]]:
        quote = self.catalog.quote(event.model, event.occurred_at)
        found = self._tariffs[key] = (_tariff(quote.for_provider(event.provider)), {})
        return found

    def row(
        self, event: UsageEvent, customer_id: str | None = None, plan: PlanVersion | None = None
    ) -> StagedCharge:
        """The staging row of ``event`` with its charge: ``charge_for(event, quote,
        customer_id, plan)`` with the quote of the catalog version in force at it."""
        version = self.catalog.version_at(event.occurred_at)
        key = (None if version is None else version.id, event.model, event.provider)
        tariff, rates = self._tariffs.get(key) or self._tariff(event, key)
        quote = tariff.quote
        price = quote.price
        if price is None:
            cost, rate_columns, rate = None, _NO_RATE, None
        else:
            # The marker of the rate ``price.rate_for`` picks: the last long-context entry
            # the call reaches (thresholds are unique within a model: it names one rate).
            marker = None
            for entry in price.long_context:
                if event.input_tokens >= entry.min_input_tokens:
                    marker = entry.min_input_tokens
            staged = rates.get(marker)
            if staged is None:
                staged = rates[marker] = _StagedRate.of(price.rate_for(event.input_tokens))
            cost, rate_columns, rate = staged.terms.cost(event), staged.columns, staged.rate
        price_usd, setter = _customer_price(
            event, cost, event.provider_cost_usd, quote.model_id, event.provider, plan, rate
        )
        return (
            event.id,
            event.occurred_at,
            event.job_id,
            event.agent,
            event.provider,
            event.model,
            *_event_counts(event),
            _decimal_text(event.provider_cost_usd),
            event.status,
            None if event.attributes is None else msgspec.json.encode(event.attributes).decode(),
            event.reservation_id,
            event.customer_id,
            quote.model_id,
            tariff.tier,
            tariff.catalog_version,
            rate_columns[0],
            event.occurred_at.date(),
            tariff.unpriced_count,
            _decimal_text(cost),
            *rate_columns[1:],
            quote.reason,
            _decimal_text(price_usd),
            customer_id,
            None if setter is None else setter.plan_id,
            None if setter is None else setter.id,
        )


KEPT_TARIFFS = 4096
"""Tariffs kept for one catalog from batch to batch (``charges_for``) before they are
looked up afresh: their keys come from the events (any model, any provider), so a sender of
made-up names must not grow them without end."""

_kept: weakref.WeakKeyDictionary[Catalog, BatchCharges] = weakref.WeakKeyDictionary()


def charges_for(catalog: Catalog) -> BatchCharges:
    """A ``BatchCharges`` of ``catalog`` kept from one batch to the next (until the process
    loads another catalog, or ``KEPT_TARIFFS`` fill it). A group of single events made its
    lookups afresh every time: four events took 22 µs each to price, against 4–6 with the
    lookups kept. Everything it keeps follows from the catalog, which never changes."""
    charges = _kept.get(catalog)
    if charges is None or len(charges) >= KEPT_TARIFFS:
        charges = _kept[catalog] = BatchCharges(catalog)
    return charges


def staged_price(row: StagedCharge) -> tuple[str, str | None, Decimal | None, datetime]:
    """A staged charge's event id, customer, price for that customer and when the call was
    made (what credits draw on); the price as exact as it was computed (the text of a
    Decimal reads back as the same Decimal)."""
    price = row[_STAGED_PRICE]
    return (
        row[_STAGED_EVENT_ID],
        row[_STAGED_CUSTOMER],
        None if price is None else Decimal(price),
        row[_STAGED_OCCURRED_AT],
    )


@dataclass(frozen=True, slots=True)
class Staging:
    """Where a batch's staged rows are for ``queries.append_staged_charges``."""

    source: str
    """``queries.STAGED_FROM_JSON`` or ``queries.STAGED_FROM_TABLE``."""
    arguments: tuple[Any, ...]


def inline_staging(rows: Sequence[StagedCharge]) -> Staging:
    """``rows`` as one JSON argument (an array of objects) for ``queries.STAGED_FROM_JSON``."""
    objects = [dict(zip(queries.STAGED_NAMES, r, strict=True)) for r in rows]
    return Staging(queries.STAGED_FROM_JSON, (msgspec.json.encode(objects).decode(),))


async def stage_charges(
    conn: Connection,
    rows: Sequence[StagedCharge],
    *,
    table_ready: bool,
    inside_longer_transaction: bool,
    table_allowed: bool = True,
) -> Staging:
    """Make ``rows`` ready for the statement that appends them.

    A small group goes inline as one JSON argument; a larger batch is loaded with binary
    ``COPY`` into the connection's staging table, created on first use (``table_ready``
    says whether it exists). A caller whose transaction may already have staged a batch
    says so, and those rows go first. A role that may not create temporary tables
    (``table_allowed``) sends every batch inline.
    """
    if len(rows) <= INLINE_LIMIT or not (table_ready or table_allowed):
        return inline_staging(rows)
    if not table_ready:
        await conn.execute(queries.CREATE_STAGING_TABLE)
    elif inside_longer_transaction:
        await conn.execute(queries.CLEAR_STAGED)
    await conn.copy_records_to_table(
        "luc_staged_charges", records=rows, columns=queries.STAGED_NAMES
    )
    return Staging(queries.STAGED_FROM_TABLE, ())


def _entry(r: asyncpg.Record) -> LedgerEntry:
    unit_prices = None
    if r["catalog_version"] is not None:
        unit_prices = {k: r[f"price_{k}"] for k in PRICE_CLASSES}
    return from_row(LedgerEntry, r, unit_prices=unit_prices)


async def job_entries(
    conn: Connection, job_id: str, after_id: int, limit: int
) -> list[LedgerEntry]:
    """A page of a job's entries in the order they were appended."""
    rows = await conn.fetch(queries.SELECT_JOB_ENTRIES, job_id, after_id, limit)
    return [_entry(r) for r in rows]


async def unpriced_events(
    conn: Connection,
    after_id: str,
    model: str | None,
    job_id: str | None,
    limit: int,
    customer_id: str | None = None,
) -> list[UnpricedEvent]:
    """Events whose model no catalog version priced yet, a page at a time in id order, with
    their price for their customer (unknown too, unless their plan knows it)."""
    rows = await conn.fetch(queries.SELECT_UNPRICED, after_id, model, job_id, limit, customer_id)
    return [from_row(UnpricedEvent, r) for r in rows]
