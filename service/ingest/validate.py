"""Wire bytes → validated events, with one precise message per rejected event."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from service.errors import InvalidRequestError, PayloadTooLargeError
from service.ingest.models import BatchIn, Rejection, UsageEvent, UsageEventIn
from service.ingest.repeats import (
    REPEAT_REASON,
    Path,
    distinct_names,
    may_repeat,
    path_text,
    repeat_problem,
    repeated,
)
from service.ingest.rules import SURROGATE_ESCAPE, check_event, json_depth, rule_problems
from service.ingest.scan import batch_events, object_members
from service.settings import IngestSettings

_event_decoder = msgspec.json.Decoder(UsageEventIn)


class _TypedBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[UsageEventIn]


# The common case, a batch whose events are all well-formed, decodes in one C call;
# only a batch with a bad event is decoded again event by event to find it.
_typed_batch_decoder = msgspec.json.Decoder(_TypedBatch)
_batch_decoder = msgspec.json.Decoder(BatchIn)
_any_decoder = msgspec.json.Decoder()


LONE_SURROGATE_ESCAPE = (
    "holds a string escape for a lone UTF-16 surrogate (\\ud800–\\udfff without its pair), "
    "which is not Unicode text"
)
"""Why JSON holding such an escape is refused: msgspec says "Input data was truncated",
which sends a client looking for a cut body."""


def _lone_surrogate_escape(raw: bytes, error: msgspec.DecodeError) -> bool:
    """Whether msgspec could not decode ``raw`` for a string escape of a lone surrogate."""
    return "surrogate" in str(error) or SURROGATE_ESCAPE.search(raw) is not None


def body_not_json(body: bytes, error: msgspec.DecodeError) -> InvalidRequestError:
    """The 400 for a request body msgspec could not decode, on every route that reads one."""
    why = f"it {LONE_SURROGATE_ESCAPE}" if _lone_surrogate_escape(body, error) else error
    return InvalidRequestError(f"body is not valid JSON: {why}", status_code=400)


class _MemberNames(msgspec.Struct):
    events: list[dict[str, msgspec.Raw]]


# Each event's members as undecoded bytes: the cheapest decoding that counts their names.
_member_names_decoder = msgspec.json.Decoder(_MemberNames)


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
            if _lone_surrogate_escape(value_raw, error):
                problems.append(f"{name}: {LONE_SURROGATE_ESCAPE}")
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
    problems, _, _ = rule_problems(event, now, settings)
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
        deepest = max(deepest, (json_depth(value), name))
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
        raise body_not_json(body, exc) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("body must be a JSON object: one usage event")
    if may_repeat(body, distinct_names(value)) and (paths := repeated(body)):
        return _repeats_rejection(body, 0, paths)
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
        # The names each event gives, counted in C: the typed events cannot tell a field
        # sent with its default value from one not sent. Only attributes hold objects.
        names = 1 + sum(map(len, _member_names_decoder.decode(body).events))
        names += sum(distinct_names(w.attributes) for w in typed.events if w.attributes)
        repeats = _batch_repeats(body, names=names)
        return ParsedBatch(
            [
                _repeats_rejection(wire.id, i, repeats[i])
                if i in repeats
                else _checked(wire, i, now, settings)
                for i, wire in enumerate(typed.events)
            ]
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
            raise body_not_json(body, exc) from exc
        events = split
    _check_count(len(events), settings)
    repeats = _batch_repeats(body, events)
    return ParsedBatch(
        [
            _repeats_rejection(raw, i, repeats[i])
            if i in repeats
            else parse_event(raw, i, now, settings)
            for i, raw in enumerate(events)
        ]
    )


def _batch_repeats(
    body: bytes, events: Sequence[bytes | msgspec.Raw] = (), names: int | None = None
) -> dict[int, list[Path]]:
    """Event position → the names its objects give more than once (paths from the event);
    a body whose envelope names ``events`` twice is refused whole. A body that decodes is
    screened at once (``names``: the distinct names of its decoding, when known); one that
    does not (an event nests too deeply, say) is read event by event (``events``, its raw
    events)."""
    by_event: dict[int, list[Path]] = {}
    if names is None:
        try:
            names = distinct_names(_any_decoder.decode(body))
        except (msgspec.DecodeError, RecursionError):
            for i, raw in enumerate(events):
                if paths := repeated(bytes(raw)):
                    by_event[i] = paths
            return by_event
    if not may_repeat(body, names):
        return by_event
    for path in repeated(body):
        if len(path) == 1:
            raise InvalidRequestError(
                f"{path_text(path)}: given more than once in the body; {REPEAT_REASON}",
                status_code=400,
            )
        if len(path) > 2 and path[0] == "events" and isinstance(path[1], int):
            by_event.setdefault(path[1], []).append(path[2:])
    return by_event


def _repeats_rejection(
    event: str | bytes | msgspec.Raw, index: int, paths: list[Path]
) -> Rejection:
    """The rejection of an event that names a member twice: ``event`` is its id, or its
    bytes to read the id from."""
    event_id = event if isinstance(event, str) else _recover_id(event)
    return Rejection(index, event_id, "; ".join(repeat_problem(p) for p in paths))


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
