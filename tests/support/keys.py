"""API keys for tests and bench/: made straight in the database, as ``luc keys create``
makes them, and the header that presents one."""

from __future__ import annotations

from service.auth.keys import create_key
from tests.support.databases import connected


async def new_key(database_url: str, scope: str = "admin", name: str = "tests") -> str:
    """A key with ``scope`` in the database at ``database_url``; its secret."""
    async with connected(database_url) as conn:
        _, secret = await create_key(conn, name, scope)
    return secret


def bearer(secret: str) -> dict[str, str]:
    """The ``Authorization`` header that presents ``secret``."""
    return {"Authorization": f"Bearer {secret}"}
