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

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter, mul

from service.money import EXACT
from service.pricing.models import ModelPrice, Rate
from service.tokens import TOKEN_CLASSES, TOKEN_FIELDS, TokenCounts, parts_of

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)
_UNIT_DIGITS = 6
_UNIT = 10**_UNIT_DIGITS
assert Decimal(_UNIT) == TOKENS_PER_PRICE_UNIT

# Read once from the declaration: each class's count, the classes inside each total (by
# position), and the price of each class's own tokens.
_counts = attrgetter(*TOKEN_FIELDS)
_PARTS = tuple(
    (i, tuple(TOKEN_FIELDS.index(p.name) for p in parts_of(c)))
    for i, c in enumerate(TOKEN_CLASSES)
    if parts_of(c)
)
_class_prices = attrgetter(*(c.price for c in TOKEN_CLASSES))
_rate_prices = attrgetter(*(c.price for c in TOKEN_CLASSES), "per_request")


def event_cost(tokens: TokenCounts, price: ModelPrice) -> Decimal:
    """Exact USD cost of one call's tokens at ``price``, long context included."""
    return priced(tokens, price)[1]


def priced(tokens: TokenCounts, price: ModelPrice) -> tuple[Rate, Decimal]:
    """The rate that prices the call (``ModelPrice.rate_for``) and its exact USD cost."""
    rate = price.rate_for(tokens.input_tokens)
    return rate, rate_cost(tokens, rate)


def rate_cost(tokens: TokenCounts, rate: Rate) -> Decimal:
    """Exact USD cost of one call's tokens at ``rate`` (per 1M tokens, plus per request)."""
    return _terms(tuple(map(str, _rate_prices(rate)))).cost(tokens)


@dataclass(frozen=True, slots=True)
class RateTerms:
    """A rate as integers: each class's unit price is ``coefficient × 10^exponent``, at one
    exponent for all. A cost is then a sum of integer products and one Decimal made from
    it, where Decimal arithmetic in the exact context took ten operations at ~150 ns each;
    the Decimal is the very one that arithmetic gives, exponent included (the text
    PostgreSQL stores): see ``cost``. Pricing many calls at one rate makes it once."""

    coefficients: tuple[int, ...]
    """Per token class, in ``TOKEN_CLASSES`` order."""
    exponent: int
    per_request: Decimal

    @classmethod
    def of(cls, rate: Rate) -> RateTerms:
        return cls.from_prices(_class_prices(rate), rate.per_request)

    @classmethod
    def from_prices(cls, prices: Sequence[Decimal], per_request: Decimal) -> RateTerms:
        """From the unit prices in ``TOKEN_CLASSES`` order and the price per request."""
        if not all(p.is_finite() for p in prices):  # the catalog's rules refuse them
            raise ValueError(f"a unit price is not a finite number: {prices}")
        # 0: the exponent of the sum's starting zero (see ``cost``).
        exponent = min(0, *(int(p.as_tuple().exponent) for p in prices))
        return cls(tuple(int(p.scaleb(-exponent, EXACT)) for p in prices), exponent, per_request)

    def cost(self, tokens: TokenCounts) -> Decimal:
        """Exact USD cost of one call's tokens: the sum over the classes of the tokens no
        narrower class holds × their unit price, over 1M, plus the price per request."""
        counts = _counts(tokens)
        own = list(counts)
        for total, parts in _PARTS:
            for part in parts:
                own[total] -= counts[part]
        if min(own) < 0:
            raise ValueError("token classes exceed their totals")
        # What Decimal arithmetic gives, exactly (nothing rounds: the context traps
        # Inexact): starting from Decimal(0), each product count × price keeps the price's
        # exponent and each sum the smaller one, so the sum is ``coefficient × 10^exponent``
        # with ``exponent`` the least of 0 and the prices'. Dividing by 10^6 keeps the
        # quotient at the dividend's exponent (its ideal one) where it can: it drops up to
        # 6 trailing zeros, no more. Adding the price per request is left to the context.
        coefficient = sum(map(mul, own, self.coefficients))
        exponent = self.exponent - _UNIT_DIGITS
        if coefficient % _UNIT == 0:
            coefficient //= _UNIT
            exponent = self.exponent
        else:
            while coefficient % 10 == 0:
                coefficient //= 10
                exponent += 1
        return EXACT.add(Decimal(coefficient).scaleb(exponent, EXACT), self.per_request)


@lru_cache(maxsize=1024)
def _terms(prices: tuple[str, ...]) -> RateTerms:
    """The terms of a rate whose prices (``_rate_prices``) read so: a catalog holds a few
    rates, and making the terms costs more than pricing a call with them. Kept by the
    prices' text, not by value: 3 and 3.00 are equal, but price calls at other exponents."""
    *classes, per_request = map(Decimal, prices)
    return RateTerms.from_prices(classes, per_request)


def actual_cost(cost: Decimal | None, provider_cost: Decimal | None) -> Decimal | None:
    """What a call actually cost (SPEC §3 ``actual_cost_usd``): the provider's reported
    cost where it reported one, else the catalog's ``cost``; None when neither is known (an
    unpriced event without a reported cost). The ledger column is generated by the same rule
    (migration 0012), so an entry's stored figure always agrees with this."""
    return cost if provider_cost is None else provider_cost
