"""API keys for tests and bench/: made straight in the database, as ``luc keys create``
makes them, and the header that presents one."""

from __future__ import annotations

from service.auth.keys import create_key
from service.db import connect


async def new_key(database_url: str, scope: str = "admin", name: str = "tests") -> str:
    """A key with ``scope`` in the database at ``database_url``; its secret."""
    conn = await connect(database_url)
    try:
        _, secret = await create_key(conn, name, scope)
    finally:
        await conn.close()
    return secret


def bearer(secret: str) -> dict[str, str]:
    """The ``Authorization`` header that presents ``secret``."""
    return {"Authorization": f"Bearer {secret}"}
