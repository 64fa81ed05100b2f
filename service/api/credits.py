"""A customer's prepaid credits: grant them, read the balance and the grants."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from service.api.deps import LucController, Resources
from service.api.schemas.common import ErrorBody
from service.api.schemas.credits import CreditsOut, GrantIn, GrantOut, credits_out, grant_out
from service.auth.guard import ADMIN, READ
from service.customers.credits import credits_of, grant_credits
from service.db import on_connection


class CreditsController(LucController):
    path = "/v1/customers/{customer_id:str}/credits"
    tags = ["customers"]
    opt = READ

    @post(
        "/",
        operation_id="grantCredits",
        summary="Grant a customer prepaid credits",
        description=(
            "`amount_usd` more than zero; `expires_at` (optional) in the future, after which "
            "what is left of the grant stops counting. Credits burn down as the customer's "
            "usage is recorded, the earliest expiry first. A grant re-arms the customer's "
            "credit alerts whose condition it clears. 404 for an unknown customer. "
            "`reference` (a purchase order, a payment) names one grant of the customer: the "
            "same grant sent again under it answers 200 with the first one, granted once (a "
            "retry after a lost answer); another grant under it is a 409."
        ),
        status_code=201,
        opt=ADMIN,
        responses={
            200: ResponseSpec(
                GrantOut,
                description="The same grant, granted before under "
                "its reference: nothing granted again",
            ),
            409: ResponseSpec(ErrorBody, description="The reference names another grant"),
        },
    )
    async def grant(
        self, luc: NamedDependency[Resources], customer_id: FromPath[str], data: JSONBody[GrantIn]
    ) -> Response[GrantOut]:
        new = data.new_grant()
        grant, made = await on_connection(
            luc.pool, lambda conn: grant_credits(conn, customer_id, new, datetime.now(UTC))
        )
        return Response(grant_out(grant), status_code=201 if made else 200)

    @get(
        "/",
        operation_id="getCredits",
        summary="A customer's prepaid balance and grants",
        description=(
            "`balance_usd`: what the grants that have not expired hold now. `grants`: every "
            "grant, oldest first, with what remains of it."
        ),
    )
    async def show(self, luc: NamedDependency[Resources], customer_id: FromPath[str]) -> CreditsOut:
        credits = await on_connection(luc.pool, lambda conn: credits_of(conn, customer_id))
        return credits_out(customer_id, credits)
