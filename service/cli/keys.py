"""``luc keys``: create, list and revoke API keys in the server's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from service.cli.database import run_on_database
from service.cli.tsv import cell
from service.wire import instant_text

if TYPE_CHECKING:
    from service.db import Connection

LIST_COLUMNS = ("id", "scope", "name", "prefix", "created", "status")


@click.group()
def keys() -> None:
    """API keys: ingest (the gateway), read (finance), admin (catalog, budgets, keys).

    Clients send the key as 'Authorization: Bearer <key>'. Only a hash is stored: a key
    is shown once, when it is created. The key lives in the database the command names on
    stderr: it must be the server's (same LUC_DATABASE_URL, or LUC_DATA_DIR).
    """


@keys.command(name="create")
@click.option(
    "--scope", required=True, type=click.Choice(["ingest", "read", "admin"]), help="What it may do."
)
@click.option("--name", required=True, help="Who or what uses it (e.g. gateway-prod).")
def keys_create(scope: str, name: str) -> None:
    """Create a key and print it; the key alone is the last line of output."""
    from service.auth.keys import create_key

    async def work(conn: Connection) -> tuple[Any, str]:
        return await create_key(conn, name, scope)

    key, secret = run_on_database(work)
    click.echo(f"created key {key.id} ({key.name}, scope {key.scope}); it is shown only now:")
    click.echo(secret)


@keys.command(name="list")
def keys_list() -> None:
    """List keys, tab-separated under a header: id, scope, name, prefix, created, status."""
    from service.auth.keys import list_keys

    rows = run_on_database(list_keys)
    click.echo("\t".join(LIST_COLUMNS))
    for key in rows:
        status = f"revoked {instant_text(key.revoked_at)}" if key.revoked_at else "active"
        click.echo(
            f"{key.id}\t{key.scope}\t{cell(key.name)}\t{key.prefix}…\t"
            f"{instant_text(key.created_at)}\t{status}"
        )


class KeyId(click.ParamType[int]):
    """A key's id as `luc keys list` shows it: a positive whole number (a bigint)."""

    name = "key_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value)
        if text.isascii() and text.isdigit() and 1 <= int(text) < 2**63:
            return int(text)
        self.fail(
            f"{value!r} is no key id: give the number `luc keys list` shows first on the "
            "key's line (not its name or its prefix)",
            param,
            ctx,
        )


@keys.command(name="revoke")
@click.argument("key_id", type=KeyId())
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID (see `luc keys list`); it stops working within seconds."""
    from service.auth.keys import revoke_key

    async def work(conn: Connection) -> None:
        await revoke_key(conn, key_id)

    run_on_database(work)
    click.echo(f"revoked key {key_id}")
