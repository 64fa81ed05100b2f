"""Wire bytes → validated events, with one precise message per rejected event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import msgspec

from service.errors import InvalidRequestError, PayloadTooLargeError
from service.ingest.models import BatchIn, Rejection, UsageEvent, UsageEventIn
from service.settings import IngestSettings

_event_decoder = msgspec.json.Decoder(UsageEventIn)


class _TypedBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[UsageEventIn]


# The common case, a batch whose events are all well-formed, decodes in one C call;
# only a batch with a bad event is decoded again event by event to find it.
_typed_batch_decoder = msgspec.json.Decoder(_TypedBatch)
_batch_decoder = msgspec.json.Decoder(BatchIn)
_any_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """Each position of the request holds a valid event or its rejection."""

    items: list[UsageEvent | Rejection]


def _recover_id(raw: bytes) -> str | None:
    try:
        value = _any_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(value, dict):
        event_id = value.get("id")
        if isinstance(event_id, str):
            return event_id
    return None


def _describe(
    exc: msgspec.ValidationError, what: str = "the event format", subject: str = "an event"
) -> str:
    # msgspec says e.g. "Expected `int` >= 0 - at `$.input_tokens`"; turn the JSON path
    # into the field name a gateway developer knows.
    message = str(exc)
    if " - at `$." in message:
        text, _, path = message.partition(" - at `$.")
        return f"{path.rstrip('`')}: {text[0].lower()}{text[1:]}"
    if message.startswith("Object contains unknown field"):
        field = message.split("`")[1]
        return f"{field}: unknown field ({what} has no such field)"
    if message.startswith("Object missing required field"):
        field = message.split("`")[1]
        return f"{field}: required field is missing"
    if message.startswith("Expected `object`") and " - at `$." not in message:
        got = message.split(", ", 1)[-1].split(" - ")[0]
        return f"{subject} must be a JSON object, {got}"
    return message.replace(" - at `$`", "")


# PostgreSQL text and jsonb cannot hold U+0000; refusing it here keeps one such event from
# failing the whole batch's transaction.
_NUL = "\x00"
_TEXT_FIELDS = ("id", "job_id", "agent", "provider", "model")
# provider_cost_usd is stored as NUMERIC and summed into rollups: keep it to amounts a
# bill can hold (below 10^18 USD, at most 30 decimal places) instead of failing the batch.
_MAX_COST_DIGITS_BEFORE_POINT = 18
_MAX_COST_DECIMAL_PLACES = 30


def _decimal_places(value: Decimal) -> int:
    """Significant digits after the point (``1.2300`` has 2); no context, so no overflow."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # a finite value
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros)) if any(digits) else 0


def _holds_nul(value: object) -> bool:
    """Whether any string (key or value) in a decoded JSON value contains U+0000."""
    stack = [value]  # iterative: attributes may nest deeper than Python's recursion limit
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_event(event: UsageEventIn, now: datetime, settings: IngestSettings) -> UsageEvent | str:
    """The rules msgspec's types cannot say; a string is the rejection reason."""
    occurred_at = event.occurred_at
    if occurred_at.tzinfo is None:
        return "occurred_at: timestamp has no UTC offset (RFC 3339 needs one, e.g. 'Z' or '+02:00')"
    for name in _TEXT_FIELDS:
        if _NUL in getattr(event, name):
            return f"{name}: must not contain the NUL character (U+0000)"
    try:
        occurred_at = occurred_at.astimezone(UTC)
    except OverflowError:
        return f"occurred_at: {occurred_at.isoformat()} is out of range in UTC"
    if occurred_at > now + timedelta(seconds=settings.max_future_skew_seconds):
        return (
            f"occurred_at: {occurred_at.isoformat()} is more than "
            f"{settings.max_future_skew_seconds} s in the future"
        )
    if event.cached_input_tokens + event.cache_write_tokens > event.input_tokens:
        return (
            "cached_input_tokens + cache_write_tokens "
            f"({event.cached_input_tokens} + {event.cache_write_tokens}) exceed input_tokens "
            f"({event.input_tokens}); input_tokens counts every prompt token"
        )
    if event.reasoning_tokens > event.output_tokens:
        return (
            f"reasoning_tokens ({event.reasoning_tokens}) exceed output_tokens "
            f"({event.output_tokens}); output_tokens counts reasoning too"
        )
    provider_cost: Decimal | None = None
    if event.provider_cost_usd is not None:
        try:
            provider_cost = Decimal(event.provider_cost_usd.strip())
        except InvalidOperation:
            return f"provider_cost_usd: {event.provider_cost_usd!r} is not a decimal string"
        if not provider_cost.is_finite() or provider_cost < 0:
            return "provider_cost_usd: must be a finite decimal, not negative"
        if (
            provider_cost.adjusted() >= _MAX_COST_DIGITS_BEFORE_POINT
            or _decimal_places(provider_cost) > _MAX_COST_DECIMAL_PLACES
        ):
            return (
                f"provider_cost_usd: {event.provider_cost_usd!r} is out of range (below "
                f"10^{_MAX_COST_DIGITS_BEFORE_POINT} USD, at most "
                f"{_MAX_COST_DECIMAL_PLACES} decimal places)"
            )
    if event.attributes is not None:
        size = len(msgspec.json.encode(event.attributes))
        if size > settings.max_attributes_bytes:
            return (
                f"attributes: {size} bytes as JSON, over the limit of "
                f"{settings.max_attributes_bytes} bytes"
            )
        if _holds_nul(event.attributes):
            return "attributes: must not contain the NUL character (U+0000)"
    if event.reservation_id is not None and _NUL in event.reservation_id:
        return "reservation_id: must not contain the NUL character (U+0000)"
    return UsageEvent(
        id=event.id,
        occurred_at=occurred_at,
        job_id=event.job_id,
        agent=event.agent,
        provider=event.provider,
        model=event.model,
        input_tokens=event.input_tokens,
        cached_input_tokens=event.cached_input_tokens,
        cache_write_tokens=event.cache_write_tokens,
        output_tokens=event.output_tokens,
        reasoning_tokens=event.reasoning_tokens,
        provider_cost_usd=provider_cost,
        status=event.status,
        attributes=event.attributes,
        reservation_id=event.reservation_id,
    )


