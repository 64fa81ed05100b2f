"""``luc catalog``: import and sync model prices from OpenRouter, re-rate after a correction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

from service.cli.database import run_on_database
from service.errors import UpstreamError
from service.settings import get_settings
from service.wire import (
    WireValueError,
    instant_text,
    money_text,
    parse_instant,
    storable_instant_problem,
)

if TYPE_CHECKING:
    from rich.console import Console

    from service.db import Connection


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient bar for long ledger work (re-rating, re-pricing), on stderr when it is a
    terminal (nothing otherwise): yields the ``progress(done, total)`` callback that work
    reports through. Not on stdout's console: with the report redirected to a file, the
    bar showed nowhere."""
    from rich.console import Console
    from rich.progress import Progress

    bar_console = Console(stderr=True)
    with Progress(
        console=bar_console, transient=True, redirect_stdout=False, redirect_stderr=False
    ) as progress:
        task = progress.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def report_console() -> Console:
    """Where re-rating and re-pricing print their report: stdout, wrapped to the terminal
    when it is one; written to a file or a pipe, a line stays one line (rich would wrap at
    80 columns and split a money amount across two lines of a log)."""
    import sys

    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(soft_wrap=True, width=_UNWRAPPED_WIDTH)


_UNWRAPPED_WIDTH = 10_000
"""Wide enough that no report line or table row is ever folded."""


