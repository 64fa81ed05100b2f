"""The wire forms (SPEC §2): money as a plain decimal string, instants as RFC 3339."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.wire import (
    WireValueError,
    instant_text,
    money_text,
    parse_instant,
    parse_money,
    spreadsheet_text,
)

D = Decimal


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", D(0)),
        ("12", D(12)),
        ("0.5", D("0.5")),
        ("10.50", D("10.50")),
        ("0.000310", D("0.000310")),
        ("1234567890123456789012345678901234567890", D("1234567890123456789012345678901234567890")),
        ("0." + "0" * 39 + "1", D("1e-40")),
        # SPEC §2 bounds significant digits: zeros after the point are not (at 40 places
        # these were refused); nor does it refuse leading zeros.
        ("0." + "0" * 60 + "1", D("1e-61")),
        ("0." + "0" * 60 + "1" * 39, D("0." + "0" * 60 + "1" * 39)),
        ("00.5", D("0.5")),
        ("007", D("7")),
        ("0.004999999999999999999999999999999999", D("0.004999999999999999999999999999999999")),
    ],
)
def test_a_plain_decimal_string_is_read_exactly(text: str, value: Decimal) -> None:
    parsed = parse_money("amount", text)
    assert parsed == value
    assert str(parsed) == str(value)  # every digit, none rounded


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1_000.5", "underscores"),
        ("١٢", "ASCII digits"),  # Arabic-Indic digits
        ("１２", "ASCII digits"),  # fullwidth digits
        ("½", "ASCII digits"),
        ("0E-16384", "exponent"),
        ("1e5", "exponent"),
        ("1E+999999999", "exponent"),
        ("NaN", "not a number"),
        ("sNaN", "not a number"),
        ("Infinity", "not a number"),
        ("-inf", "not a number"),
        ("-0.01", "cannot be negative"),
        ("+1", "sign"),
        ("-0", "cannot be negative"),
        (" 1.5", "spaces"),
        ("1.5\n", "spaces"),
        ("", "not a decimal string"),
        (".5", "not a decimal string"),
        ("5.", "not a decimal string"),
        ("1,5", "not a decimal string"),
        ("0x10", "not a decimal string"),
        ("1" * 41, "41 significant digits"),
        ("1." + "1" * 40, "41 significant digits"),
        ("0." + "0" * 50 + "1" * 41, "41 significant digits"),
        ("0." + "0" * 100 + "1", "101 decimal places"),
        ("1" * 500, "at most 40 significant digits"),
    ],
)
def test_anything_else_is_refused_with_a_reason_naming_the_field(text: str, says: str) -> None:
    with pytest.raises(WireValueError) as caught:
        parse_money("limit_usd", text)
    assert str(caught.value).startswith("limit_usd: "), caught.value
    assert says in str(caught.value), caught.value


def test_a_signed_amount_may_be_negative_but_never_written_otherwise() -> None:
    assert parse_money("delta", "-0.004999", signed=True) == D("-0.004999")
    for text in ("+1", "--1", "-1e2", "- 1"):
        with pytest.raises(WireValueError):
            parse_money("delta", text, signed=True)


PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def plain_and_small(text: str) -> bool:
    """The rule, written again here: ASCII digits with an optional fraction, ≤ 40
    significant digits (leading zeros aside) and ≤ 100 decimal places."""
    if not PLAIN.fullmatch(text) or not text.isascii():
        return False
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    places = len(text.partition(".")[2])
    return len(digits) <= 40 and places <= 100


@given(
    st.one_of(
        st.text(alphabet="0123456789.-+eE_ ,٠١٢", max_size=45),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.from_regex(r"-?(0|[1-9][0-9]{0,44})(\.[0-9]{1,44})?", fullmatch=True),
        st.text(max_size=12),
    )
)
def test_any_text_is_either_exactly_its_decimal_or_refused_by_name(text: str) -> None:
    try:
        value = parse_money("cost", text, signed=True)
    except WireValueError as exc:
        assert not plain_and_small(text), text
        assert str(exc).startswith("cost: ")
    else:
        assert plain_and_small(text), text
        assert value == Decimal(text) and str(value) == str(Decimal(text))


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_what_luc_writes_it_reads_back_to_the_same_value(value: Decimal) -> None:
    text = money_text(value)
    assert "e" not in text.lower()
    if len(text.lstrip("-").replace(".", "").lstrip("0")) <= 40 and (
        len(text.partition(".")[2]) <= 40
    ):
        assert parse_money("x", text, signed=True) == value


def test_money_text_is_plain_and_minimal() -> None:
    assert money_text(D("1E-7")) == "0.0000001"
    assert money_text(D("0.0150")) == "0.015"
    assert money_text(D("-0.00")) == "0"
    assert money_text(D("1E+3")) == "1000"


# Instants ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2025-11-30T23:59:59.999999Z", datetime(2025, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2025-11-30T23:59:59.5Z", datetime(2025, 11, 30, 23, 59, 59, 500000, tzinfo=UTC)),
        ("2025-11-30t23:59:59z", datetime(2025, 11, 30, 23, 59, 59, tzinfo=UTC)),
        ("2025-11-30 23:59:59+00:00", datetime(2025, 11, 30, 23, 59, 59, tzinfo=UTC)),
        (
            "2025-12-01T00:59:59.000001+01:00",
            datetime(2025, 11, 30, 23, 59, 59, 1, tzinfo=UTC),
        ),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        (
            "9999-12-31T23:59:59+23:59",
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=23, minutes=59))),
        ),
    ],
)
def test_an_rfc_3339_instant_is_read_to_the_microsecond(text: str, instant: datetime) -> None:
    parsed = parse_instant("occurred_at", text)
    assert parsed == instant
    assert parsed.astimezone(UTC).isoformat() == instant.astimezone(UTC).isoformat()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # Rounding would have made this 2025-12-01T00:00:00Z: another day, another month.
        ("2025-11-30T23:59:59.9999995Z", "7 fractional second digits; at most 6"),
        ("2025-11-30T23:59:59.123456789+01:00", "9 fractional second digits"),
        ("2025-11-30T23:59:59", "no UTC offset"),
        ("2025-11-30T23:59:59.5", "no UTC offset"),
        ("2016-12-31T23:59:60Z", "leap second"),
        # Well formed, out of range: said as the range (it was "year 0 is out of range",
        # and "not an RFC 3339 timestamp" for year 10000).
        ("0000-01-01T00:00:00Z", "is out of range: outside the years 0001 to 9999 in UTC"),
        ("10000-01-01T00:00:00Z", "is out of range: outside the years 0001 to 9999 in UTC"),
        ("99999999999999999999-01-01T00:00:00Z", "outside the years 0001 to 9999 in UTC"),
        # In range as written, not in UTC: no datetime, and no PostgreSQL parameter, holds it.
        ("0001-01-01T00:59:59.999999+01:00", "outside the years 0001 to 9999 in UTC"),
        ("9999-12-31T23:00:00-01:00", "outside the years 0001 to 9999 in UTC"),
        ("2025-02-30T00:00:00Z", "day is out of range"),
        ("2025-11-30T24:00:00Z", "hour must be in 0..23"),
        ("2025-11-30T10:00:00+24:00", "not a valid instant"),
        ("2025-11-30T10:00:00+05:60", "not a valid instant"),
        ("2025-11-30T10:00:00+0100", "not an RFC 3339 timestamp"),
        ("2025-11-30T10:00Z", "not an RFC 3339 timestamp"),
        ("2025-11-30T10:00:00.Z", "not an RFC 3339 timestamp"),
        ("２０２５-11-30T10:00:00Z", "not an RFC 3339 timestamp"),
        ("2025-11-30", "not an RFC 3339 timestamp"),
        ("1764000000", "not an RFC 3339 timestamp"),
        ("2025-11-30T10:00:00Z" + " " * 100, "not an RFC 3339 timestamp"),
    ],
)
def test_any_other_instant_is_refused_not_rounded(text: str, says: str) -> None:
    with pytest.raises(WireValueError) as caught:
        parse_instant("occurred_at", text)
    assert str(caught.value).startswith("occurred_at: "), caught.value
    assert says in str(caught.value), caught.value


@given(st.datetimes(timezones=st.just(UTC)))
def test_what_luc_writes_as_an_instant_it_reads_back(value: datetime) -> None:
    assert parse_instant("at", instant_text(value)) == value


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r1", "'\r1"),
        ("\nx", "'\nx"),
        # A spreadsheet skips leading spaces before it reads a formula.
        ("  =1+1", "'  =1+1"),
        (" -2", "' -2"),
        # A quote is quoted too: "'=x" and "=x" stay two cells ("''=x" and "'=x").
        ("'=x", "''=x"),
        ("'", "''"),
        # Text that starts otherwise, or only has a formula character inside, is as sent.
        ("job-42", "job-42"),
        ("a=b", "a=b"),
        ("   ", "   "),
        ("", ""),
        (None, ""),
    ],
)
def test_a_csv_cell_a_spreadsheet_would_run_gets_a_leading_quote(
    text: str | None, cell: str
) -> None:
    assert spreadsheet_text(text) == cell
