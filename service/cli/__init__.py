"""The ``luc`` command: serve, migrate, demo, catalog."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from service.demo import demo
from service.errors import LucError
from service.settings import get_settings

if TYPE_CHECKING:
    from service.db import Connection

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """LUC, the LLM usage cost ledger.

    LUC meters every LLM call the AIMS gateway makes, prices it against a versioned model
    catalog and keeps the money in an append-only ledger, rolled up per job and agent.

    Configuration comes from LUC_* environment variables; with LUC_DATABASE_URL unset,
    LUC runs its own embedded PostgreSQL in LUC_DATA_DIR.
    """


@main.command()
@click.option("--host", default=None, help="Address to bind (default LUC_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default LUC_PORT or 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API (migrates the database and loads the AIMS catalog first)."""
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    # uvicorn re-raises SIGTERM once it has shut down gracefully; with the default handler
    # the process would die without running atexit, leaving the embedded PostgreSQL up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # A 5,000-event batch allocates hundreds of thousands of short-lived objects; with the
    # default thresholds the collector ran dozens of times per batch (a fifth of the CPU,
    # measured with py-spy). Start-up objects are frozen out of every collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def migrate(revision: str) -> None:
    """Apply database migrations (start-up does this too) and load the AIMS catalog."""
    from service.catalog.service import seed_catalog
    from service.db import create_pool, migrate_sync, resolve_database_url

    settings = get_settings()

    async def run() -> None:
        url = await resolve_database_url(settings.database)
        await asyncio.to_thread(migrate_sync, url, revision)
        pool = await create_pool(url, settings.database)
        try:
            async with pool.acquire() as conn:
                seeded = await seed_catalog(conn)
        finally:
            await pool.close()
        click.echo(
            f"schema at {revision}; AIMS catalog {'loaded' if seeded else 'already present'}"
        )

    asyncio.run(run())


main.add_command(demo)


def _run_on_database(work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a connection to LUC's database (migrated, catalog loaded)."""
    from service.catalog.service import seed_catalog
    from service.db import connect, migrate, resolve_database_url

    settings = get_settings()

    async def run() -> T:
        url = await resolve_database_url(settings.database)
        await migrate(url)
        conn = await connect(url)
        try:
            await seed_catalog(conn)
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def _parse_time(value: str | None, name: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not RFC 3339", param_hint=name) from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no UTC offset (add Z)", param_hint=name)
    return parsed


@main.group()
def catalog() -> None:
    """Model price catalog: import and sync from OpenRouter, re-rate after a correction.

    A catalog version is an immutable snapshot of prices with an effective_from time;
    each event is priced by the version in force when it occurred.
    """


def _import_payload(
    payload: Any, effective_from: datetime, label: str | None, dry_run: bool
) -> None:
    from service.catalog.importer import plan_import
    from service.catalog.service import load_catalog
    from service.pricing.diff import describe
    from service.rerating import create_version_and_price_unpriced

    async def work(conn: Connection) -> None:
        plan = plan_import(
            payload, await load_catalog(conn), effective_from=effective_from, label=label
        )
        for skipped in plan.skipped:
            click.echo(f"skipped {skipped.model_id}: {skipped.reason}")
        click.echo(f"{plan.imported} models priced by the source, {len(plan.skipped)} skipped")
        if plan.version is None:
            click.echo("no change: the newest catalog version already has these prices")
            return
        for line in describe(plan.diff):
            click.echo(line)
        if dry_run:
            click.echo("dry run: no version created")
            return
        version_id, summary = await create_version_and_price_unpriced(conn, plan.version)
        click.echo(
            f"created catalog version {version_id} effective {effective_from.isoformat()}; "
            f"{summary.events_changed} unpriced events are now priced"
        )

    try:
        _run_on_database(work)
    except LucError as exc:
        raise click.ClickException(exc.message) from exc


@catalog.command(name="import")
@click.argument("file", type=click.File("rb"))
@click.option("--effective-from", default=None, help="RFC 3339 time the prices apply from (now).")
@click.option("--label", default=None, help="A name for the new version.")
@click.option("--dry-run", is_flag=True, help="Show the diff without creating a version.")
def import_(file: Any, effective_from: str | None, label: str | None, dry_run: bool) -> None:
    """Import FILE, a saved OpenRouter GET /api/v1/models answer ('-' for stdin).

    Per-token USD prices become per-1M prices exactly; dynamic ('-1') or missing prices
    are skipped with a reason. A version is created only when something changed.
    """
    import json

    try:
        payload = json.loads(file.read())
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from exc
    _import_payload(payload, _parse_time(effective_from, "--effective-from"), label, dry_run)


@catalog.command()
@click.option("--effective-from", default=None, help="RFC 3339 time the prices apply from (now).")
@click.option("--label", default=None, help="A name for the new version.")
@click.option("--dry-run", is_flag=True, help="Show the diff without creating a version.")
def sync(effective_from: str | None, label: str | None, dry_run: bool) -> None:
    """Fetch OpenRouter's model list (LUC_OPENROUTER_BASE_URL) and import it."""
    import httpx

    from service.catalog.importer import fetch_openrouter_models

    settings = get_settings().openrouter

    async def fetch() -> Any:
        async with httpx.AsyncClient(timeout=settings.timeout_seconds) as client:
            return await fetch_openrouter_models(client, settings.base_url)

    try:
        payload = asyncio.run(fetch())
    except LucError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"fetched {settings.base_url.rstrip('/')}/models")
    _import_payload(payload, _parse_time(effective_from, "--effective-from"), label, dry_run)


