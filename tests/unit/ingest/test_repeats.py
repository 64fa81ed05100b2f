"""Names given twice in a JSON object: the screen clears a text exactly when no object of it
repeats a name, and the exact reading names each repeat with its path."""

from __future__ import annotations

import msgspec
import pytest

from service.ingest.repeats import distinct_names, may_repeat, path_text, repeated


def screened(text: bytes) -> bool:
    return may_repeat(text, distinct_names(msgspec.json.decode(text)))


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1, "b": 2}',
        b'{"a":{"b":[{"c":1},{"c":2}]},"c":3}',  # the same name in different objects
        b'{\n  "a" : "x:y",\n  "b"\t:\r\n"\\"quoted\\" text"\n}',  # blanks and escapes
        b'[1, "a\\":", {}]',  # no object with a name; an escaped quote before a colon
        b'{"a\\\\": 1}',  # a name ending in a backslash
    ],
)
def test_a_text_without_a_repeat_has_none_named(text: bytes) -> None:
    assert repeated(text) == []


@pytest.mark.parametrize(
    "text",
    [b'{"a": 1, "b": 2}', b'{"a":{"b":[{"c":1},{"c":2}]},"c":3}', b"[]", b'"x"', b"{}"],
)
def test_the_screen_clears_plain_texts_without_a_repeat(text: bytes) -> None:
    assert not screened(text)


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        (b'{"a": 1, "a": 2}', ["a"]),
        (b'{"a" : 1, "a"\n: 1}', ["a"]),  # blanks before the colon
        (b'{"x": {"a": 1, "b": 2, "a": 3, "b": 4}}', ["x.a", "x.b"]),
        (b'{"x": [0, {"k": 1, "k": 1}]}', ["x[1].k"]),
        (b'{"a": 1, "a": 2, "a": 3}', ["a"]),
        # A repeat hidden behind an escaped quote and colon in a string, which the screen
        # cannot count past: it sends the text to the exact reading.
        (b'{"note": "say \\": then", "a": 1, "a": 2}', ["a"]),
    ],
)
def test_every_repeat_is_screened_and_named_by_its_path(text: bytes, paths: list[str]) -> None:
    assert screened(text)
    assert [path_text(p) for p in repeated(text)] == paths
