"""The text forms of the wire, in one place: money as a decimal string, instants as RFC 3339.

Everything LUC writes as text goes through here: API answers, invoices (JSON, CSV, HTML),
webhook bodies, the usage events the gateway sends; and every money or instant LUC reads
from text is parsed here.

Money (SPEC §2) is a plain decimal string: ASCII digits, an optional fraction, a minus sign
only where the value may be negative, no exponent, no underscores, no other digit scripts,
no spaces, at most 40 significant digits (and, to bound what a value may hold, 100
decimal places: zeros after the point count as places, never as significant digits, so
``0.`` and sixty zeros then ``1`` is one significant digit). ``Decimal()`` alone takes
``"1_000.5"``, ``"١٢"``, ``" 1e5 "``, ``"NaN"`` and ``"0E-16384"`` (which PostgreSQL's NUMERIC
cannot hold); ``parse_money`` takes none of them. Every amount LUC writes (``money_text``)
is in the same form, at full precision.

Instants are RFC 3339 with an offset and at most 6 fractional digits: PostgreSQL keeps
microseconds, and rounding a seventh digit could move an event into the next second, day
or month, so such a timestamp is refused rather than rounded.

Each form LUC writes has its SQL twin (``money_text_sql`` and the others, at the end), for
the reads whose answers PostgreSQL writes as text itself.
"""

from __future__ import annotations

import contextlib
import decimal
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache

import msgspec

from service.money import CENT, quantize_half_up

MAX_SIGNIFICANT_DIGITS = 40
# SPEC §2 bounds the significant digits only; the places are bounded too, well past what
# 40 significant digits need (at 40, a cost of 1 followed by 40 zeros' worth of places was
# refused though SPEC takes it), and far inside what ``money.EXACT`` sums exactly.
MAX_DECIMAL_PLACES = 100
MAX_FRACTION_DIGITS = 6
"""Of a timestamp's seconds: microseconds, what PostgreSQL and ``datetime`` keep."""

# ASCII digits, with digits on both sides of a point if there is one; leading zeros are
# digits like any other (SPEC §2 does not refuse them: ``007.50`` is 7.5). [0-9] (not \d)
# so that no other script's digits pass.
_MONEY = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
MONEY_MAX_CHARS = 1 + MAX_SIGNIFICANT_DIGITS + 1 + MAX_DECIMAL_PLACES + 1  # sign, point
"""The longest money text LUC takes (leading zeros count against it)."""
# What LUC writes may be longer: an exact sum of amounts has more digits than any of them.
_WRITTEN_MAX_CHARS = 1000
# Near misses, to say what is wrong with them.
_EXPONENT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+")
_UNDERSCORED = re.compile(r"[+-]?[0-9_]+(\.[0-9_]*)?")

