"""Wire pieces every resource shares: money and instants as text, totals, unit prices, the
error body. Money is always a decimal string (``service.wire``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.params import ParameterKwarg

from service.errors import InvalidRequestError
from service.rollups.models import MEASURE_NAMES, Totals
from service.wire import WireValueError, day_text, instant_text, money_text, parse_instant

S = TypeVar("S", bound=msgspec.Struct)


def one_of(values: Iterable[str]) -> ParameterKwarg:
    """The OpenAPI metadata of a text field the server takes only from ``values``
    (``Annotated[str, one_of(…)]``): the document lists them (``enum``). The field stays a
    ``str`` to msgspec, so that a value outside them is the service's refusal (422, naming
    the field and the values), as documented, not a decoding error."""
    return ParameterKwarg(schema_extra={"enum": list(values)})


ExactNumber = Annotated[msgspec.Raw, ParameterKwarg(schema_extra={"type": "number"})]
"""A JSON number written with every digit (``wire.number_json``): a fraction, not money."""


def body_instant(name: str, text: str) -> datetime:
    """A timestamp of a JSON body, exactly as written, or 422 naming ``name``. A query's
    are read otherwise (``api.params.parse_instant``: 400, and a space where an offset's
    "+" goes is taken for it, as an unencoded "+" arrives so); in JSON a space is a space,
    and a guessed offset would move the instant for good (a catalog version's start)."""
    try:
        return parse_instant(name, text)
    except WireValueError as exc:
        raise InvalidRequestError(str(exc)) from None


def wire_value(value: Any) -> Any:
    """``value`` in its wire form: an amount or an instant as text (``service.wire``), a
    day as ``YYYY-MM-DD``; anything else as it is."""
    if isinstance(value, Decimal):
        return money_text(value)
    if isinstance(value, datetime):
        return instant_text(value)
    if isinstance(value, date):
        return day_text(value)
    return value


@cache
def _field_names(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    """``struct``'s field names, read once: ``msgspec.structs.fields`` resolves the
    annotations (strings, under ``from __future__ import annotations``) on every call,
    which cost more than building the struct (a job's lines, a page of entries)."""
    return tuple(f.name for f in msgspec.structs.fields(struct))


def wire_struct(struct: type[S], source: object, **given: Any) -> S:
    """``struct`` made of ``source``'s attributes of the same names, each in its wire form
    (``wire_value``); ``given`` sets the fields that are no plain attribute."""
    names = (name for name in _field_names(struct) if name not in given)
    return struct(**{name: wire_value(getattr(source, name)) for name in names}, **given)


def money(value: Decimal | None) -> str | None:
    """An amount in its wire form (``service.wire.money_text``), or None."""
    return None if value is None else money_text(value)


def timestamp(value: datetime | None) -> str | None:
    """An instant in its wire form (``service.wire.instant_text``), or None."""
    return None if value is None else instant_text(value)


class TotalsOut(msgspec.Struct, kw_only=True):
    """The measures of a rollup (``rollups.models.MEASURES``), spelled out for OpenAPI; a
    unit test checks them against the declaration."""

    cost_usd: str | None
    """The catalog's (list) price; null where every event is unpriced (an unpriced job
    line, a job, agent, day or group of unpriced events only): unknown, not zero."""
    actual_cost_usd: str | None
    """What was actually paid: per event the provider's reported cost where it reported
    one, else the catalog's; null on totals none of whose events reported one while unpriced."""
    provider_cost_usd: str
    """The sum of the costs the providers reported (events without one count nothing)."""
    price_usd: str | None
    """What the customers pay (SPEC §11): each event at its customer's plan, else at its
    catalog cost; null on totals none of whose events has a known price."""
    margin_usd: str | None
    """``price_usd − actual_cost_usd`` over the events whose price and actual cost are both
    known (an event of unknown price takes nothing off it); null when no event's are."""
    events: int
    unpriced_events: int
    unknown_price_events: int
    """Events whose price is unknown (unpriced for their customer too): ``price_usd`` is
    null when that is every event."""
    unknown_actual_events: int
    """Events whose actual cost is unknown (unpriced, no cost reported): ``actual_cost_usd``
    is null when that is every event."""
    unknown_margin_events: int
    """Events whose price or actual cost is unknown: ``margin_usd`` is null when that is
    every event."""
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    first_event_at: str | None
    last_event_at: str | None


def totals_fields(t: Totals) -> dict[str, Any]:
    """The fields of ``TotalsOut`` for ``t``: every measure in its wire form; null where no
    event knows it (``Totals.unknown_measures``)."""
    unknown = t.unknown_measures
    return {
        name: None if name in unknown else wire_value(getattr(t, name)) for name in MEASURE_NAMES
    }


class UnitPrices(msgspec.Struct):
    """USD per 1M tokens per class, and USD per request (``pricing.models.PRICE_CLASSES``)."""

    input: str
    output: str
    cache_read: str
    cache_write: str
    reasoning: str
    per_request: str


def unit_prices(prices: dict[str, Decimal] | None) -> UnitPrices | None:
    if prices is None:
        return None
    return UnitPrices(**{k: money_text(v) for k, v in prices.items()})


class ErrorBody(msgspec.Struct):
    """LUC's one error body (``api.errors``)."""

    status_code: int
    detail: str
