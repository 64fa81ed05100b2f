"""Splitting JSON that msgspec cannot decode as a whole into its parts, without recursion.

A batch whose one event nests JSON thousands of levels deep, or holds a string escape for a
lone UTF-16 surrogate (``"\\udfff"``), fails msgspec's decoding of the whole body, though
only that event is bad. These functions find the byte span of each element of the batch's
``events`` array, and of each member of one event object, by counting brackets outside
strings (a regular expression walks the tokens, so no Python recursion and no per-byte
loop), so that each part can be decoded, and refused, on its own. They do not validate
what lies inside a part: its own decoding does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

# A complete string, a structural character, or a quote that opens a string never closed.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]|"', re.DOTALL)
_WHITESPACE = b" \t\n\r"  # JSON's own; bytes.strip() would take more
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class _Malformed(Exception):
    """The text is not JSON of the expected shape at the level being split."""


class _Tokens:
    """The tokens of ``text`` in order, with checks that the gaps between them are blank."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._matches: Iterator[re.Match[bytes]] = _TOKEN.finditer(text)
        self.position = 0

    def next(self) -> re.Match[bytes]:
        token = next(self._matches, None)
        if token is None or token.group() == b'"':
            raise _Malformed
        return token

    def expect(self, kind: bytes) -> re.Match[bytes]:
        """The next token, which must be ``kind`` (``b'"'`` for any string) after blanks."""
        token = self.next()
        if self.text[self.position : token.start()].strip(_WHITESPACE):
            raise _Malformed
        if token.group()[:1] != kind or (kind == b'"' and len(token.group()) < 2):
            raise _Malformed
        self.position = token.end()
        return token

    def value(self, *, ends: bytes) -> tuple[bytes, bytes]:
        """The bytes of one value (blanks stripped) and the delimiter that ended it: the
        first of ``ends`` found outside any nested array or object."""
        start = self.position
        depth = 0
        while True:
            token = self.next()
            char = token.group()[0]
            if char in _OPEN:
                depth += 1
            elif depth and char in _CLOSE:
                depth -= 1
            elif not depth and token.group() in (ends[:1], ends[1:]):
                self.position = token.end()
                return self.text[start : token.start()].strip(_WHITESPACE), token.group()
            elif char in _CLOSE:
                raise _Malformed

    def end(self) -> None:
        if self.text[self.position :].strip(_WHITESPACE):
            raise _Malformed


def _key(token: re.Match[bytes]) -> str:
    try:
        key = msgspec.json.decode(token.group())
    except msgspec.DecodeError:
        raise _Malformed from None
    if not isinstance(key, str):
        raise _Malformed
    return key


def batch_events(body: bytes) -> list[bytes] | None:
    """The raw events of a body ``{"events": [...]}``, or None when the body has another
    shape or is not JSON around its events."""
    tokens = _Tokens(body)
    try:
        tokens.expect(b"{")
        if _key(tokens.expect(b'"')) != "events":
            return None
        tokens.expect(b":")
        tokens.expect(b"[")
        events: list[bytes] = []
        delimiter = b","
        while delimiter == b",":
            raw, delimiter = tokens.value(ends=b",]")
            if not raw:
                if delimiter == b"]" and not events:
                    break  # "[]": an empty batch, which the caller refuses by its count
                raise _Malformed  # "[1,,2]" or "[1,]"
            events.append(raw)
        tokens.expect(b"}")
        tokens.end()
    except _Malformed:
        return None
    return events


def object_members(raw: bytes) -> list[tuple[str, bytes]] | None:
    """(name, raw value) of each member of the JSON object ``raw``, or None when ``raw`` is
    not an object or not JSON at the level of its members."""
    tokens = _Tokens(raw)
    members: list[tuple[str, bytes]] = []
    try:
        tokens.expect(b"{")
        delimiter = b","
        while delimiter == b",":
            try:
                name = _key(tokens.expect(b'"'))
            except _Malformed:
                if members or tokens.text[tokens.position :].strip(_WHITESPACE) != b"}":
                    raise
                return []  # "{}"
            tokens.expect(b":")
            value, delimiter = tokens.value(ends=b",}")
            if not value:
                raise _Malformed
            members.append((name, value))
        tokens.end()
    except _Malformed:
        return None
    return members
