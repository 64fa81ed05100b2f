"""``luc customers``: register, list, show and change customers in the server's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from service.cli.database import run_on_database
from service.cli.options import option_values
from service.cli.tsv import cell

if TYPE_CHECKING:
    from service.customers.credits import CreditGrant, Credits
    from service.customers.models import Customer
    from service.db import Connection

LIST_COLUMNS = ("id", "name", "plan", "invoicing", "email")
CLEARABLE = ("email", "address", "tax_id", "plan_id", "low_balance_usd", "webhook_url")


def echo_struct(struct: Any) -> None:
    """A wire struct as indented JSON: the form REST answers with."""
    import json

    import msgspec

    click.echo(json.dumps(msgspec.to_builtins(struct), indent=2, ensure_ascii=False))


async def _answer(conn: Connection, customer: Customer) -> Any:
    """``customer`` as REST answers it: with its month-to-date figures and its prepaid
    balance."""
    from decimal import Decimal

    from service.api.schemas.customers import customer_out
    from service.customers.credits import balances_of
    from service.rollups.service import month_to_date

    month, totals = await month_to_date(conn, [customer.id])
    balance = (await balances_of(conn, [customer.id])).get(customer.id, Decimal(0))
    return customer_out(customer, month, totals.get(customer.id), balance)


def _checked_target(url: str | None) -> None:
    """A webhook target is checked (LUC_WEBHOOK_SECRET set, the target allowed by
    LUC_WEBHOOK_ALLOWED_HOSTS) as REST checks it."""
    if url is None:
        return
    import asyncio

    from service.budgets.targets import check_credit_alert_target
    from service.settings import get_settings

    asyncio.run(check_credit_alert_target(url, get_settings().budgets))


@click.group()
def customers() -> None:
    """Customers: who is billed, how (per job or monthly), and by which rate plan.

    A customer's id is the customer_id its usage events name. An event may name a customer
    before it is registered: the job is its all the same, and registering it later adds
    the name, address and plan. See `luc plans` for rate plans.
    """


@customers.command(name="create")
@click.argument("customer_id")
@click.option("--name", required=True, help="The name invoices are addressed to.")
@click.option("--email", default=None, help="Billing e-mail address.")
@click.option("--address", default=None, help="Postal address (may span lines).")
@click.option("--tax-id", default=None, help="VAT or tax number.")
@click.option("--plan", "plan_id", default=None, help="Rate plan id (see `luc plans list`).")
@click.option(
    "--invoicing",
    type=click.Choice(["per_job", "monthly"]),
    default="per_job",
    show_default=True,
    help="An invoice per job, or one per UTC month.",
)
@click.option("--low-balance-usd", default=None, help="Warn when prepaid credits fall below.")
@click.option("--credit-stop", is_flag=True, help="Refuse its calls while credits are at zero.")
@click.option("--webhook-url", default=None, help="Where its credit alerts are posted (signed).")
def customers_create(customer_id: str, **options: Any) -> None:
    """Register customer CUSTOMER_ID; print it as JSON."""
    from service.customers.models import NewCustomer
    from service.customers.service import create_customer, parse_amount

    low = options.pop("low_balance_usd")
    new = NewCustomer(
        id=customer_id,
        **options,
        low_balance_usd=None if low is None else parse_amount("low_balance_usd", low),
    )
    _checked_target(new.webhook_url)

    async def work(conn: Connection) -> Any:
        return await _answer(conn, await create_customer(conn, new))

    echo_struct(run_on_database(work))


@customers.command(name="list")
def customers_list() -> None:
    """List customers, tab-separated under a header: id, name, plan, invoicing, email.

    A tab, newline or backslash in a value is written \\t, \\n, \\\\ (as PostgreSQL's COPY)."""
    from service.customers.service import list_customers

    async def work(conn: Connection) -> list[Customer]:
        every: list[Customer] = []
        while page := await list_customers(
            conn, after_id=every[-1].id if every else "", limit=1000
        ):
            every += page
        return every

    every = run_on_database(work)
    click.echo("\t".join(LIST_COLUMNS))
    for c in every:
        click.echo(
            f"{c.id}\t{cell(c.name)}\t{c.plan_id or '-'}\t{c.invoicing}\t{cell(c.email or '-')}"
        )


@customers.command(name="show")
@click.argument("customer_id")
def customers_show(customer_id: str) -> None:
    """Print customer CUSTOMER_ID as JSON, with its month-to-date price, actual cost and
    margin (as GET /v1/customers/{id})."""
    from service.customers.service import get_customer

    async def work(conn: Connection) -> Any:
        return await _answer(conn, await get_customer(conn, customer_id))

    echo_struct(run_on_database(work))


@customers.command(name="update")
@click.argument("customer_id")
@click.option("--name", default=None, help="The name invoices are addressed to.")
@click.option("--email", default=None, help="Billing e-mail address.")
@click.option("--address", default=None, help="Postal address (may span lines).")
@click.option("--tax-id", default=None, help="VAT or tax number.")
@click.option("--plan", "plan_id", default=None, help="Another rate plan: it prices from now on.")
@click.option(
    "--invoicing",
    type=click.Choice(["per_job", "monthly"]),
    default=None,
    help="An invoice per job, or one per UTC month.",
)
@click.option("--low-balance-usd", default=None, help="Warn when prepaid credits fall below (USD).")
@click.option(
    "--credit-stop/--no-credit-stop",
    default=None,
    help="Refuse (or admit again) its calls while credits are at zero.",
)
@click.option("--webhook-url", default=None, help="Where its credit alerts are posted (signed).")
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(CLEARABLE),
    help="Set an optional field back to empty (repeat for several).",
)
def customers_update(customer_id: str, clear: tuple[str, ...], **options: Any) -> None:
    """Change customer CUSTOMER_ID: the options given; the rest stays. Print it as JSON."""
    from service.budgets.credit_alerts import update_customer_deciding_alerts
    from service.customers.models import CustomerChanges
    from service.customers.service import parse_amount

    for field in clear:
        # Both given, the clear won and the value was dropped without a word.
        if options.get(field) is not None:
            flag = "--plan" if field == "plan_id" else "--" + field.replace("_", "-")
            raise click.UsageError(f"--clear {field} and {flag} contradict each other: give one")
    low = options.pop("low_balance_usd")
    changes = CustomerChanges(
        **options,
        low_balance_usd=None if low is None else parse_amount("low_balance_usd", low),
        clear=frozenset(clear),
    )
    _checked_target(changes.webhook_url)

    async def work(conn: Connection) -> Any:
        return await _answer(
            conn, await update_customer_deciding_alerts(conn, customer_id, changes)
        )

    echo_struct(run_on_database(work))


