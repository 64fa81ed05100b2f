"""``luc customers``: register, list, show and change customers in the server's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from service.cli.database import run_on_database

if TYPE_CHECKING:
    from service.customers.models import Customer
    from service.db import Connection

LIST_COLUMNS = ("id", "name", "plan", "invoicing", "email")
CLEARABLE = ("email", "address", "tax_id", "plan_id", "low_balance_usd")


def echo_struct(struct: Any) -> None:
    """A wire struct as indented JSON: the form REST answers with."""
    import json

    import msgspec

    click.echo(json.dumps(msgspec.to_builtins(struct), indent=2, ensure_ascii=False))


async def _answer(conn: Connection, customer: Customer) -> Any:
    """``customer`` as REST answers it: with its month-to-date figures."""
    from service.api.schemas.customers import customer_out
    from service.rollups.service import month_to_date

    month, totals = await month_to_date(conn, [customer.id])
    return customer_out(customer, month, totals.get(customer.id))


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

    async def work(conn: Connection) -> Any:
        return await _answer(conn, await create_customer(conn, new))

    echo_struct(run_on_database(work))


@customers.command(name="list")
def customers_list() -> None:
    """List customers, tab-separated under a header: id, name, plan, invoicing, email."""
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
        click.echo(f"{c.id}\t{c.name}\t{c.plan_id or '-'}\t{c.invoicing}\t{c.email or '-'}")


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
@click.option("--name", default=None)
@click.option("--email", default=None)
@click.option("--address", default=None)
@click.option("--tax-id", default=None)
@click.option("--plan", "plan_id", default=None, help="Another rate plan: it prices from now on.")
@click.option("--invoicing", type=click.Choice(["per_job", "monthly"]), default=None)
@click.option("--low-balance-usd", default=None)
@click.option("--credit-stop/--no-credit-stop", default=None)
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(CLEARABLE),
    help="Set an optional field back to empty (repeat for several).",
)
def customers_update(customer_id: str, clear: tuple[str, ...], **options: Any) -> None:
    """Change customer CUSTOMER_ID: the options given; the rest stays. Print it as JSON."""
    from service.customers.models import CustomerChanges
    from service.customers.service import parse_amount, update_customer

    low = options.pop("low_balance_usd")
    changes = CustomerChanges(
        **options,
        low_balance_usd=None if low is None else parse_amount("low_balance_usd", low),
        clear=frozenset(clear),
    )

    async def work(conn: Connection) -> Any:
        return await _answer(conn, await update_customer(conn, customer_id, changes))

    echo_struct(run_on_database(work))
