"""``luc plans``: create rate plans, add versions, list and show them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from service.cli.catalog import (
    parse_since,
    parse_time,
    print_changes,
    progress_bar,
    report_console,
)
from service.cli.customers import echo_struct
from service.cli.database import run_on_database
from service.cli.tsv import cell
from service.wire import instant_text, money_text

if TYPE_CHECKING:
    from service.customers.models import NewPlanVersion
    from service.db import Connection
    from service.pricing.plans import PlanVersion, RatePlan

LIST_COLUMNS = ("id", "name", "versions", "in force", "basis", "markup")


@click.group()
def plans() -> None:
    """Rate plans: what a customer pays for its usage.

    A plan has versions, each effective from a time and never changed afterwards (a
    correction is a new version); an event is priced by the version in force when it
    occurred. A version charges its own price for the models it lists, and for the others
    the basis cost (catalog: the list price; actual: the provider's reported cost) times
    (1 + markup), plus a fixed amount per request.
    """


def _version_options(command: Any) -> Any:
    options = [
        click.option("--effective-from", default=None, help="RFC 3339 time it prices from (now)."),
        click.option(
            "--basis",
            type=click.Choice(["catalog", "actual"]),
            default="catalog",
            show_default=True,
            help="What the markup applies to: the catalog cost or the provider's cost.",
        ),
        click.option(
            "--markup", required=True, help="Decimal fraction of the basis: 0.25 adds 25 %."
        ),
        click.option("--per-request-usd", default=None, help="USD added to every request."),
        click.option(
            "--minimum-monthly-usd", default=None, help="Least a monthly invoice comes to."
        ),
        click.option(
            "--models",
            type=click.File("rb"),
            default=None,
            help="JSON file ('-' for stdin) of the plan's own prices: "
            '{"model id or alias": {"input": "2.40", "output": "12.00", ...}}.',
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _new_version(options: dict[str, Any]) -> NewPlanVersion:
    """The version the options describe, checked as ``POST /v1/plans`` checks it."""
    import json

    import msgspec

    from service.api.schemas.plans import PlanVersionIn

    models: Any = {}
    if options["models"] is not None:
        file = options["models"]
        try:
            models = json.loads(file.read())
        except ValueError as exc:
            raise click.ClickException(f"{file.name} is not JSON: {exc}") from exc
    written = options["effective_from"] or datetime.now(UTC).isoformat()
    parse_time(written, "--effective-from")  # an offset is required, as over REST
    fields = {
        "effective_from": written,
        "basis": options["basis"],
        "markup": options["markup"],
        "per_request_usd": options["per_request_usd"],
        "minimum_monthly_usd": options["minimum_monthly_usd"],
        "models": models,
    }
    try:
        version = msgspec.convert(fields, PlanVersionIn)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"--models: {exc}") from exc
    return version.new_version()


def _echo_plan(plan: RatePlan) -> None:
    from service.api.schemas.plans import plan_out

    echo_struct(plan_out(plan))


@plans.command(name="create")
@click.argument("plan_id")
@click.option("--name", required=True, help="The plan's name.")
@_version_options
def plans_create(plan_id: str, name: str, **options: Any) -> None:
    """Create rate plan PLAN_ID with its first version; print it as JSON."""
    from service.catalog.service import load_catalog
    from service.customers.plans import create_plan

    first = _new_version(options)

    async def work(conn: Connection) -> RatePlan:
        return await create_plan(conn, plan_id, name, first, await load_catalog(conn))

    _echo_plan(run_on_database(work))


@plans.command(name="add-version")
@click.argument("plan_id")
@_version_options
def plans_add_version(plan_id: str, **options: Any) -> None:
    """Add a version to rate plan PLAN_ID; print the version as JSON."""
    from service.api.schemas.plans import plan_version_out
    from service.catalog.service import load_catalog
    from service.customers.plans import add_plan_version

    version = _new_version(options)

    async def work(conn: Connection) -> PlanVersion:
        return await add_plan_version(conn, plan_id, version, await load_catalog(conn))

    echo_struct(plan_version_out(run_on_database(work)))


@plans.command(name="list")
def plans_list() -> None:
    """List plans, tab-separated: id, name, versions, the version in force now, its basis
    and markup.

    A tab, newline or backslash in a name is written \\t, \\n, \\\\ (as PostgreSQL's COPY)."""
    from service.customers.plans import load_plans

    every = run_on_database(load_plans)
    now = datetime.now(UTC)
    click.echo("\t".join(LIST_COLUMNS))
    for plan_id, plan in sorted(every.items()):
        current = plan.version_at(now)
        in_force = (
            "-\t-\t-"
            if current is None
            else f"{current.id}\t{current.basis}\t{money_text(current.markup)}"
        )
        click.echo(f"{plan_id}\t{cell(plan.name)}\t{len(plan.versions)}\t{in_force}")


@plans.command(name="show")
@click.argument("plan_id")
def plans_show(plan_id: str) -> None:
    """Print rate plan PLAN_ID with every version as JSON."""
    from service.customers.plans import get_plan

    async def work(conn: Connection) -> RatePlan:
        return await get_plan(conn, plan_id)

    _echo_plan(run_on_database(work))


@plans.command(name="reprice")
@click.argument("plan_id")
@click.option(
    "--since", required=True, help="RFC 3339: re-price events that occurred from here on."
)
@click.option(
    "--dry-run", is_flag=True, help="Report the change per customer and job; write nothing."
)
def plans_reprice(plan_id: str, since: str, dry_run: bool) -> None:
    """Re-price past events of PLAN_ID's customers with the plans as they now stand.

    Use after adding a version effective in the past, or changing a customer's plan.
    Appends adjustment entries carrying the change of price (the cost never moves; the
    ledger is never edited); a second run appends nothing.
    """

    from service.customers.plans import get_plan, servers_default_plan
    from service.recording.repricing import RepriceSummary, reprice_plan
    from service.settings import get_settings
    from service.wire import money_text

    start = parse_since(since)
    console = report_console()

    async def work(conn: Connection) -> RepriceSummary:
        await get_plan(conn, plan_id)  # a plan that does not exist: said before any work
        default_plan = await servers_default_plan(conn, get_settings().billing.default_plan)
        with progress_bar("re-pricing") as advance:
            return await reprice_plan(
                conn,
                plan_id,
                start,
                default_plan=default_plan,
                dry_run=dry_run,
                progress=advance,
            )

    summary = run_on_database(work)
    verb = "would change" if dry_run else "changed"
    # LUC's one money form (as REST answers): never an exponent, no trailing zeros.
    console.print(
        f"{summary.events_examined} events of plan {plan_id} since {instant_text(start)}; "
        f"{verb} {summary.events_changed}, price delta {money_text(summary.price_delta_usd)} "
        f"USD; {summary.entries_appended} entries appended"
    )
    print_changes(
        console,
        (("customer", summary.customers), ("job", summary.jobs)),
        (("price delta USD", lambda d: d.price_delta_usd),),
    )