def print_changes(
    console: Console,
    groupings: Sequence[tuple[str, Mapping[Any, Any]]],
    columns: Sequence[tuple[str, Callable[[Any], Decimal]]],
) -> None:
    """What re-rating or re-pricing changed: a table per grouping (``change per job`` …),
    each key's events and its money ``columns`` in LUC's money form (``wire.money_text``).
    A key that is None (a job without a customer) reads ``(no customer)`` and comes first."""
    from rich.table import Table

    for title, buckets in groupings:
        if not buckets:
            continue
        table = Table(title=f"change per {title}")
        table.add_column(title)
        table.add_column("events", justify="right")
        for heading, _ in columns:
            table.add_column(heading, justify="right")
        for key, delta in sorted(buckets.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")):
            table.add_row(
                key or f"(no {title})",
                str(delta.events),
                *(money_text(amount(delta)) for _, amount in columns),
            )
        console.print(table)


def parse_time(value: str | None, name: str) -> datetime:
    """An RFC 3339 option value (now when absent); one without an offset is refused."""
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_instant(name, value)
    except WireValueError as exc:
        raise click.BadParameter(exc.reason, param_hint=name) from None


def parse_since(value: str) -> datetime:
    """``--since`` of a re-rating or re-pricing: an instant, and not one of the two that
    PostgreSQL's binary protocol reads as infinities (refused as over REST)."""
    since = parse_time(value, "--since")
    if problem := storable_instant_problem(since):
        raise click.BadParameter(problem, param_hint="--since")
    return since


@click.group()
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
    from service.customers.plans import servers_default_plan
    from service.pricing.diff import describe
    from service.recording.rerating import create_version_and_price_unpriced

    async def work(conn: Connection) -> None:
        plan = plan_import(
            payload, await load_catalog(conn), effective_from=effective_from, label=label
        )
        for skipped in plan.skipped:
            click.echo(f"skipped {skipped.model_id}: {skipped.reason}")
        for override in plan.skipped_overrides:
            click.echo(
                f"skipped {override.model_id} pricing.overrides[{override.index}]: "
                f"{override.reason}; the model is imported without it"
            )
        click.echo(f"{plan.imported} models priced by the source, {len(plan.skipped)} skipped")
        at = instant_text(effective_from)
        base = (
            f"catalog version {plan.base.id}, in force at {at},"
            if plan.base is not None
            else f"no catalog version is in force at {at}:"
        )
        for later in plan.later:
            click.echo(
                f"note: catalog version {later.id} takes effect later, at "
                f"{instant_text(later.effective_from)}, and keeps its own prices"
            )
        if plan.version is None:
            click.echo(f"no change: {base} already has these prices")
            return
        click.echo(f"changes to {base}" if plan.base is not None else base)
        for line in describe(plan.diff):
            click.echo(line)
        if dry_run:
            click.echo("dry run: no version created")
            return
        default_plan = await servers_default_plan(conn, get_settings().billing.default_plan)
        version_id, summary = await create_version_and_price_unpriced(
            conn, plan.version, default_plan=default_plan
        )
        click.echo(
            f"created catalog version {version_id} effective {instant_text(effective_from)}; "
            f"{summary.events_changed} unpriced events are now priced"
        )

    run_on_database(work)


@catalog.command(name="import")
@click.argument("file", type=click.File("rb"))
@click.option("--effective-from", default=None, help="RFC 3339 time the prices apply from (now).")
@click.option("--label", default=None, help="A name for the new version.")
@click.option("--dry-run", is_flag=True, help="Show the diff without creating a version.")
def import_(file: Any, effective_from: str | None, label: str | None, dry_run: bool) -> None:
    """Import FILE, a saved OpenRouter GET /api/v1/models answer ('-' for stdin).

    Per-token USD prices become per-1M prices exactly; dynamic ('-1') or missing prices
    are skipped with a reason. Overrides conditioned only on min_prompt_tokens become
    long-context prices; others (time windows) are skipped with a reason. A version is
    created only when something changed.
    """
    import json

    try:
        payload = json.loads(file.read())
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from exc
    _import_payload(payload, parse_time(effective_from, "--effective-from"), label, dry_run)


@catalog.command()
@click.option("--effective-from", default=None, help="RFC 3339 time the prices apply from (now).")
@click.option("--label", default=None, help="A name for the new version.")
@click.option("--dry-run", is_flag=True, help="Show the diff without creating a version.")
def sync(effective_from: str | None, label: str | None, dry_run: bool) -> None:
    """Fetch OpenRouter's model list (LUC_OPENROUTER_BASE_URL) and import it.

    Without access to OpenRouter, save the list where there is (GET /api/v1/models) and
    use `luc catalog import FILE`.
    """
    import httpx

    from service.catalog.importer import fetch_openrouter_models

    settings = get_settings().openrouter

    async def fetch() -> Any:
        async with httpx.AsyncClient(timeout=settings.timeout_seconds) as client:
            return await fetch_openrouter_models(
                client, settings.base_url, settings.timeout_seconds
            )

    try:
        payload = asyncio.run(fetch())
    except UpstreamError as exc:
        models = f"{settings.base_url.rstrip('/')}/models"
        raise UpstreamError(
            f"{exc.message}; without access to OpenRouter from here, save {models} "
            "where there is (curl -o models.json …) and run `luc catalog import models.json`"
        ) from exc
    click.echo(f"fetched {settings.base_url.rstrip('/')}/models")
    _import_payload(payload, parse_time(effective_from, "--effective-from"), label, dry_run)


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

    from service.customers.plans import servers_default_plan
    from service.recording.rerating import rerate_since

    start = parse_since(since)
    console = report_console()

    async def work(conn: Connection) -> Any:
        default_plan = await servers_default_plan(conn, get_settings().billing.default_plan)
        with progress_bar("re-rating") as advance:
            return await rerate_since(
                conn,
                start,
                default_plan=default_plan,
                dry_run=dry_run,
                progress=advance,
            )

    summary = run_on_database(work)
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{summary.events_examined} events since {instant_text(start)}; {verb} "
        f"{summary.events_changed}, total delta {money_text(summary.delta_usd)} USD; "
        f"{summary.entries_appended} entries appended; "
        f"actual cost delta {money_text(summary.actual_delta_usd)} USD; "
        f"price delta {money_text(summary.price_delta_usd)} USD"
        + (
            f"; {summary.events_now_unpriced} events now unpriced (the deltas take their cost "
            "off: it is unknown now, not saved)"
            if summary.events_now_unpriced
            else ""
        )
        + (f"; {summary.events_now_priced} events now priced" if summary.events_now_priced else "")
    )
    print_changes(
        console,
        (("job", summary.jobs), ("agent", summary.agents)),
        (
            ("delta USD", lambda d: d.delta_usd),
            ("actual delta USD", lambda d: d.actual_delta_usd),
            ("price delta USD", lambda d: d.price_delta_usd),
        ),
    )
