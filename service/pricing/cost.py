"""The pricing rule of SPEC §3, as a pure function over exact decimals.

Each prompt token is in exactly one class (plain input, cache read, cache write) and each
completion token in one (plain output, reasoning), so nothing is counted twice: a total's
own tokens are the total less its parts (``service.tokens``).
"""

from __future__ import annotations

from decimal import Decimal

from service.money import EXACT
from service.pricing.models import ModelPrice
from service.tokens import TOKEN_CLASSES, TokenCounts, parts_of

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)

# (class, its price, the classes inside it), read once from the declaration.
_RULE = tuple((c.name, c.price, tuple(p.name for p in parts_of(c))) for c in TOKEN_CLASSES)


def event_cost(tokens: TokenCounts, price: ModelPrice) -> Decimal:
    """Exact USD cost of one call's tokens at ``price`` (per 1M tokens, plus per request)."""
    # Inexact is trapped: if a result ever needed rounding, pricing fails loudly instead
    # of losing a digit.
    ctx = EXACT
    per_million = Decimal(0)
    for name, price_name, parts in _RULE:
        own = getattr(tokens, name)
        for part in parts:
            own -= getattr(tokens, part)
        if own < 0:
            raise ValueError("token classes exceed their totals")
        per_million = ctx.add(per_million, ctx.multiply(Decimal(own), getattr(price, price_name)))
    return ctx.add(ctx.divide(per_million, TOKENS_PER_PRICE_UNIT), price.per_request)
