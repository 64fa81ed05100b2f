"""The rules of SPEC §2 that msgspec's types cannot say: text PostgreSQL can store,
attributes' shape and size, the event's instant and skew, token parts within their totals,
the provider's cost. Each problem is a reason; ``rule_problems`` gathers all of them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter

import msgspec

from service.ingest.models import UsageEvent, UsageEventIn
from service.settings import IngestSettings
from service.wire import (
    WireValueError,
    instant_text,
    parse_instant,
    parse_money,
    storable_instant_problem,
)

# PostgreSQL text and jsonb cannot hold U+0000, and no UTF-8 text holds a lone UTF-16
# surrogate (U+D800–U+DFFF; msgspec refuses their escapes, but an event built in-process
# may carry one): refusing them here keeps one such event from failing its whole batch's
# transaction.
_NUL = "\x00"
_SURROGATES = re.compile("[\ud800-\udfff]")
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TEXT_FIELDS = ("id", "job_id", "agent", "provider", "model")
_text_fields = attrgetter(*_TEXT_FIELDS)
# Attributes are a small free-form object (request id, route, customer, …); deeper nesting
# is refused with a reason, well before any decoder or encoder on the way to PostgreSQL
# runs out of stack.
MAX_ATTRIBUTE_DEPTH = 32
# provider_cost_usd is stored as NUMERIC and summed into rollups: keep it to amounts a
# bill can hold (below 10^18 USD) instead of failing the batch. Its digits are the wire's
# (SPEC §2: at most 40 significant digits; ``parse_money``): NUMERIC keeps every one.
_MAX_COST_DIGITS_BEFORE_POINT = 18
# A plain decimal string this short has fewer digits before the point than that.
_SHORT_COST_CHARS = _MAX_COST_DIGITS_BEFORE_POINT


def _text_problem(text: str) -> str | None:
    """What PostgreSQL could not store in ``text``, if anything."""
    if _NUL in text:
        return "must not contain the NUL character (U+0000)"
    if not text.isascii() and (lone := _SURROGATES.search(text)):
        return (
            f"holds a lone UTF-16 surrogate (U+{ord(lone.group()):04X}), which is not Unicode text"
        )
    return None


def json_depth(value: object) -> int:
    """Levels of arrays and objects in a decoded JSON value (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]  # iterative: the value may nest deeper than Python's recursion limit
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _attributes_problem(value: object) -> str | None:
    """Why decoded attributes cannot be stored: nesting, NUL, lone surrogates."""
    depth = json_depth(value)
    if depth > MAX_ATTRIBUTE_DEPTH:
        return f"nested {depth} levels deep; at most {MAX_ATTRIBUTE_DEPTH}"
    stack = [value]  # iterative, like json_depth
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if problem := _text_problem(item):
                return problem
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _attributes_size_problem(event: UsageEventIn, settings: IngestSettings) -> str | None:
    """Why ``event.attributes`` cannot be stored: nesting, NUL, a lone surrogate, size."""
    try:
        encoded = msgspec.json.encode(event.attributes)
    except (UnicodeEncodeError, RecursionError):  # a lone surrogate, or nesting
        encoded = b""
    # The walk over every value is needed only when the JSON text allows a problem: it
    # failed to encode, holds a NUL escape, or has more brackets than levels allowed.
    if (
        not encoded
        or b"\\u0000" in encoded
        or encoded.count(b"[") + encoded.count(b"{") > MAX_ATTRIBUTE_DEPTH
    ) and (problem := _attributes_problem(event.attributes)):
        return problem
    if not encoded:
        return "cannot be written as JSON"
    size = len(encoded)
    if size > settings.max_attributes_bytes:
        return f"{size} bytes as JSON, over the limit of {settings.max_attributes_bytes} bytes"
    return None


def check_event(event: UsageEventIn, now: datetime, settings: IngestSettings) -> UsageEvent | str:
    """The rules msgspec's types cannot say; a string is the rejection reason: every problem
    of the event, joined by ``"; "``, in the order of these checks."""
    problems, occurred_at, provider_cost = rule_problems(event, now, settings)
    if problems:
        return "; ".join(problems)
    assert occurred_at is not None
    # The validated event has the wire event's fields: taken in one C call, with the two
    # that validation turned into values replaced (naming all sixteen took twice as long).
    fields = msgspec.structs.asdict(event)
    fields["occurred_at"] = occurred_at
    fields["provider_cost_usd"] = provider_cost
    return UsageEvent(**fields)


def rule_problems(
    event: UsageEventIn, now: datetime, settings: IngestSettings
) -> tuple[list[str], datetime | None, Decimal | None]:
    """Every rule ``event`` breaks, each naming its field; and, when they hold, its instant
    in UTC and its provider cost."""
    problems: list[str] = []
    occurred_at: datetime | None
    try:
        occurred_at = parse_instant("occurred_at", event.occurred_at)
    except WireValueError as exc:
        problems.append(str(exc))
        occurred_at = None
    # Text without NUL and all ASCII has no problem: one check of every text field together
    # spares one per field in the usual case (each is still checked, in its place, when not).
    texts = "".join(_text_fields(event)) + (event.reservation_id or "") + (event.customer_id or "")
    plain_text = _NUL not in texts and texts.isascii()
    if not plain_text:
        for name in _TEXT_FIELDS:
            if problem := _text_problem(getattr(event, name)):
                problems.append(f"{name}: {problem}")
    if occurred_at is not None:
        # parse_instant refused every instant that leaves the years 0001-9999 in UTC.
        occurred_at = occurred_at.astimezone(UTC)
        if problem := storable_instant_problem(occurred_at):
            problems.append(f"occurred_at: {problem}")
        if occurred_at > now + timedelta(seconds=settings.max_future_skew_seconds):
            problems.append(
                f"occurred_at: {instant_text(occurred_at)} is more than "
                f"{settings.max_future_skew_seconds} s in the future"
            )
    if event.cached_input_tokens + event.cache_write_tokens > event.input_tokens:
        problems.append(
            "cached_input_tokens + cache_write_tokens "
            f"({event.cached_input_tokens} + {event.cache_write_tokens}) exceed input_tokens "
            f"({event.input_tokens}); input_tokens counts every prompt token"
        )
    if event.reasoning_tokens > event.output_tokens:
        problems.append(
            f"reasoning_tokens ({event.reasoning_tokens}) exceed output_tokens "
            f"({event.output_tokens}); output_tokens counts reasoning too"
        )
    provider_cost: Decimal | None = None
    if event.provider_cost_usd is not None:
        try:
            provider_cost = parse_money("provider_cost_usd", event.provider_cost_usd)
        except WireValueError as exc:
            problems.append(str(exc))
        else:
            if (
                len(event.provider_cost_usd) > _SHORT_COST_CHARS
                and provider_cost.adjusted() >= _MAX_COST_DIGITS_BEFORE_POINT
            ):
                problems.append(
                    f"provider_cost_usd: {event.provider_cost_usd!r} is out of range (below "
                    f"10^{_MAX_COST_DIGITS_BEFORE_POINT} USD)"
                )
    if event.attributes is not None and (problem := _attributes_size_problem(event, settings)):
        problems.append(f"attributes: {problem}")
    for name in () if plain_text else ("reservation_id", "customer_id"):
        value = getattr(event, name)
        if value is not None and (problem := _text_problem(value)):
            problems.append(f"{name}: {problem}")
    return problems, occurred_at, provider_cost
