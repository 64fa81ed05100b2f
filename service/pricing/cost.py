"""The pricing rule of SPEC §3, as a pure function over exact decimals.

Each prompt token is in exactly one class (plain input, cache read, cache write) and each
completion token in one (plain output, reasoning), so nothing is counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from service.money import EXACT
from service.pricing.models import ModelPrice

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class TokenCounts:
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int


def event_cost(tokens: TokenCounts, price: ModelPrice) -> Decimal:
    """Exact USD cost of one call's tokens at ``price`` (per 1M tokens, plus per request)."""
    # Inexact is trapped: if a result ever needed rounding, pricing fails loudly instead
    # of losing a digit.
    ctx = EXACT
    plain_input = tokens.input_tokens - tokens.cached_input_tokens - tokens.cache_write_tokens
    plain_output = tokens.output_tokens - tokens.reasoning_tokens
    if plain_input < 0 or plain_output < 0:
        raise ValueError("token classes exceed their totals")
    per_million = ctx.add(
        ctx.add(
            ctx.add(
                ctx.multiply(Decimal(plain_input), price.input),
                ctx.multiply(Decimal(tokens.cached_input_tokens), price.cache_read),
            ),
            ctx.add(
                ctx.multiply(Decimal(tokens.cache_write_tokens), price.cache_write),
                ctx.multiply(Decimal(plain_output), price.output),
            ),
        ),
        ctx.multiply(Decimal(tokens.reasoning_tokens), price.reasoning),
    )
    return ctx.add(ctx.divide(per_million, TOKENS_PER_PRICE_UNIT), price.per_request)
