"""API keys: what creating one takes, and a key as listed (never its secret, but once)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from service.api.schemas.common import wire_struct
from service.auth.keys import ApiKey


class KeyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scope: Literal["ingest", "read", "admin"]


class KeyOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    scope: str
    prefix: str
    """The key's first characters, to tell keys apart; never the whole key."""
    created_at: str
    revoked_at: str | None
    key: str | None = None
    """The secret itself: only in the answer that created it."""


class KeyList(msgspec.Struct):
    items: list[KeyOut]


def key_out(k: ApiKey, secret: str | None = None) -> KeyOut:
    return wire_struct(KeyOut, k, key=secret)