def parse_event(
    raw: bytes, index: int, now: datetime, settings: IngestSettings
) -> UsageEvent | Rejection:
    """Decode and check one event; never raises for bad content."""
    try:
        wire = _event_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return Rejection(index, _recover_id(raw), _describe(exc))
    except msgspec.DecodeError as exc:
        return Rejection(index, None, f"event is not valid JSON: {exc}")
    except RecursionError:
        return Rejection(index, None, "event nests JSON too deeply")
    return _checked(wire, index, now, settings)


def parse_single(body: bytes, now: datetime, settings: IngestSettings) -> UsageEvent | Rejection:
    """``POST /v1/events``: the body is one event."""
    _check_body(body, settings)
    try:
        value = _any_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"body is not valid JSON: {exc}", status_code=400) from exc
    except RecursionError as exc:
        raise InvalidRequestError("body nests JSON too deeply", status_code=400) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("body must be a JSON object: one usage event")
    return parse_event(body, 0, now, settings)


def parse_batch(body: bytes, now: datetime, settings: IngestSettings) -> ParsedBatch:
    """``POST /v1/events/batch``: an envelope problem fails the request; an event problem
    rejects that event alone."""
    _check_body(body, settings)
    try:
        typed = _typed_batch_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass  # the slow path below finds and names the problem
    else:
        _check_count(len(typed.events), settings)
        return ParsedBatch(
            [_checked(wire, i, now, settings) for i, wire in enumerate(typed.events)]
        )
    try:
        batch = _batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        problem = _describe(exc, "the batch envelope", "the body")
        raise InvalidRequestError(f'body must be {{"events": [...]}}: {problem}') from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"body is not valid JSON: {exc}", status_code=400) from exc
    except RecursionError as exc:
        raise InvalidRequestError("body nests JSON too deeply", status_code=400) from exc
    _check_count(len(batch.events), settings)
    return ParsedBatch([parse_event(raw, i, now, settings) for i, raw in enumerate(batch.events)])


def _check_count(count: int, settings: IngestSettings) -> None:
    if count == 0:
        raise InvalidRequestError("events: the batch is empty; send at least one event")
    if count > settings.max_batch_events:
        raise PayloadTooLargeError(
            f"events: the batch holds {count} events; the limit is {settings.max_batch_events}"
        )


def _checked(
    wire: UsageEventIn, index: int, now: datetime, settings: IngestSettings
) -> UsageEvent | Rejection:
    checked = check_event(wire, now, settings)
    if isinstance(checked, str):
        return Rejection(index, wire.id, checked)
    return checked


def _check_body(body: bytes, settings: IngestSettings) -> None:
    if not body.strip():
        raise InvalidRequestError("body is empty", status_code=400)
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLargeError(
            f"body is {len(body)} bytes; the limit is {settings.max_body_bytes}"
        )
