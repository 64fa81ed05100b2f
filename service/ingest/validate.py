"""Wire bytes → validated events, with one precise message per rejected event."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from service.errors import InvalidRequestError, PayloadTooLargeError
from service.ingest.models import BatchIn, Rejection, UsageEvent, UsageEventIn
from service.ingest.scan import batch_events, object_members
from service.money import decimal_places
from service.settings import IngestSettings
from service.tokens import counts_of
from service.wire import WireValueError, parse_instant, parse_money

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


def _recover_id(raw: bytes | msgspec.Raw) -> str | None:
    """The event's id when it has a readable one, whatever else is wrong with it."""
    value: object = None
    try:
        value = _any_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        # Something else cannot be decoded (a number out of range, say): read the id alone.
        for name, member in object_members(bytes(raw)) or []:
            if name == "id":
                with contextlib.suppress(msgspec.DecodeError, RecursionError):
                    value = {"id": _any_decoder.decode(member)}
                break
        else:
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
        path = path.rstrip("`")
        field = re.split(r"[.\[]", path, maxsplit=1)[0]
        where = "" if field == path else f" (at {path})"
        return f"{field}: {text[0].lower()}{text[1:]}{where}"
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


# PostgreSQL text and jsonb cannot hold U+0000, and no UTF-8 text holds a lone UTF-16
# surrogate (U+D800–U+DFFF; msgspec refuses their escapes, but an event built in-process
# may carry one): refusing them here keeps one such event from failing its whole batch's
# transaction.
_NUL = "\x00"
_SURROGATES = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TEXT_FIELDS = ("id", "job_id", "agent", "provider", "model")
# Attributes are a small free-form object (request id, route, customer, …); deeper nesting
# is refused with a reason, well before any decoder or encoder on the way to PostgreSQL
# runs out of stack.
MAX_ATTRIBUTE_DEPTH = 32
# provider_cost_usd is stored as NUMERIC and summed into rollups: keep it to amounts a
# bill can hold (below 10^18 USD, at most 30 decimal places) instead of failing the batch.
_MAX_COST_DIGITS_BEFORE_POINT = 18
_MAX_COST_DECIMAL_PLACES = 30


def _text_problem(text: str) -> str | None:
    """What PostgreSQL could not store in ``text``, if anything."""
    if _NUL in text:
        return "must not contain the NUL character (U+0000)"
    if not text.isascii() and (lone := _SURROGATES.search(text)):
        return (
            f"holds a lone UTF-16 surrogate (U+{ord(lone.group()):04X}), which is not Unicode text"
        )
    return None


def _json_depth(value: object) -> int:
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
    depth = _json_depth(value)
    if depth > MAX_ATTRIBUTE_DEPTH:
        return f"nested {depth} levels deep; at most {MAX_ATTRIBUTE_DEPTH}"
    stack = [value]  # iterative, like _json_depth
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
    problems, occurred_at, provider_cost = _rule_problems(event, now, settings)
    if problems:
        return "; ".join(problems)
    assert occurred_at is not None
    return UsageEvent(
        id=event.id,
        occurred_at=occurred_at,
        job_id=event.job_id,
        agent=event.agent,
        provider=event.provider,
        model=event.model,
        **counts_of(event),
        provider_cost_usd=provider_cost,
        status=event.status,
        attributes=event.attributes,
        reservation_id=event.reservation_id,
    )


