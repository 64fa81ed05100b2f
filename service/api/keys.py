"""API keys: list, create (the secret is shown once), revoke. Admin only."""

from __future__ import annotations

from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.api.deps import LucController, Resources
from service.api.schemas.keys import KeyIn, KeyList, KeyOut, key_out
from service.auth.guard import ADMIN
from service.auth.keys import create_key, list_keys, revoke_key
from service.db import on_connection


class KeysController(LucController):
    path = "/v1/keys"
    tags = ["keys"]
    opt = ADMIN

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
        luc.key_cache.forget(key_id)
