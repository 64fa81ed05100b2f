"""Exact arithmetic on money: every sum, difference and rounding of amounts goes through here.

Python's default decimal context keeps 28 significant digits and rounds silently beyond
them, while a cost LUC stores can have 55 (a price of 12 integer digits and 30 decimal
places, times up to 10^12 tokens, over 10^6). ``EXACT`` has room for far more than any
amount LUC accepts and traps ``Inexact``: a result that would need rounding raises instead
of losing a digit. The only rounding is ``quantize_half_up``, done on purpose, once, where an
invoice presents money.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from contextlib import AbstractContextManager
from decimal import ROUND_HALF_UP, Decimal
from functools import reduce

CENT = Decimal("0.01")

# Digits are cheap: the precision is a ceiling, and a sum costs what its digits cost.
_PRECISION = 1000

EXACT = decimal.Context(
    prec=_PRECISION,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[
        decimal.Inexact,
        decimal.InvalidOperation,
        decimal.Overflow,
        decimal.DivisionByZero,
    ],
)
"""Add, subtract and multiply amounts in this context (``EXACT.add(a, b)``, or a block under
``exact()``): the result is exact, or ``decimal.Inexact`` is raised."""

_ROUNDING = decimal.Context(
    prec=_PRECISION,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.Overflow],
)


def exact() -> AbstractContextManager[decimal.Context]:
    """A block whose Decimal operators (``+``, ``-``, ``*``, unary ``-``) are exact."""
    return decimal.localcontext(EXACT)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (0 when there are none)."""
    return reduce(EXACT.add, values, Decimal(0))


def exact_difference(minuend: Decimal, subtrahend: Decimal) -> Decimal:
    """``minuend − subtrahend``, exactly."""
    return EXACT.subtract(minuend, subtrahend)


def quantize_half_up(value: Decimal, quantum: Decimal) -> Decimal:
    """``value`` rounded to a multiple of ``quantum``, half away from zero, at any size."""
    return value.quantize(quantum, rounding=ROUND_HALF_UP, context=_ROUNDING)


def decimal_places(value: Decimal) -> int:
    """Significant digits after the point (``1.2300`` has 2), without a context, so a value
    of any size is measured without overflow."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # a finite value
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros)) if any(digits) else 0
