"""Prepaid credits: a grant as given, a grant as kept, a customer's balance."""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.api.schemas.common import body_instant, wire_struct
from service.customers.credits import CreditGrant, Credits, NewGrant
from service.customers.service import parse_amount
from service.errors import InvalidRequestError
from service.wire import money_text, storable_instant_problem


class GrantIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    amount_usd: str
    """Decimal string, more than zero."""
    expires_at: str | None = None
    """RFC 3339, in the future; absent: the credits never expire."""
    reference: str | None = None
    """Free text (1–200 characters): a purchase order, a contract."""

    def new_grant(self) -> NewGrant:
        expires_at: datetime | None = None
        if self.expires_at is not None:
            expires_at = body_instant("expires_at", self.expires_at)
            # Stored as infinity, the grant's retry under its reference was a conflict.
            if problem := storable_instant_problem(expires_at):
                raise InvalidRequestError(f"expires_at: {problem}")
        return NewGrant(
            amount_usd=parse_amount("amount_usd", self.amount_usd),
            expires_at=expires_at,
            reference=self.reference,
        )


class GrantOut(msgspec.Struct, kw_only=True):
    id: int
    customer_id: str
    amount_usd: str
    remaining_usd: str
    """What is left of it (it still counts only until ``expires_at``)."""
    expires_at: str | None
    reference: str | None
    created_at: str
    expired: bool
    """Its ``expires_at`` has passed: its ``remaining_usd`` is what went unused, no longer
    in the balance."""


class CreditsOut(msgspec.Struct, kw_only=True):
    customer_id: str
    balance_usd: str
    """What the grants that have not expired hold now."""
    grants: list[GrantOut]
    """Every grant, oldest first (exhausted and expired ones too)."""


def grant_out(grant: CreditGrant) -> GrantOut:
    return wire_struct(GrantOut, grant)


def credits_out(customer_id: str, credits: Credits) -> CreditsOut:
    return CreditsOut(
        customer_id=customer_id,
        balance_usd=money_text(credits.balance_usd),
        grants=[grant_out(g) for g in credits.grants],
    )
