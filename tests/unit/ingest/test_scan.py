"""Splitting a batch into its raw events without decoding them (and an event into members)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.ingest.scan import batch_events, object_members

DEEP = b"[" * 5000 + b"]" * 5000
LONE = rb'{"id": "e2", "attributes": {"k": "\udfff"}}'


def test_each_event_is_cut_out_whole_even_those_no_decoder_takes() -> None:
    body = b' {"events" : [ {"id": "e1"} ,' + LONE + b", " + DEEP + b', "x"]}\n'
    assert batch_events(body) == [b'{"id": "e1"}', LONE, DEEP, b'"x"']


def test_brackets_and_quotes_inside_strings_do_not_count() -> None:
    body = rb'{"events": [{"a": "]},[\"{"}, {"b": "\\"}]}'
    assert batch_events(body) == [rb'{"a": "]},[\"{"}', rb'{"b": "\\"}']


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [',  # cut short
        b'{"events": [1,, 2]}',
        b'{"events": [1, ]}',
        b'{"events": [1]} x',
        b'{"events": [1], "more": 2}',
        b'{"event": [1]}',
        b'x{"events": [1]}',
        b'{"events" x: [1]}',
        b'{"events": [1}',
        b'{"events": ["unterminated]}',
        b"[" + DEEP + b"]",
        b"",
    ],
)
def test_a_body_that_is_not_a_batch_around_its_events_is_not_split(body: bytes) -> None:
    assert batch_events(body) is None


def test_an_empty_batch_splits_into_nothing() -> None:
    assert batch_events(b'{"events": [ ]}') == []


def test_an_event_splits_into_its_members() -> None:
    assert object_members(b'{"id": "e2", "attributes": {"k": "\\udfff"}}') == [
        ("id", b'"e2"'),
        ("attributes", b'{"k": "\\udfff"}'),
    ]
    assert object_members(b"{ }") == []
    assert object_members(b'{"a": }') is None
    assert object_members(b'{"a": 1,}') is None
    assert object_members(b"[1]") is None
    assert object_members(b'{"\\ud800": 1}') is None  # a name that is not text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.lists(json_values, max_size=5))
def test_any_batch_splits_into_the_events_it_holds(events: list[object]) -> None:
    body = json.dumps({"events": events}).encode()
    split = batch_events(body)
    assert split is not None
    assert [json.loads(raw) for raw in split] == events