_INSTANT = re.compile(
    r"([0-9]{4,})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_INSTANT_MAX_CHARS = 64  # a valid one has at most 32; longer is refused before matching
_EDGE_YEARS = ("0001", "9999")
_YEARS = "outside the years 0001 to 9999 in UTC"


class WireValueError(ValueError):
    """A value that is not in its wire form; the message starts with the field's name."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _not_money(text: str, signed: bool) -> str:
    """Why ``text`` is not a plain decimal string, in the words a client developer needs."""
    shown = repr(text) if len(text) <= MONEY_MAX_CHARS else f"{text[:MONEY_MAX_CHARS]!r}…"
    if text != text.strip():
        problem = "has spaces around it"
    elif not text.isascii():
        problem = "holds characters other than ASCII digits and a point"
    elif text.lstrip("+-").lower() in ("nan", "snan", "inf", "infinity"):
        problem = "is not a number"
    elif _EXPONENT.fullmatch(text):
        problem = "has an exponent; write every digit"
    elif "_" in text and _UNDERSCORED.fullmatch(text):
        problem = "has underscores"
    elif text.startswith("+") or (text.startswith("-") and not signed):
        problem = "has a sign" + ("" if signed else "; the amount cannot be negative")
    else:
        problem = "is not a decimal string"
    return f"{shown} {problem} (a plain decimal string is expected, e.g. '12.05')"


def parse_money(field: str, text: str, *, signed: bool = False, any_size: bool = False) -> Decimal:
    """``text`` as an exact Decimal, or ``WireValueError`` naming ``field`` and the reason.

    ``signed`` allows a leading minus sign (a credit, a difference); amounts that cannot be
    negative are written without any sign. ``any_size`` reads the same form without the
    bounds of an amount LUC takes: an amount LUC wrote (an invoice's subtotal, say: an
    exact sum may have more digits than any of its terms), or a fraction that has bounds
    of its own (a budget's threshold).
    """
    if any_size:
        if len(text) <= _WRITTEN_MAX_CHARS and (match := _MONEY.fullmatch(text)):
            if match.group(1) and not signed:
                raise WireValueError(field, _not_money(text, signed))
            return Decimal(text)
        raise WireValueError(field, _not_money(text, signed))
    match = _MONEY.fullmatch(text) if len(text) <= MONEY_MAX_CHARS else None
    if match is None:
        if len(text) > MONEY_MAX_CHARS and _MONEY.fullmatch(text):
            raise WireValueError(
                field,
                f"has {len(text)} characters; at most {MAX_SIGNIFICANT_DIGITS} significant "
                f"digits and {MAX_DECIMAL_PLACES} decimal places",
            )
        raise WireValueError(field, _not_money(text, signed))
    sign, whole, fraction = match.groups()
    if sign and not signed:
        raise WireValueError(field, _not_money(text, signed))
    fraction = fraction or ""
    if len(fraction) > MAX_DECIMAL_PLACES:
        raise WireValueError(
            field, f"has {len(fraction)} decimal places; at most {MAX_DECIMAL_PLACES}"
        )
    # Significant: from the first non-zero digit to the last digit written.
    significant = len((whole + fraction).lstrip("0"))
    if significant > MAX_SIGNIFICANT_DIGITS:
        raise WireValueError(
            field, f"has {significant} significant digits; at most {MAX_SIGNIFICANT_DIGITS}"
        )
    return Decimal(text)


ESTIMATE_DECIMAL_PLACES = 30
"""Of an estimate a budget reservation holds (``POST /v1/budgets/reservations``): LUC holds
estimates to amounts a bill can hold, at most 30 decimal places."""

_CEILING = decimal.Context(
    prec=1000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, rounding=decimal.ROUND_CEILING
)


def money_ceiling(value: Decimal, places: int = MAX_DECIMAL_PLACES) -> Decimal:
    """``value`` rounded up to at most ``places`` decimal places and
    ``MAX_SIGNIFICANT_DIGITS`` significant digits: in the money form, and never below
    ``value`` (an estimate that holds headroom may only grow by rounding)."""
    if not value:
        return Decimal(0)
    exponent = max(-places, value.adjusted() - MAX_SIGNIFICANT_DIGITS + 1)
    if value.as_tuple().exponent >= exponent:  # type: ignore[operator]
        return value
    return value.quantize(Decimal(1).scaleb(exponent, _CEILING), context=_CEILING)


def money_text(value: Decimal) -> str:
    """An amount as LUC writes it: every digit, no exponent, no trailing zeros (``1E-7`` →
    ``0.0000001``, ``0.0150`` → ``0.015``); zero is ``0``, never ``-0``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def number_json(value: Decimal) -> msgspec.Raw:
    """A fraction that is no money (a budget's threshold) as a JSON number with every
    digit, ``money_text``'s unquoted: through a float, a threshold of 0.3333333333333333333
    read back as 0.3333333333333333, the same as another a digit away."""
    return msgspec.Raw(money_text(value).encode())


def cents_text(value: Decimal) -> str:
    """An amount in whole cents, both decimals written (``1.00``): an invoice's total, which
    the invoice has rounded already (``invoices.models.round_total``); half up otherwise."""
    return format(quantize_half_up(value, CENT), "f")


@lru_cache(maxsize=256)
def _offset(text: str) -> timezone:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes >= 60:
        raise ValueError(f"offset minutes {minutes} are not below 60")
    if hours >= 24:
        # timezone() would refuse it in Python's words, naming timedelta reprs.
        raise ValueError(f"its UTC offset {text} is not below 24 hours")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_instant(field: str, text: str) -> datetime:
    """An RFC 3339 timestamp with its offset, or ``WireValueError`` naming ``field``.

    At most 6 fractional digits, taken exactly; no leap second (``datetime`` has no
    23:59:60); years 0001 to 9999, as written and in UTC.
    """
    if not isinstance(text, str):
        raise WireValueError(field, f"must be an RFC 3339 string, not {type(text).__name__}")
    match = _INSTANT.fullmatch(text) if len(text) <= _INSTANT_MAX_CHARS else None
    if match is None:
        raise WireValueError(
            field, f"{_shown(text)} is not an RFC 3339 timestamp (e.g. '2026-11-24T10:00:00.25Z')"
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if year == "0000" or len(year) > 4:
        # Well formed (RFC 3339 writes four digits, ISO 8601 more), and past what a
        # datetime or PostgreSQL's binary protocol holds: said as the edge years are below.
        raise WireValueError(field, f"{_shown(text)} is out of range: {_YEARS}")
    if offset is None:
        raise WireValueError(
            field, "timestamp has no UTC offset (RFC 3339 needs one, e.g. 'Z' or '+02:00')"
        )
    if fraction is not None and len(fraction) > MAX_FRACTION_DIGITS:
        raise WireValueError(
            field,
            f"{_shown(text)} has {len(fraction)} fractional second digits; at most "
            f"{MAX_FRACTION_DIGITS} (microseconds): LUC does not round an instant",
        )
    if second == "60":
        raise WireValueError(field, f"{_shown(text)} is a leap second, which LUC cannot represent")
    value = None
    if offset == "Z" or (offset != "z" and offset[4] <= "5"):
        # The common forms, in C; it would also take what the checks above refuse, and
        # minutes of 60 or more in an offset, hence only here.
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(text)
    if value is None:
        try:
            value = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second),
                int((fraction or "").ljust(MAX_FRACTION_DIGITS, "0")),
                tzinfo=_offset(offset),
            )
        except ValueError as exc:
            raise WireValueError(field, f"{_shown(text)} is not a valid instant: {exc}") from None
    if year in _EDGE_YEARS:
        # Only there can the offset carry the instant out of the years a datetime (and a
        # PostgreSQL parameter) holds in UTC: every use of it would fail, as a 500.
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise WireValueError(field, f"{_shown(text)} is out of range: {_YEARS}") from None
    return value


# asyncpg writes the first and last instants a datetime holds as PostgreSQL's -infinity and
# infinity, which read back as naive datetimes: stored, every later read of them failed
# (a catalog version, a grant's expiry); compared, they stand for no instant at all.
_DRIVER_INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def storable_instant_problem(instant: datetime) -> str | None:
    """Why ``instant`` (with an offset) cannot be stored, or compared as sent, or None:
    what ``parse_instant`` gives a route that keeps the instant (an ``effective_from``, a
    grant's ``expires_at``, an event's ``occurred_at``, a re-pricing's ``since``)."""
    if instant not in _DRIVER_INFINITIES:
        return None
    return (
        f"{instant_text(instant)} is the first or last instant of years "
        "0001-9999, which PostgreSQL's binary protocol reads as -infinity or infinity; it "
        "cannot be stored as sent"
    )


def _shown(text: str) -> str:
    """An instant as a refusal quotes it (written only when one is refused)."""
    return repr(text) if len(text) <= _INSTANT_MAX_CHARS else f"{text[:_INSTANT_MAX_CHARS]!r}…"


def instant_text(value: datetime) -> str:
    """An instant as LUC writes it: RFC 3339 in UTC, ``Z``, microseconds when there are any."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def day_text(value: date) -> str:
    """A UTC calendar day (a billing day): ``2026-11-24``."""
    return value.isoformat()


# The same three forms written by PostgreSQL, for the reads that answer many rows (a usage
# query, an agent's days): the text comes from the server as the answer holds it, instead
# of through a Decimal or a datetime per value, which cost more than the rest of the
# request. tests/integration/test_wire_sql.py holds each equal to its Python form above.


def money_text_sql(expr: str) -> str:
    """SQL writing the NUMERIC ``expr`` as ``money_text`` does: ``trim_scale`` drops the
    trailing zeros of its scale (the point with them), NUMERIC's text has every digit and
    never an exponent, and NUMERIC has no negative zero; NULL stays NULL."""
    return f"trim_scale({expr})::text"


def instant_text_sql(expr: str) -> str:
    """SQL writing the timestamptz ``expr`` as ``instant_text`` does, whatever the
    session's TimeZone and DateStyle: UTC, ``T``, ``Z``, the microseconds unless all zero
    (``.000000`` can only be the fraction: no other part holds a point); NULL stays NULL."""
    return (
        f"""replace(to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), """
        "'.000000', '') || 'Z'"
    )


def day_text_sql(expr: str) -> str:
    """SQL writing the date ``expr`` as ``day_text`` does, whatever the session's
    DateStyle (``date::text`` follows it)."""
    return f"to_char({expr}, 'YYYY-MM-DD')"


_FORMULA_CHARACTERS = frozenset("=+-@")


def spreadsheet_text(value: str | None) -> str:
    """Text for a CSV cell as a spreadsheet will not run it (CSV injection): a cell that
    starts with a formula character, after any spaces (a spreadsheet skips them), or with a
    tab or a line break gets a leading quote. So does a cell that starts with a quote: the
    mapping must be reversible (without it, job ``=x`` and job ``'=x`` were both written
    ``'=x``, one row key for two jobs' money). None is an empty cell."""
    if not value:
        return ""
    if value[0] in "\t\r\n'" or value.lstrip(" ")[:1] in _FORMULA_CHARACTERS:
        return "'" + value
    return value
