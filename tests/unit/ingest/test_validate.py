"""Wire bytes → validated events (SPEC §2): each rule on its own, with its message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from service.errors import InvalidRequestError, PayloadTooLargeError
from service.ingest.models import Rejection, UsageEvent, UsageEventIn, differing_fields
from service.ingest.rules import check_event
from service.ingest.validate import parse_batch, parse_event, parse_single
from service.settings import IngestSettings, load_settings
from tests.support.events import wire_event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SETTINGS = IngestSettings(max_batch_events=3, max_body_bytes=64 * 1024)

GOOD: dict[str, Any] = wire_event("gen-1", occurred_at="2026-11-24T11:00:00Z")


def event_json(**changes: Any) -> bytes:
    """GOOD with ``changes``, as the bytes a gateway sends; a value of ``...`` removes the
    field."""
    return json.dumps(wire_event("gen-1", **{**GOOD, **changes})).encode()


def parsed(raw: bytes) -> UsageEvent:
    result = parse_event(raw, 0, NOW, SETTINGS)
    assert isinstance(result, UsageEvent), result
    return result


def rejected(raw: bytes) -> Rejection:
    result = parse_event(raw, 0, NOW, SETTINGS)
    assert isinstance(result, Rejection), result
    return result


def test_a_minimal_event_gets_the_defaults_of_the_spec() -> None:
    e = parsed(event_json())
    assert (e.cached_input_tokens, e.cache_write_tokens, e.reasoning_tokens) == (0, 0, 0)
    assert e.status == "ok"
    assert e.provider_cost_usd is None
    assert e.attributes is None
    assert e.occurred_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)


def test_a_full_event_keeps_every_field() -> None:
    e = parsed(
        event_json(
            cached_input_tokens=300,
            cache_write_tokens=200,
            reasoning_tokens=100,
            provider_cost_usd="0.000123456789",
            status="error",
            attributes={"route": "/chat", "n": [1, 2]},
        )
    )
    assert (e.input_tokens, e.cached_input_tokens, e.cache_write_tokens) == (1000, 300, 200)
    assert (e.output_tokens, e.reasoning_tokens) == (500, 100)
    assert e.provider_cost_usd == Decimal("0.000123456789")
    assert e.status == "error"
    assert e.attributes == {"route": "/chat", "n": [1, 2]}


def test_occurred_at_with_an_offset_is_normalised_to_utc() -> None:
    e = parsed(event_json(occurred_at="2026-11-24T13:30:00+02:00"))
    assert e.occurred_at == datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
    assert e.occurred_at.utcoffset() == timedelta(0)


def test_token_classes_exactly_at_their_totals_are_accepted() -> None:
    e = parsed(event_json(cached_input_tokens=600, cache_write_tokens=400, reasoning_tokens=500))
    assert (e.cached_input_tokens + e.cache_write_tokens, e.reasoning_tokens) == (1000, 500)


def test_occurred_at_exactly_at_the_allowed_skew_is_accepted() -> None:
    parsed(event_json(occurred_at="2026-11-24T12:05:00Z"))  # now + 300 s


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"input_tokens": "1000"}, "input_tokens", "expected `int`"),
        ({"input_tokens": 1.5}, "input_tokens", "expected `int`"),
        ({"input_tokens": True}, "input_tokens", "expected `int`"),
        ({"output_tokens": -1}, "output_tokens", ">= 0"),
        ({"cached_input_tokens": -5}, "cached_input_tokens", ">= 0"),
        ({"input_tokens": 10**16}, "input_tokens", "<="),
        ({"input_tokens": ...}, "input_tokens", "required"),
        ({"id": ...}, "id", "required"),
        ({"id": ""}, "id", "length >= 1"),
        ({"id": "x" * 129}, "id", "length <= 128"),
        ({"job_id": "j" * 129}, "job_id", "length <= 128"),
        ({"agent": "a" * 65}, "agent", "length <= 64"),
        ({"job_id": None}, "job_id", "got `null`"),
        ({"status": "failed"}, "status", "'failed'"),
        ({"occurred_at": "2026-11-24T11:00:00"}, "occurred_at", "no UTC offset"),
        ({"occurred_at": "yesterday"}, "occurred_at", "not an RFC 3339 timestamp"),
        ({"occurred_at": 1764000000}, "occurred_at", "expected `str`"),
        ({"occurred_at": "2026-11-24T10:00:00.1234567Z"}, "occurred_at", "at most 6"),
        ({"occurred_at": "2026-11-24T12:05:01Z"}, "occurred_at", "in the future"),
        ({"occurred_at": "0001-01-01T00:00:00+01:00"}, "occurred_at", "out of range"),
        ({"provider_cost_usd": 0.0012}, "provider_cost_usd", "expected `str | null`"),
        ({"provider_cost_usd": "twelve"}, "provider_cost_usd", "not a decimal string"),
        ({"provider_cost_usd": "-0.01"}, "provider_cost_usd", "cannot be negative"),
        ({"provider_cost_usd": "NaN"}, "provider_cost_usd", "not a number"),
        ({"provider_cost_usd": "1e400000000"}, "provider_cost_usd", "exponent"),
        ({"provider_cost_usd": "0E-16384"}, "provider_cost_usd", "exponent"),
        ({"provider_cost_usd": "1e-31"}, "provider_cost_usd", "exponent"),
        # 41 decimal places: past SPEC's digits (the wire's parser says so).
        ({"provider_cost_usd": "0." + "0" * 100 + "1"}, "provider_cost_usd", "decimal places"),
        ({"provider_cost_usd": "1" + "0" * 18}, "provider_cost_usd", "out of range"),
        ({"attributes": ["a"]}, "attributes", "expected `object | null`"),
        ({"attributes": {"blob": "x" * 4096}}, "attributes", "over the limit of 4096"),
        ({"attributes": {"a": "nul\u0000"}}, "attributes", "NUL"),
        ({"job_id": "job\u0000"}, "job_id", "NUL"),
        ({"cost_usd": "0"}, "cost_usd", "unknown field"),
        ({"price": "1"}, "price", "unknown field"),
        ({"catalog_version": 1}, "catalog_version", "unknown field"),
    ],
)
def test_each_rule_rejects_with_a_message_that_names_the_field(
    changes: dict[str, Any], field: str, says: str
) -> None:
    reason = rejected(event_json(**changes)).reason
    assert reason.startswith(f"{field}:"), reason
    assert says in reason, reason


def test_cached_and_cache_write_tokens_above_input_are_rejected_with_the_numbers() -> None:
    reason = rejected(event_json(cached_input_tokens=700, cache_write_tokens=301)).reason
    assert "cached_input_tokens + cache_write_tokens (700 + 301)" in reason
    assert "input_tokens (1000)" in reason


def test_reasoning_above_output_is_rejected_with_the_numbers() -> None:
    reason = rejected(event_json(reasoning_tokens=501)).reason
    assert reason.startswith("reasoning_tokens (501) exceed output_tokens (500)"), reason


def test_attributes_just_under_the_limit_are_accepted() -> None:
    # {"b":"..."} is 8 bytes of JSON around the string: 4088 + 8 = 4096.
    assert parsed(event_json(attributes={"b": "x" * 4088})).attributes is not None


def test_a_rejection_keeps_the_id_when_the_body_had_one() -> None:
    assert rejected(event_json(output_tokens=-1)).id == "gen-1"
    assert rejected(event_json(id=...)).id is None
    assert parse_event(b"[1, 2]", 4, NOW, SETTINGS) == Rejection(
        4, None, "an event must be a JSON object, got `array`"
    )


def test_an_event_that_is_not_json_is_rejected_alone() -> None:
    result = parse_event(b"{nope", 2, NOW, SETTINGS)
    assert isinstance(result, Rejection)
    assert result.index == 2
    assert "not valid JSON" in result.reason


def test_a_deeply_nested_event_is_rejected_not_crashed() -> None:
    deep = b'{"id": "gen-1", "attributes": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    rejection = rejected(deep)
    assert rejection.id == "gen-1"
    # Every problem: the nesting first, then each required field it lacks.
    assert rejection.reason == "attributes: nests JSON too deeply; " + "; ".join(
        f"{field}: required field is missing"
        for field in (
            "occurred_at",
            "job_id",
            "agent",
            "provider",
            "model",
            "input_tokens",
            "output_tokens",
        )
    )


# A rejected event names every problem it has, joined by "; ", the first one met first.
REASONING = "reasoning_tokens (501) exceed output_tokens (500); output_tokens counts reasoning too"


def test_an_event_breaking_several_rules_is_rejected_with_each_of_them() -> None:
    reason = rejected(
        event_json(
            occurred_at="2026-11-24T12:05:01Z", reasoning_tokens=501, provider_cost_usd="-0.01"
        )
    ).reason
    assert reason == (
        "occurred_at: 2026-11-24T12:05:01Z is more than 300 s in the future; "
        f"{REASONING}; "
        "provider_cost_usd: '-0.01' has a sign; the amount cannot be negative (a plain "
        "decimal string is expected, e.g. '12.05')"
    )


def test_an_event_with_several_bad_fields_names_each_and_the_rules_its_good_fields_break() -> None:
    # In the order of the body: job_id's type is met first, as msgspec meets it; then the
    # other fields, a missing one, and the rule that the good token fields break.
    reason = rejected(
        event_json(input_tokens=-1, job_id="j" * 129, cost_usd="0", agent=..., reasoning_tokens=501)
    ).reason
    assert reason == (
        "job_id: expected `str` of length <= 128; "
        "input_tokens: expected `int` >= 0; "
        "cost_usd: unknown field (the event format has no such field); "
        "agent: required field is missing; "
        f"{REASONING}"
    )


def test_a_rule_about_a_bad_field_is_not_reported_twice() -> None:
    # input_tokens is no number: the rule comparing cached tokens with it cannot be judged.
    reason = rejected(
        event_json(input_tokens="many", cached_input_tokens=2000, reasoning_tokens=501)
    ).reason
    assert reason == f"input_tokens: expected `int`, got `str`; {REASONING}"


def test_an_undecodable_event_names_its_other_bad_fields_too() -> None:
    raw = event_json(output_tokens=-5).replace(b'"job-1"', b'"\\ud800"')
    rejection = rejected(raw)
    assert (rejection.id, rejection.reason) == (
        "gen-1",
        "job_id: holds a string escape for a lone UTF-16 surrogate (\\ud800–\\udfff without "
        "its pair), which is not Unicode text; output_tokens: expected `int` >= 0",
    )


def test_a_batch_parses_each_event_on_its_own() -> None:
    body = json.dumps(
        {"events": [GOOD, {**GOOD, "id": "gen-2", "input_tokens": -1}, {**GOOD, "id": "gen-3"}]}
    ).encode()
    items = parse_batch(body, NOW, SETTINGS).items
    assert [type(i).__name__ for i in items] == ["UsageEvent", "Rejection", "UsageEvent"]
    bad = items[1]
    assert isinstance(bad, Rejection)
    assert (bad.index, bad.id) == (1, "gen-2")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "body is empty"),
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 422, "the body must be a JSON object"),
        (b'"events"', 422, "the body must be a JSON object"),
        (b"{}", 422, "events: required field is missing"),
        (b'{"events": {}}', 422, "events: expected `array`"),
        (b'{"events": [], "extra": 1}', 422, "extra: unknown field"),
        (b'{"events": []}', 422, "events: the batch is empty"),
        (b'{"events": [{}, {}, {}, {}]}', 413, "events: the batch holds 4 events; the limit is 3"),
        (b'{"events": [' + b"[" * 5000 + b"]" * 4999 + b"}", 400, "nests JSON too deeply"),
        (b'{"events": [{"a": "\\udfff"}, {}] x}', 400, "not valid JSON"),
        (b'{"events": ["' + b"x" * 70_000 + b'"]}', 413, "the limit is 65536"),
    ],
)
def test_an_envelope_problem_fails_the_whole_batch(body: bytes, status: int, says: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_batch(body, NOW, SETTINGS)
    assert caught.value.status_code == status
    assert says in caught.value.message
    if status == 413:
        assert isinstance(caught.value, PayloadTooLargeError)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"  ", 400, "body is empty"),
        (b"nope", 400, "not valid JSON"),
        (b"[1]", 422, "must be a JSON object"),
        (b"42", 422, "must be a JSON object"),
    ],
)
def test_a_single_event_body_that_is_not_an_object_fails(
    body: bytes, status: int, says: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_single(body, NOW, SETTINGS)
    assert caught.value.status_code == status
    assert says in caught.value.message


def test_a_single_event_body_with_a_bad_field_is_a_rejection_not_an_error() -> None:
    result = parse_single(event_json(reasoning_tokens=900), NOW, SETTINGS)
    assert isinstance(result, Rejection)
    assert result.reason.startswith("reasoning_tokens")


def test_the_same_content_written_differently_has_no_differing_fields() -> None:
    first = parsed(event_json(provider_cost_usd="0.10", attributes={"a": 1, "b": [1e23]}))
    second = parsed(
        event_json(
            occurred_at="2026-11-24T12:00:00+01:00",
            provider_cost_usd="0.1",
            attributes={"b": [10**23], "a": 1},
        )
    )
    assert differing_fields(first, second) == []


def test_differing_content_names_each_field_that_differs() -> None:
    first = parsed(event_json(attributes={"flag": 1}))
    second = parsed(event_json(output_tokens=501, model="other/model", attributes={"flag": True}))
    assert differing_fields(first, second) == ["model", "output_tokens", "attributes"]


def test_the_future_skew_follows_the_setting() -> None:
    strict = IngestSettings(max_future_skew_seconds=0)
    later = NOW.astimezone(timezone(timedelta(hours=-5))) + timedelta(microseconds=1)
    raw = event_json(occurred_at=later.isoformat())
    result = parse_event(raw, 0, NOW, strict)
    assert isinstance(result, Rejection)
    assert "more than 0 s in the future" in result.reason


@pytest.mark.parametrize(
    "cost",
    [
        "999999999999999999",  # 18 digits before the point: below 10^18
        "0." + "0" * 29 + "1",  # 30 decimal places
        "0." + "0" * 39 + "1",  # 40 decimal places: SPEC's 40 significant digits allow it
        "0." + "0" * 60 + "1",  # 61 places, one significant digit: allowed as well
        "00.5",  # SPEC refuses no leading zero
        "1." + "2" * 39,  # 40 significant digits, 39 of them decimal places
        "0.1" + "0" * 35,  # 36 written, but 1 significant decimal place
        "123456789.123456789",  # 19 characters, well within both bounds
    ],
)
def test_provider_costs_within_their_bounds_are_accepted(cost: str) -> None:
    assert parsed(event_json(provider_cost_usd=cost)).provider_cost_usd == Decimal(cost)


def test_each_text_field_that_postgresql_cannot_store_is_named_in_field_order() -> None:
    reason = rejected(event_json(model="gemini\u0000", agent="a\u0000", id="é\u0000")).reason
    assert reason == (
        "id: must not contain the NUL character (U+0000); "
        "agent: must not contain the NUL character (U+0000); "
        "model: must not contain the NUL character (U+0000)"
    )


def test_text_beyond_ascii_is_accepted_and_a_lone_surrogate_is_not() -> None:
    assert parsed(event_json(agent="Agent 7 ✓", job_id="tâche-1")).agent == "Agent 7 ✓"
    # A lone surrogate cannot come from JSON (msgspec refuses its escape), but an event
    # built in-process can hold one.
    wire = UsageEventIn(**{**GOOD, "job_id": "job-\ud800"})
    assert check_event(wire, NOW, SETTINGS) == (
        "job_id: holds a lone UTF-16 surrogate (U+D800), which is not Unicode text"
    )


def test_text_problems_of_the_optional_ids_come_after_the_other_rules() -> None:
    reason = rejected(
        event_json(
            customer_id="cust\u0000",
            reservation_id="res-\u0000",
            model="m\u0000",
            occurred_at="2026-11-24T12:05:01Z",
        )
    ).reason
    assert reason == (
        "model: must not contain the NUL character (U+0000); "
        "occurred_at: 2026-11-24T12:05:01Z is more than 300 s in the future; "
        "reservation_id: must not contain the NUL character (U+0000); "
        "customer_id: must not contain the NUL character (U+0000)"
    )
    # Only an optional id at fault: it alone is named.
    assert rejected(event_json(customer_id="cust\u0000")).reason == (
        "customer_id: must not contain the NUL character (U+0000)"
    )


def test_a_batch_of_the_largest_valid_events_in_utf_8_fits_the_default_body_limit() -> None:
    # Limits count characters; a 4-byte character each (an emoji) makes a valid event of
    # about 8 KB. 5,000 of them (40.3 MB) were refused whole with a 413 at 30.7 MB.
    e = "😀"
    largest = {
        "id": e * 128, "occurred_at": "2026-11-24T11:00:00.123456+00:00", "job_id": e * 128,
        "agent": e * 64, "provider": e * 64, "model": e * 256, "customer_id": e * 128,
        "reservation_id": e * 128, "provider_cost_usd": "1" * 12 + "." + "1" * 28,
        "input_tokens": 10**12, "cached_input_tokens": 10**12, "cache_write_tokens": 0,
        "output_tokens": 10**12, "reasoning_tokens": 10**12,
        # exactly LUC_MAX_ATTRIBUTES_BYTES (4,096) as compact UTF-8: 8 + 2,044 two-byte "é"
        "attributes": {"k": "é" * 2044},
    }  # fmt: skip
    raw = json.dumps(largest, ensure_ascii=False, separators=(",", ":")).encode()
    defaults = IngestSettings()
    event = parse_event(raw, 0, NOW, defaults)
    assert isinstance(event, UsageEvent), event
    assert (
        len(json.dumps(largest["attributes"], ensure_ascii=False, separators=(",", ":")).encode())
        == 4096
    )
    batch = b'{"events":[' + b",".join([raw] * defaults.max_batch_events) + b"]}"
    assert len(batch) <= defaults.max_body_bytes == load_settings({}).ingest.max_body_bytes


def _given_twice(event: dict[str, Any], name: str, first: Any) -> bytes:
    """``event`` as JSON whose member ``name`` is given twice: ``first`` then its value."""
    text = json.dumps(event)
    member = f'"{name}": '
    assert text.count(member) == 1
    return text.replace(member, f"{member}{json.dumps(first)}, {member}").encode()


REPEAT = "given more than once"


def test_an_event_that_names_a_field_twice_is_rejected_naming_it() -> None:
    # The decoder keeps the last value: this event would have been booked at 0.001 though
    # it also says 5.
    raw = _given_twice({**GOOD, "provider_cost_usd": "0.001"}, "provider_cost_usd", "5")
    result = parse_single(raw, NOW, SETTINGS)
    assert isinstance(result, Rejection)
    assert (result.index, result.id) == (0, "gen-1")
    assert result.reason == (
        "provider_cost_usd: the name 'provider_cost_usd' is given more than once; a JSON "
        "object's names must be unique, and LUC will not guess which value was meant"
    )


def test_a_batch_rejects_the_events_with_a_repeated_name_alone() -> None:
    events = [GOOD, {**GOOD, "id": "gen-2"}, {**GOOD, "id": "gen-3", "attributes": {"k": 1}}]
    body = json.dumps({"events": events}).encode()
    body = body.replace(b'"id": "gen-2", ', b'"model": "x/y", "id": "gen-2", ')
    body = body.replace(b'{"k": 1}', b'{"k": 0, "k": 1}')
    items = parse_batch(body, NOW, SETTINGS).items
    assert isinstance(items[0], UsageEvent)
    assert [(r.index, r.id, r.reason.split(";")[0]) for r in items[1:]] == [  # type: ignore[union-attr]
        (1, "gen-2", f"model: the name 'model' is {REPEAT}"),
        (2, "gen-3", f"attributes: the name 'k' is {REPEAT} (at attributes.k)"),
    ]


def test_a_repeat_in_a_batch_with_an_event_of_the_wrong_type_is_still_seen() -> None:
    # The batch is decoded event by event (gen-2's type is wrong), and still screened.
    body = json.dumps(
        {"events": [GOOD, {**GOOD, "id": "gen-2", "input_tokens": "1"}, {**GOOD, "id": "gen-3"}]}
    ).encode()
    body = body.replace(b'"id": "gen-3", ', b'"id": "gen-3", "agent": "a", ')
    items = parse_batch(body, NOW, SETTINGS).items
    assert isinstance(items[0], UsageEvent)
    assert isinstance(items[1], Rejection) and items[1].reason.startswith("input_tokens")
    assert isinstance(items[2], Rejection)
    assert items[2].reason.startswith(f"agent: the name 'agent' is {REPEAT}")


def test_a_batch_that_names_events_twice_fails_whole() -> None:
    body = b'{"events": [], "events": [' + json.dumps(GOOD).encode() + b"]}"
    with pytest.raises(InvalidRequestError) as caught:
        parse_batch(body, NOW, SETTINGS)
    assert caught.value.status_code == 400
    assert caught.value.message.startswith(f"events: {REPEAT} in the body")


def test_a_repeat_beside_an_event_nested_too_deeply_is_still_seen() -> None:
    # The body does not decode as a whole: each event is read on its own.
    deep = {**GOOD, "id": "gen-2", "attributes": {"a": "NEST"}}
    body = json.dumps({"events": [GOOD, deep, {**GOOD, "id": "gen-3"}]}).encode()
    body = body.replace(b'"NEST"', b"[" * 3000 + b"]" * 3000)
    body = body.replace(b'"id": "gen-3", ', b'"id": "gen-3", "job_id": "j", ')
    items = parse_batch(body, NOW, SETTINGS).items
    assert isinstance(items[0], UsageEvent)
    assert isinstance(items[1], Rejection) and "nests JSON too deeply" in items[1].reason
    assert isinstance(items[2], Rejection)
    assert items[2].reason.startswith(f"job_id: the name 'job_id' is {REPEAT}")


def test_a_repeated_name_that_is_a_lone_surrogate_is_named_by_its_escape() -> None:
    # The name went into the reason as it was: no UTF-8 answer could hold it (a 500, after
    # the batch's good events were committed).
    body = json.dumps({"events": [GOOD, {**GOOD, "id": "gen-2", "attributes": {"K": 1}}]})
    raw = body.encode().replace(b'{"K": 1}', b'{"\\ud800": 1, "\\ud800": 2}')
    items = parse_batch(raw, NOW, SETTINGS).items
    assert isinstance(items[0], UsageEvent)
    assert isinstance(items[1], Rejection)
    assert items[1].reason.startswith(
        f"attributes: the name '\\ud800' is {REPEAT} (at attributes.\\ud800)"
    )
    items[1].reason.encode("utf-8")