@catalog.command()
@click.option(
    "--since", required=True, help="RFC 3339: re-price events that occurred from here on."
)
@click.option("--dry-run", is_flag=True, help="Report the change per job and agent; write nothing.")
def rerate(since: str, dry_run: bool) -> None:
    """Re-price events since a time with the catalog as it now stands.

    Use after creating a version that corrects prices retroactively. Appends reversal and
    re-booking adjustment entries (the ledger is never edited); a second run appends nothing.
    """
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from service.rerating import rerate_since

    start = _parse_time(since, "--since")
    console = Console()

    async def work(conn: Connection) -> Any:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("re-rating", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await rerate_since(conn, start, dry_run=dry_run, progress=advance)

    summary = _run_on_database(work)
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{summary.events_examined} events since {start.isoformat()}; {verb} "
        f"{summary.events_changed}, total delta {summary.delta_usd:f} USD; "
        f"{summary.entries_appended} entries appended"
    )
    for title, buckets in (("job", summary.jobs), ("agent", summary.agents)):
        if not buckets:
            continue
        table = Table(title=f"change per {title}")
        table.add_column(title)
        table.add_column("events", justify="right")
        table.add_column("delta USD", justify="right")
        for key, delta in sorted(buckets.items()):
            # :f — money never in exponent form (str gives 1E-7 for a tiny delta).
            table.add_row(key, str(delta.events), f"{delta.delta_usd:f}")
        console.print(table)


@main.group()
def keys() -> None:
    """API keys: ingest (the gateway), read (finance), admin (catalog, budgets, keys).

    Clients send the key as 'Authorization: Bearer <key>'. Only a hash is stored: a key
    is shown once, when it is created.
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

    try:
        key, secret = _run_on_database(work)
    except LucError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"created key {key.id} ({key.name}, scope {key.scope}); it is shown only now:")
    click.echo(secret)


@keys.command(name="list")
def keys_list() -> None:
    """List keys: id, scope, name, prefix, created, revoked."""
    from service.auth.keys import list_keys

    for key in _run_on_database(list_keys):
        revoked = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        click.echo(
            f"{key.id}\t{key.scope}\t{key.name}\t{key.prefix}…\t"
            f"{key.created_at.isoformat()}\t{revoked}"
        )


@keys.command(name="revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID (see `luc keys list`); it stops working within seconds."""
    from service.auth.keys import revoke_key

    async def work(conn: Connection) -> None:
        await revoke_key(conn, key_id)

    try:
        _run_on_database(work)
    except LucError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"revoked key {key_id}")


@main.group()
def invoice() -> None:
    """Per-job invoices: preview, issue, show (JSON, CSV, HTML), verify a digest.

    An issued invoice never changes: usage recorded after it goes on the job's next
    (follow-up) invoice. Lines keep full precision; the total is rounded once to cents,
    half up.
    """


