"""Customers: register, list, read and change who is billed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from litestar import get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from service.api.deps import LucController, Resources
from service.api.params import Limit, decode_cursor, page, page_size
from service.api.schemas.customers import (
    CustomerIn,
    CustomerOut,
    CustomerPage,
    CustomerPatch,
    customer_out,
)
from service.auth.guard import ADMIN, READ
from service.budgets.credit_alerts import update_customer_deciding_alerts
from service.budgets.targets import check_credit_alert_target
from service.customers.credits import balances_of
from service.customers.models import Customer
from service.customers.service import (
    create_customer,
    get_customer,
    list_customers,
)
from service.db import Connection, on_connection
from service.rollups.models import Totals
from service.rollups.service import month_to_date


async def _answer(conn: Connection, customer: Customer) -> CustomerOut:
    """``customer`` as every answer shows it: with its month-to-date figures and its
    prepaid balance."""
    month, totals = await month_to_date(conn, [customer.id])
    balances = await balances_of(conn, [customer.id])
    return customer_out(
        customer, month, totals.get(customer.id), balances.get(customer.id, Decimal(0))
    )


class CustomersController(LucController):
    path = "/v1/customers"
    tags = ["customers"]
    opt = READ

    @post(
        "/",
        operation_id="createCustomer",
        summary="Register a customer",
        description=(
            "409 when the id is taken. `plan_id` must name an existing rate plan. The id is "
            "the `customer_id` its usage events name; events may name it before it is "
            "registered."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def create(
        self, luc: NamedDependency[Resources], data: JSONBody[CustomerIn]
    ) -> CustomerOut:
        new = data.new_customer()
        if new.webhook_url is not None:
            await check_credit_alert_target(new.webhook_url, luc.settings.budgets)

        async def create(conn: Connection) -> CustomerOut:
            return await _answer(conn, await create_customer(conn, new))

        return await on_connection(luc.pool, create)

    @get(
        "/",
        operation_id="listCustomers",
        summary="List customers",
        description="Customers in id order, a page at a time (`next_cursor`).",
    )
    async def list(
        self,
        luc: NamedDependency[Resources],
        cursor: FromQuery[str | None] = None,
        limit: Limit = None,
    ) -> CustomerPage:
        size = page_size(limit)
        after = decode_cursor(cursor)

        async def read(
            conn: Connection,
        ) -> tuple[list[Customer], date, dict[str, Totals], dict[str, Decimal]]:
            customers = await list_customers(conn, after_id=after, limit=size + 1)
            month, totals = await month_to_date(conn, [c.id for c in customers])
            balances = await balances_of(conn, [c.id for c in customers])
            return customers, month, totals, balances

        customers, month, totals, balances = await on_connection(luc.pool, read)
        items, next_cursor = page(customers, size, lambda c: c.id)
        return CustomerPage(
            items=[
                customer_out(c, month, totals.get(c.id), balances.get(c.id, Decimal(0)))
                for c in items
            ],
            next_cursor=next_cursor,
        )

    @get(
        "/{customer_id:str}",
        operation_id="getCustomer",
        summary="One customer, with its month-to-date price, actual cost and margin",
        description=(
            "`price_usd`, `actual_cost_usd` and `margin_usd` are those of the current UTC "
            "month (`month`), from the customer × month rollup: every entry priced for the "
            "customer (its jobs' events) in that month. `credit_balance_usd`: the prepaid "
            "credits left now (GET /v1/customers/{id}/credits)."
        ),
    )
    async def detail(
        self, luc: NamedDependency[Resources], customer_id: FromPath[str]
    ) -> CustomerOut:
        async def read(conn: Connection) -> CustomerOut:
            return await _answer(conn, await get_customer(conn, customer_id))

        return await on_connection(luc.pool, read)

    @patch(
        "/{customer_id:str}",
        operation_id="updateCustomer",
        summary="Change a customer: name, contact, plan, invoicing, credit settings",
        description="Absent fields stay; null clears an optional one. The id never changes.",
        opt=ADMIN,
    )
    async def update(
        self,
        luc: NamedDependency[Resources],
        customer_id: FromPath[str],
        data: JSONBody[CustomerPatch],
    ) -> CustomerOut:
        changes = data.changes()
        if changes.webhook_url is not None:
            await check_credit_alert_target(changes.webhook_url, luc.settings.budgets)

        async def update(conn: Connection) -> CustomerOut:
            return await _answer(
                conn, await update_customer_deciding_alerts(conn, customer_id, changes)
            )

        return await on_connection(luc.pool, update)
