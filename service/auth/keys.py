"""Creating, checking and revoking API keys. Only a SHA-256 of each key is stored.

A key is ``luc_`` followed by 32 random bytes (256 bits) in URL-safe base64. Such a key
cannot be guessed, so a fast hash is enough to store it (a slow password hash protects
low-entropy secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.auth import queries
from service.db import Connection, from_row
from service.errors import InvalidRequestError, NotFoundError

SCOPES = ("ingest", "read", "admin")
KEY_PREFIX = "luc_"
SHOWN_PREFIX_LENGTH = 12


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _key(r: Any) -> ApiKey:
    return from_row(ApiKey, r)


async def create_key(conn: Connection, name: str, scope: str) -> tuple[ApiKey, str]:
    """A new key; the secret is returned once, here, and never again."""
    if scope not in SCOPES:
        raise InvalidRequestError(f"scope: {scope!r} is not one of {', '.join(SCOPES)}")
    name = name.strip()
    # No control characters: `luc keys list` writes tab-separated rows that scripts read,
    # which a tab or a newline in a name split, and PostgreSQL refuses a NUL in text.
    if not name or len(name) > 200 or any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidRequestError(
            "name: give a name of 1 to 200 characters, without control characters"
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        queries.INSERT_KEY, name, scope, secret[:SHOWN_PREFIX_LENGTH], key_hash(secret)
    )
    assert row is not None
    return _key(row), secret


async def find_key(
    conn: Connection, secret: str, wait_seconds: float | None = None
) -> ApiKey | None:
    """The key whose secret this is, revoked or not; None for an unknown secret. PostgreSQL's
    answer is waited for ``wait_seconds`` (the connection's command timeout if None)."""
    row = await conn.fetchrow(queries.SELECT_KEY_BY_HASH, key_hash(secret), timeout=wait_seconds)
    return None if row is None else _key(row)


async def list_keys(conn: Connection) -> list[ApiKey]:
    return [_key(r) for r in await conn.fetch(queries.SELECT_KEYS)]


async def revoke_key(conn: Connection, key_id: int) -> None:
    if await conn.fetchval(queries.REVOKE_KEY, key_id) is None:
        raise NotFoundError(f"key {key_id} does not exist or is already revoked")


async def count_admin_keys(conn: Connection) -> int:
    return int(await conn.fetchval(queries.COUNT_ACTIVE_ADMIN_KEYS))
