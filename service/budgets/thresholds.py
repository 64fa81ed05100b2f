"""A budget's thresholds exactly as the client wrote them.

Litestar decodes a request body to Python values before it builds the wire struct, so a
JSON number in ``thresholds`` passes through a binary float on the way:
``0.1234567890123456789012345678901234567890123`` arrives as ``0.12345678901234568`` and
``1e-400`` as ``0.0``. A threshold decides when an alert fires, so it is read again here
from the raw body, each number as its own text (``msgspec.Raw``), and turned into a Decimal
exactly; a decimal string is taken too. A value that is refused is named as it was sent.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import msgspec

from service.errors import InvalidRequestError
from service.wire import WireValueError, parse_money

MAX_THRESHOLD_PLACES = 50
"""More decimal places than any amount LUC holds (40) and then some: a finer fraction is
no threshold anyone means, and ``1e-400`` would show as 0 wherever a threshold is written
as a float (the budget's answer, the alert list)."""


class _Thresholds(msgspec.Struct):
    # Every other field of the body is the wire struct's business (and checked there).
    thresholds: list[msgspec.Raw] | None = None


def thresholds_as_sent(body: bytes) -> list[Decimal] | None:
    """The body's ``thresholds`` as exact Decimals (``None``: absent or null).

    Call it once the body has been decoded and validated as a budget, so that the body is
    JSON and ``thresholds`` a list of numbers (or decimal strings)."""
    try:
        raws = msgspec.json.decode(body, type=_Thresholds).thresholds
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"thresholds: {exc}") from None
    if raws is None:
        return None
    return [_threshold(bytes(raw).decode()) for raw in raws]


def _threshold(text: str) -> Decimal:
    shown = text
    if text.startswith('"'):
        # A decimal string is in money's form: ASCII digits and a point, nothing else
        # (``Decimal()`` also reads "١", "0.0_5", " 0.5" and "5e-1").
        try:
            value = parse_money("thresholds", msgspec.json.decode(text, type=str), any_size=True)
        except WireValueError as exc:
            raise InvalidRequestError(str(exc)) from None
    else:
        try:
            value = Decimal(text)  # a JSON number, exponent and all
        except InvalidOperation:
            raise InvalidRequestError(f"thresholds: {shown} is not a number") from None
    if not value.is_finite() or not Decimal(0) < value <= Decimal(1):
        raise InvalidRequestError(
            f"thresholds: {shown} is outside (0, 1]; a threshold is a fraction of the limit"
        )
    # Places without trailing zeros, counted on the digits (``normalize`` would round to
    # the context's 28 digits).
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    places = -(exponent + trailing_zeros)
    if places > MAX_THRESHOLD_PLACES:
        raise InvalidRequestError(
            f"thresholds: {shown} has {places} decimal places; at most {MAX_THRESHOLD_PLACES}"
        )
    return value
