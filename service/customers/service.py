"""Creating, reading and changing customers. The caller owns the transaction.

Every rule a customer obeys is checked here, whoever asks (REST or ``luc customers``), with
a message that names the field: ids as an event's ``customer_id`` takes them (so every id
an event names can be registered), a plan that exists, money in its one wire form.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg

from service.customers import queries
from service.customers.models import (
    CLEARABLE_FIELDS,
    INVOICING,
    Customer,
    CustomerChanges,
    NewCustomer,
)
from service.db import Connection, from_row
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.wire import WireValueError, parse_money

MAX_ID_CHARS = 128
"""As an event's ``customer_id`` (``ingest.models.CustomerId``)."""
MAX_NAME_CHARS = 200
MAX_EMAIL_CHARS = 254
MAX_ADDRESS_CHARS = 1000
MAX_TAX_ID_CHARS = 64
MAX_URL_CHARS = 2000

# One @, something on each side, a dot in the domain, no spaces: the shape of an address
# that could be delivered to. Whether it is delivered is the mail system's to say.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def check_text(field: str, value: str, longest: int) -> str:
    """``value`` as a text field holds it: 1 to ``longest`` characters, no NUL (PostgreSQL
    text cannot hold one)."""
    if not 1 <= len(value) <= longest:
        raise InvalidRequestError(f"{field}: must be 1 to {longest} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidRequestError(f"{field}: must not contain the NUL character (U+0000)")
    return value


def check_email(email: str) -> str:
    check_text("email", email, MAX_EMAIL_CHARS)
    if not _EMAIL.fullmatch(email):
        raise InvalidRequestError(
            f"email: {email!r} is not an e-mail address (expected name@domain.tld)"
        )
    return email


def parse_amount(field: str, text: str) -> Decimal:
    """An amount given as text (the one money form, ``service.wire``); never negative."""
    try:
        return parse_money(field, text)
    except WireValueError as exc:
        raise InvalidRequestError(str(exc)) from None


async def check_plan_exists(conn: Connection, plan_id: str, field: str = "plan_id") -> None:
    if not await conn.fetchval(queries.PLAN_EXISTS, plan_id):
        raise InvalidRequestError(
            f"{field}: plan {plan_id!r} does not exist (create it with POST /v1/plans, or "
            "`luc plans create`)"
        )


async def _check(conn: Connection, customer: NewCustomer) -> None:
    check_text("name", customer.name, MAX_NAME_CHARS)
    if customer.email is not None:
        check_email(customer.email)
    if customer.address is not None:
        check_text("address", customer.address, MAX_ADDRESS_CHARS)
    if customer.tax_id is not None:
        check_text("tax_id", customer.tax_id, MAX_TAX_ID_CHARS)
    if customer.invoicing not in INVOICING:
        raise InvalidRequestError(
            f"invoicing: {customer.invoicing!r} is not one of {', '.join(INVOICING)}"
        )
    if customer.plan_id is not None:
        await check_plan_exists(conn, customer.plan_id)
    if customer.webhook_url is not None:
        # The allow-list is checked where the URL enters (REST, ``luc customers``) and
        # again at each delivery; here, only that it is a URL a webhook can be posted to.
        check_text("webhook_url", customer.webhook_url, MAX_URL_CHARS)
        if not customer.webhook_url.startswith(("https://", "http://")):
            raise InvalidRequestError(
                f"webhook_url: {customer.webhook_url!r} is not an http(s) URL"
            )


def _customer(row: asyncpg.Record) -> Customer:
    return from_row(Customer, row)


def _settable(customer: NewCustomer) -> tuple[Any, ...]:
    """Its columns after the id, in the order ``INSERT_CUSTOMER`` and ``UPDATE_CUSTOMER``
    take them ($2 to $10)."""
    return (
        customer.name,
        customer.email,
        customer.address,
        customer.tax_id,
        customer.plan_id,
        customer.invoicing,
        customer.low_balance_usd,
        customer.credit_stop,
        customer.webhook_url,
    )


async def create_customer(conn: Connection, new: NewCustomer) -> Customer:
    """Register a customer; 409 when the id is taken, 422 naming the field at fault."""
    check_text("id", new.id, MAX_ID_CHARS)
    await _check(conn, new)
    try:
        async with conn.transaction():  # a savepoint inside a caller's transaction
            row = await conn.fetchrow(queries.INSERT_CUSTOMER, new.id, *_settable(new))
    except asyncpg.UniqueViolationError:
        raise ConflictError(f"customer {new.id!r} already exists") from None
    except asyncpg.ForeignKeyViolationError:
        # The plan was checked; nothing removes one. Kept so a race could never be a 500.
        raise InvalidRequestError(f"plan_id: plan {new.plan_id!r} does not exist") from None
    assert row is not None
    return _customer(row)


async def get_customer(conn: Connection, customer_id: str) -> Customer:
    row = await conn.fetchrow(queries.SELECT_CUSTOMER, customer_id)
    if row is None:
        raise NotFoundError(f"customer {customer_id!r} does not exist")
    return _customer(row)


async def customer_exists(conn: Connection, customer_id: str) -> bool:
    return bool(await conn.fetchval(queries.CUSTOMER_EXISTS, customer_id))


async def list_customers(conn: Connection, *, after_id: str, limit: int) -> list[Customer]:
    """Customers in id order after ``after_id`` (the empty string: from the first)."""
    return [_customer(r) for r in await conn.fetch(queries.SELECT_CUSTOMERS, after_id, limit)]


async def update_customer(conn: Connection, customer_id: str, changes: CustomerChanges) -> Customer:
    """Apply ``changes``; fields it does not name stay as they are. A plan change prices the
    customer's usage from now on; past entries follow through re-pricing."""
    unknown = changes.clear - set(CLEARABLE_FIELDS)
    if unknown:
        raise InvalidRequestError(
            f"{', '.join(sorted(unknown))}: cannot be cleared (only "
            f"{', '.join(CLEARABLE_FIELDS)} can)"
        )
    async with conn.transaction():
        row = await conn.fetchrow(queries.LOCK_CUSTOMER, customer_id)
        if row is None:
            raise NotFoundError(f"customer {customer_id!r} does not exist")
        current = _customer(row)
        given: dict[str, Any] = {
            name: getattr(changes, name)
            for name in (
                "name",
                "email",
                "address",
                "tax_id",
                "plan_id",
                "invoicing",
                "low_balance_usd",
                "credit_stop",
                "webhook_url",
            )
            if getattr(changes, name) is not None
        }
        given |= dict.fromkeys(changes.clear)
        new = replace(current, **given)
        await _check(conn, new)
        row = await conn.fetchrow(queries.UPDATE_CUSTOMER, customer_id, *_settable(new))
    assert row is not None
    return _customer(row)
