"""Tab-separated rows of the ``list`` commands, one record a line, for scripts to read."""

from __future__ import annotations

import unicodedata


def cell(text: str) -> str:
    """``text`` as one field of a row: a tab or a newline in a customer's or a plan's name
    split its row into more fields or lines. Escaped as PostgreSQL's ``COPY`` text format
    writes them (``\\t``, ``\\n``, ``\\r``, ``\\\\``), other control characters ``\\xHH``."""
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char in _NAMED:
            out.append(_NAMED[char])
        elif unicodedata.category(char) == "Cc":
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
