"""Customers: register, list, read and change who is billed."""

from __future__ import annotations

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
from service.budgets.targets import check_target
from service.customers.credits import with_balances
from service.customers.service import (
    create_customer,
    get_customer,
    list_customers,
    update_customer,
)
from service.db import on_connection


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
            await check_target(new.webhook_url, luc.settings.budgets.allowed_hosts)
        return customer_out(await on_connection(luc.pool, lambda conn: create_customer(conn, new)))

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
        customers = await on_connection(
            luc.pool, lambda conn: list_customers(conn, after_id=after, limit=size + 1)
        )
        items, next_cursor = page(customers, size, lambda c: c.id)
        balances = await on_connection(luc.pool, lambda conn: with_balances(conn, items))
        return CustomerPage(
            items=[customer_out(c, balance) for c, balance in balances], next_cursor=next_cursor
        )

    @get("/{customer_id:str}", operation_id="getCustomer", summary="One customer")
    async def detail(
        self, luc: NamedDependency[Resources], customer_id: FromPath[str]
    ) -> CustomerOut:
        customer = await on_connection(luc.pool, lambda conn: get_customer(conn, customer_id))
        [(customer, balance)] = await on_connection(
            luc.pool, lambda conn: with_balances(conn, [customer])
        )
        return customer_out(customer, balance)

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
            await check_target(changes.webhook_url, luc.settings.budgets.allowed_hosts)
        customer = await on_connection(
            luc.pool, lambda conn: update_customer(conn, customer_id, changes)
        )
        [(customer, balance)] = await on_connection(
            luc.pool, lambda conn: with_balances(conn, [customer])
        )
        return customer_out(customer, balance)
