"""The request class of LUC's app: Litestar's, with a JSON body that nests too deeply for
the decoder a client error like any other malformed body."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

from service.auth.keys import ApiKey


class LucRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        """The body decoded as JSON. msgspec decodes nesting by recursion and raises
        ``RecursionError`` (not its ``DecodeError``) past about a thousand levels: a body of
        a few KB got a 500 on every route that takes JSON. Litestar turns a
        ``SerializationException`` into a 400 ("body is not valid JSON: …")."""
        try:
            return await super().json()
        except RecursionError:
            raise SerializationException("it nests too deeply") from None


def reservation_owner(request: Request[Any, Any, Any]) -> int | None:
    """Whose reservations a request may release or settle: the id of its key when that key
    is not an admin key (only the reservations it made), else None (any: an admin key, or
    authentication off). The guard set the key."""
    key = request.scope.get("luc_key")
    return key.id if isinstance(key, ApiKey) and key.scope != "admin" else None