def _echo_json(document: dict[str, Any]) -> None:
    import json

    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@invoice.command(name="preview")
@click.argument("job_id")
def invoice_preview(job_id: str) -> None:
    """Print, as JSON, what issuing an invoice for JOB_ID would issue now."""
    from service.invoices.render import invoice_document
    from service.invoices.service import preview_invoice

    async def work(conn: Connection) -> dict[str, Any]:
        draft = await preview_invoice(conn, job_id)
        document = invoice_document(draft, None, None)
        return {**document, "status": draft.job.status, "earlier_invoices": draft.earlier}

    try:
        _echo_json(_run_on_database(work))
    except LucError as exc:
        raise click.ClickException(exc.message) from exc


@invoice.command(name="issue")
@click.argument("job_id")
def invoice_issue(job_id: str) -> None:
    """Issue JOB_ID's next invoice; print it as JSON (a summary goes to stderr)."""
    from service.invoices.models import Invoice
    from service.invoices.service import issue_invoice

    async def work(conn: Connection) -> Invoice:
        return await issue_invoice(conn, job_id)

    try:
        issued = _run_on_database(work)
    except LucError as exc:
        raise click.ClickException(exc.message) from exc
    _echo_json(issued.with_digest())
    click.echo(
        f"issued {issued.number} for job {job_id}: total {issued.document['total_usd']} USD, "
        f"{issued.document['covered_entries']} ledger entries",
        err=True,
    )


@invoice.command(name="show")
@click.argument("number")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "html"]),
    default="json",
    show_default=True,
    help="JSON (with digest), CSV, or a printable HTML page.",
)
def invoice_show(number: str, fmt: str) -> None:
    """Print issued invoice NUMBER (e.g. LUC-2026-000042)."""
    from service.invoices.models import Invoice
    from service.invoices.render import to_csv, to_html
    from service.invoices.service import get_invoice

    async def work(conn: Connection) -> Invoice:
        return await get_invoice(conn, number)

    try:
        stored = _run_on_database(work)
    except LucError as exc:
        raise click.ClickException(exc.message) from exc
    if fmt == "csv":
        click.echo(to_csv(stored.document), nl=False)
    elif fmt == "html":
        click.echo(to_html(stored.document, stored.digest), nl=False)
    else:
        _echo_json(stored.with_digest())


@invoice.command(name="verify")
@click.argument("source")
@click.option(
    "--against-stored",
    is_flag=True,
    help="For a file: also require the stored invoice of that number to have its digest.",
)
def invoice_verify(source: str, against_stored: bool) -> None:
    """Check an invoice against its SHA-256 digest; exit 1 on any mismatch.

    SOURCE is an exported JSON file ('-' for stdin) or an invoice number. A file is checked
    on its own (digest of its canonical JSON, lines against subtotal and total); a number is
    checked in the database (stored text, digest, columns and covered entries).
    """
    import json
    from pathlib import Path

    from service.invoices.models import Verification
    from service.invoices.service import get_invoice, verify_document, verify_stored

    if source == "-" or Path(source).is_file():
        raw = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise click.ClickException(f"{source} is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise click.ClickException(f"{source} does not hold an invoice object")
        result = verify_document(document)
        if against_stored and result.number:
            number = result.number

            async def compare(conn: Connection) -> list[str]:
                stored = await get_invoice(conn, number)
                if stored.digest != document.get("digest"):
                    return [f"the stored invoice {number} has digest {stored.digest}"]
                return []

            try:
                extra = _run_on_database(compare)
            except LucError as exc:
                extra = [exc.message]
            result = Verification(result.number, result.ok and not extra, result.problems + extra)
    else:

        async def work(conn: Connection) -> Verification:
            return await verify_stored(conn, source)

        try:
            result = _run_on_database(work)
        except LucError as exc:
            raise click.ClickException(exc.message) from exc
    name = result.number or source
    if not result.ok:
        for problem in result.problems:
            click.echo(f"  {problem}", err=True)
        click.echo(f"FAILED: invoice {name} does not verify", err=True)
        raise SystemExit(1)
    click.echo(f"OK: invoice {name} matches its digest")
