"""API keys: list, create (the secret is shown once), revoke. Admin only."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from service.api.deps import Resources, provide_resources
from service.api.schemas import timestamp
from service.auth.guard import ADMIN
from service.auth.keys import ApiKey, create_key, list_keys, revoke_key
from service.db import on_connection


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
    return KeyOut(
        id=k.id,
        name=k.name,
        scope=k.scope,
        prefix=k.prefix,
        created_at=timestamp(k.created_at) or "",
        revoked_at=timestamp(k.revoked_at),
        key=secret,
    )


class KeysController(Controller):
    path = "/v1/keys"
    tags = ["keys"]
    opt = ADMIN
    dependencies = {"luc": Provide(provide_resources)}

    @get("/", operation_id="listKeys", summary="API keys (never their secrets)")
    async def list(self, luc: NamedDependency[Resources]) -> KeyList:
        keys = await on_connection(luc.pool, list_keys)
        return KeyList(items=[key_out(k) for k in keys])

    @post(
        "/",
        operation_id="createKey",
        summary="Create an API key; the answer holds the secret, shown this once",
        status_code=201,
    )
    async def create(self, luc: NamedDependency[Resources], data: JSONBody[KeyIn]) -> KeyOut:
        key, secret = await on_connection(
            luc.pool, lambda conn: create_key(conn, data.name, data.scope)
        )
        return key_out(key, secret)

    @delete("/{key_id:int}", operation_id="revokeKey", summary="Revoke an API key", status_code=204)
    async def revoke(self, luc: NamedDependency[Resources], key_id: FromPath[int]) -> None:
        await on_connection(luc.pool, lambda conn: revoke_key(conn, key_id))
