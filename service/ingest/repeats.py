"""Names given twice in one JSON object (``{"provider_cost_usd": "5", "provider_cost_usd":
"0.001"}``).

RFC 8259 leaves such an object's meaning to the reader, and msgspec, like most decoders,
keeps the last value without a word. A gateway that wrote one means something LUC cannot
know, and another reader of the same bytes (a log pipeline, a proxy that validated them)
may have taken the first value: a body that names a member twice is refused, naming it.

msgspec cannot see repeats, so they are found apart: ``may_repeat`` screens a whole body
in a few C calls against the names its decoding holds, and ``repeated`` names them exactly,
with Python's own decoder, in the rare body the screen cannot clear.
"""

from __future__ import annotations

import json
from typing import Any

_BLANKS = b" \t\n\r"
_BLANK_BYTES = tuple(bytes([b]) for b in _BLANKS)
_NAME_END = b'":'
_ESCAPED_NAME_END = b'\\":'


def distinct_names(value: Any) -> int:
    """How many distinct member names the objects of a decoded JSON value hold in all."""
    kind = type(value)
    if kind is dict:
        count = len(value)
        values = value.values()
    elif kind is list:
        count = 0
        values = value
    else:
        return 0
    for item in values:
        if type(item) is dict or type(item) is list:
            count += distinct_names(item)
    return count


def may_repeat(text: bytes, names: int) -> bool:
    """False when no object of the JSON ``text``, whose decoded objects hold ``names``
    distinct member names in all (``distinct_names``), names a member twice; True when one
    may (``repeated`` tells).

    Outside strings, a quote followed by a colon (blanks between them taken out) ends a
    member's name and nothing else; inside a string a quote is escaped. So, when no escaped
    quote stands before a colon, the text's count of ``":`` is the number of names as sent,
    which equals the distinct names exactly when none repeats."""
    # Most gateways write compact JSON: then there is no blank to take out (four scans
    # for one byte each cost less than copying the text without them).
    compact = text.translate(None, _BLANKS) if any(b in text for b in _BLANK_BYTES) else text
    if _ESCAPED_NAME_END in compact:
        return True
    return compact.count(_NAME_END) != names


Path = tuple[str | int, ...]
"""Where a value sits in a JSON text: member names and array positions, from the top."""


class _Members(dict[str, Any]):
    """A decoded object that remembers the names its text gave more than once."""

    repeats: tuple[str, ...] = ()


def _members(pairs: list[tuple[str, Any]]) -> _Members:
    members = _Members(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        repeats: list[str] = []
        for name, _ in pairs:
            if name in seen:
                repeats.append(name)
            seen.add(name)
        members.repeats = tuple(dict.fromkeys(repeats))
    return members


def _paths(value: Any, where: Path) -> list[Path]:
    found: list[Path] = []
    if isinstance(value, _Members):
        found += [(*where, name) for name in value.repeats]
        for name, item in value.items():
            found += _paths(item, (*where, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*where, index))
    return found


def repeated(text: bytes) -> list[Path]:
    """The path of each name some object of the JSON ``text`` gives more than once, in the
    text's order; empty when none is, or when Python's decoder cannot read the text (nested
    deeper than its recursion allows: the caller's own rules refuse such a text)."""
    try:
        value = json.loads(text, object_pairs_hook=_members)
    except (ValueError, RecursionError):
        return []
    return _paths(value, ())


def _shown(name: str) -> str:
    """A member name as a message may quote it: a lone surrogate (``"\\ud800"``, which no
    UTF-8 answer can hold) written as its escape."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def path_text(path: Path) -> str:
    """``("attributes", "tags", 0, "x")`` as ``attributes.tags[0].x``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{_shown(part)}" if text else _shown(part)
    return text


REPEAT_REASON = "a JSON object's names must be unique, and LUC will not guess which value was meant"


def repeat_problem(path: Path) -> str:
    """The rejection of a name given twice, named as a field's problem is: its top-level
    field first, then the whole path when the name is deeper."""
    where = f" (at {path_text(path)})" if len(path) > 1 else ""
    field, name = path[0], path[-1]
    assert isinstance(field, str) and isinstance(name, str)  # names, not positions
    return f"{_shown(field)}: the name {name!r} is given more than once{where}; {REPEAT_REASON}"
