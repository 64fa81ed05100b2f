"""The pricing rule of SPEC §3, as a pure function over exact decimals.

A call is priced at one rate: the model's base prices, or, when its ``input_tokens`` reach a
long-context threshold, that entry's prices for every token of it (``ModelPrice.rate_for``).
Every caller that prices a call (the ledger, the gateway's ``result.cost``, the proxy's
reservation estimate) goes through ``event_cost`` or ``priced``, so they cannot disagree.

Each prompt token is in exactly one class (plain input, cache read, cache write) and each
completion token in one (plain output, reasoning), so nothing is counted twice: a total's
own tokens are the total less its parts (``service.tokens``).
"""

from __future__ import annotations

from decimal import Decimal

from service.money import EXACT
from service.pricing.models import ModelPrice, Rate
from service.tokens import TOKEN_CLASSES, TokenCounts, parts_of

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)

# (class, its price, the classes inside it), read once from the declaration.
_RULE = tuple((c.name, c.price, tuple(p.name for p in parts_of(c))) for c in TOKEN_CLASSES)


def event_cost(tokens: TokenCounts, price: ModelPrice) -> Decimal:
    """Exact USD cost of one call's tokens at ``price``, long context included."""
    return priced(tokens, price)[1]


def priced(tokens: TokenCounts, price: ModelPrice) -> tuple[Rate, Decimal]:
    """The rate that prices the call (``ModelPrice.rate_for``) and its exact USD cost."""
    rate = price.rate_for(tokens.input_tokens)
    return rate, rate_cost(tokens, rate)


def rate_cost(tokens: TokenCounts, rate: Rate) -> Decimal:
    """Exact USD cost of one call's tokens at ``rate`` (per 1M tokens, plus per request)."""
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
        per_million = ctx.add(per_million, ctx.multiply(Decimal(own), getattr(rate, price_name)))
    return ctx.add(ctx.divide(per_million, TOKENS_PER_PRICE_UNIT), rate.per_request)