@customers.group(name="credits")
def customers_credits() -> None:
    """Prepaid credits: grant them, show the balance and the grants.

    Credits burn down as the customer's usage is recorded, the earliest expiry first;
    what they do not cover is due on the invoice.
    """


@customers_credits.command(name="grant")
@click.argument("customer_id")
@click.option("--amount-usd", required=True, help="Decimal amount, more than zero.")
@click.option("--expires-at", default=None, help="RFC 3339, in the future; absent: never.")
@click.option("--reference", default=None, help="A purchase order, a contract.")
def credits_grant(
    customer_id: str, amount_usd: str, expires_at: str | None, reference: str | None
) -> None:
    """Grant CUSTOMER_ID prepaid credits; print the grant as JSON (as REST answers)."""
    from datetime import UTC, datetime

    from service.api.schemas.credits import GrantIn, grant_out
    from service.customers.credits import grant_credits

    with option_values({"amount_usd": "--amount-usd", "expires_at": "--expires-at"}):
        new = GrantIn(amount_usd=amount_usd, expires_at=expires_at, reference=reference)
        new_grant = new.new_grant()

    async def work(conn: Connection) -> tuple[CreditGrant, bool]:
        return await grant_credits(conn, customer_id, new_grant, datetime.now(UTC))

    grant, made = run_on_database(work)
    if not made:
        click.echo(f"granted before under reference {reference!r}: nothing granted again", err=True)
    echo_struct(grant_out(grant))


@customers_credits.command(name="show")
@click.argument("customer_id")
def credits_show(customer_id: str) -> None:
    """Print CUSTOMER_ID's prepaid balance and grants as JSON (as REST answers)."""
    from service.api.schemas.credits import credits_out
    from service.customers.credits import credits_of

    async def work(conn: Connection) -> Credits:
        return await credits_of(conn, customer_id)

    echo_struct(credits_out(customer_id, run_on_database(work)))