def _rule_problems(
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
    for name in _TEXT_FIELDS:
        if problem := _text_problem(getattr(event, name)):
            problems.append(f"{name}: {problem}")
    if occurred_at is not None:
        try:
            occurred_at = occurred_at.astimezone(UTC)
        except OverflowError:
            problems.append(f"occurred_at: {occurred_at.isoformat()} is out of range in UTC")
        else:
            if occurred_at > now + timedelta(seconds=settings.max_future_skew_seconds):
                problems.append(
                    f"occurred_at: {occurred_at.isoformat()} is more than "
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
                provider_cost.adjusted() >= _MAX_COST_DIGITS_BEFORE_POINT
                or decimal_places(provider_cost) > _MAX_COST_DECIMAL_PLACES
            ):
                problems.append(
                    f"provider_cost_usd: {event.provider_cost_usd!r} is out of range (below "
                    f"10^{_MAX_COST_DIGITS_BEFORE_POINT} USD, at most "
                    f"{_MAX_COST_DECIMAL_PLACES} decimal places)"
                )
    if event.attributes is not None and (problem := _attributes_size_problem(event, settings)):
        problems.append(f"attributes: {problem}")
    if event.reservation_id is not None and (problem := _text_problem(event.reservation_id)):
        problems.append(f"reservation_id: {problem}")
    return problems, occurred_at, provider_cost


def parse_event(
    raw: bytes | msgspec.Raw, index: int, now: datetime, settings: IngestSettings
) -> UsageEvent | Rejection:
    """Decode and check one event; never raises for bad content."""
    try:
        wire = _event_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return _mistyped(raw, index, exc, now, settings)
    except (msgspec.DecodeError, RecursionError) as exc:
        return _undecodable(raw, index, exc)
    return _checked(wire, index, now, settings)


# An event msgspec refuses is checked again field by field, so that its rejection names
# every bad field and not only the first msgspec met: one decoder per field, of a struct
# holding that field alone, with its type and constraints.
_FIELD_DECODERS = {
    field.encode_name: msgspec.json.Decoder(
        msgspec.defstruct(f"_Only_{field.name}", [(field.name, field.type)])
    )
    for field in msgspec.structs.fields(UsageEventIn)
}
_REQUIRED_FIELDS = tuple(f.encode_name for f in msgspec.structs.fields(UsageEventIn) if f.required)
# Values that pass every rule, standing in for bad or missing required fields while the
# rules are checked on the others (a rule about a stand-in is not reported).
_STAND_INS = {
    "id": b'"x"',
    "occurred_at": b'"2000-01-01T00:00:00Z"',
    "job_id": b'"x"',
    "agent": b'"x"',
    "provider": b'"x"',
    "model": b'"x"',
    "input_tokens": b"0",
    "output_tokens": b"0",
}


def _field_of(problem: str) -> str:
    return problem.partition(":")[0]


def _member_problems(
    members: list[tuple[str, bytes]],
) -> tuple[list[str], set[str], set[str]]:
    """The problems of an event's members taken one by one (JSON that cannot be decoded, a
    wrong type or bound, an unknown name) and of its missing required fields; the names of
    the fields at fault, and of those whose JSON alone cannot be decoded."""
    problems: list[str] = []
    bad: set[str] = set()
    undecodable: set[str] = set()
    for name, value_raw in members:
        try:
            _any_decoder.decode(value_raw)
        except RecursionError:
            problems.append(f"{name}: nests JSON too deeply")
            undecodable.add(name)
        except msgspec.DecodeError as error:
            if "surrogate" in str(error) or _SURROGATE_ESCAPE.search(value_raw):
                problems.append(
                    f"{name}: holds a string escape for a lone UTF-16 surrogate "
                    "(\\ud800–\\udfff without its pair), which is not Unicode text"
                )
            else:
                problems.append(f"{name}: not valid JSON: {error}")
            undecodable.add(name)
        else:
            decoder = _FIELD_DECODERS.get(name)
            if decoder is None:
                problems.append(f"{name}: unknown field (the event format has no such field)")
            else:
                try:
                    decoder.decode(b'{"%s":%s}' % (name.encode(), value_raw))
                    continue
                except msgspec.ValidationError as exc:
                    problems.append(_describe(exc))
                except (msgspec.DecodeError, RecursionError):  # one level deeper than alone
                    problems.append(f"{name}: nests JSON too deeply")
        bad.add(name)
    named = {name for name, _ in members}
    for name in _REQUIRED_FIELDS:
        if name not in named:
            problems.append(f"{name}: required field is missing")
            bad.add(name)
    return problems, bad, undecodable


def _rules_around(
    members: list[tuple[str, bytes]], bad: set[str], now: datetime, settings: IngestSettings
) -> list[str]:
    """The rules broken by the event's good fields, bad and missing ones stood in for;
    a problem that names a stood-in field is left out (it is about the stand-in)."""
    good = [(name, raw) for name, raw in members if name not in bad]
    stand_ins = [(name, raw) for name, raw in _STAND_INS.items() if name in bad]
    body = b"{%s}" % b",".join(b'"%s":%s' % (name.encode(), raw) for name, raw in good + stand_ins)
    try:
        event = _event_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # a name given twice, say
        return []
    problems, _, _ = _rule_problems(event, now, settings)
    return [p for p in problems if not any(re.search(rf"(?<!\w){n}(?!\w)", p) for n in bad)]


def _mistyped(
    raw: bytes | msgspec.Raw,
    index: int,
    exc: msgspec.ValidationError,
    now: datetime,
    settings: IngestSettings,
) -> Rejection:
    """The rejection of an event msgspec refuses: the problem it met first, then every
    other one, each field named once."""
    first = _describe(exc)
    event_id = _recover_id(raw)
    members = object_members(bytes(raw))
    if members is None:  # not an object: there is nothing more to say
        return Rejection(index, event_id, first)
    problems, bad, _ = _member_problems(members)
    problems += _rules_around(members, bad, now, settings)
    others = [p for p in problems if _field_of(p) != _field_of(first)]
    return Rejection(index, event_id, "; ".join([first, *dict.fromkeys(others)]))


def _undecodable(raw: bytes | msgspec.Raw, index: int, exc: Exception) -> Rejection:
    """The rejection of an event msgspec cannot decode at all: decoded member by member,
    the reason names every field at fault (attributes nested too deeply, a string escape
    for a lone surrogate, broken JSON, a wrong type, a missing field) and the id is kept
    when it is readable."""
    members = object_members(bytes(raw))
    if members is None:
        if isinstance(exc, RecursionError):
            return Rejection(index, None, "event nests JSON too deeply")
        return Rejection(index, None, f"event is not valid JSON: {exc}")
    event_id = None
    deepest = (0, "")
    for name, value_raw in members:
        try:
            value = _any_decoder.decode(value_raw)
        except (msgspec.DecodeError, RecursionError):
            continue  # named by _member_problems
        if name == "id" and isinstance(value, str):
            event_id = value
        deepest = max(deepest, (_json_depth(value), name))
    problems, _, undecodable = _member_problems(members)
    if not undecodable:  # each part decodes; together they nest one level too deep
        field = deepest[1] or "event"
        problems = [
            f"{field}: nests JSON too deeply ({deepest[0]} levels)",
            *(p for p in problems if _field_of(p) != field),
        ]
    return Rejection(index, event_id, "; ".join(problems))


def parse_single(body: bytes, now: datetime, settings: IngestSettings) -> UsageEvent | Rejection:
    """``POST /v1/events``: the body is one event."""
    _check_body(body, settings)
    try:
        value = _any_decoder.decode(body)
    except msgspec.ValidationError:  # JSON, with a number no Python type holds
        return parse_event(body, 0, now, settings)
    except (msgspec.DecodeError, RecursionError) as exc:
        if object_members(body) is not None:
            return _undecodable(body, 0, exc)  # an object with one bad field: rejected
        if isinstance(exc, RecursionError):
            raise InvalidRequestError("body nests JSON too deeply", status_code=400) from exc
        raise InvalidRequestError(f"body is not valid JSON: {exc}", status_code=400) from exc
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
    events: Sequence[bytes | msgspec.Raw]
    try:
        events = _batch_decoder.decode(body).events
    except msgspec.ValidationError as exc:
        problem = _describe(exc, "the batch envelope", "the body")
        raise InvalidRequestError(f'body must be {{"events": [...]}}: {problem}') from exc
    except (msgspec.DecodeError, RecursionError) as exc:
        # Perhaps one event is what msgspec cannot decode (nested too deeply, a lone
        # surrogate escape): split the envelope without decoding the events, and let each
        # event be decoded, and rejected, alone.
        split = batch_events(body)
        if split is None:
            if isinstance(exc, RecursionError):
                raise InvalidRequestError("body nests JSON too deeply", status_code=400) from exc
            raise InvalidRequestError(f"body is not valid JSON: {exc}", status_code=400) from exc
        events = split
    _check_count(len(events), settings)
    return ParsedBatch([parse_event(raw, i, now, settings) for i, raw in enumerate(events)])


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
