"""The pricing rule of SPEC §3, checked against costs worked out by hand."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.pricing.cost import event_cost, priced, rate_cost
from service.pricing.models import ModelPrice, NewLongContextPrice, NewModelPrice, Rate
from service.tokens import TokenCounts

D = Decimal

# Every class priced differently, so a token counted in the wrong class (or twice) shows.
DISTINCT = ModelPrice(
    model_id="test/distinct",
    name="Distinct",
    tier="standard",
    input=D("3.00"),
    output=D("15.00"),
    cache_read=D("0.30"),
    cache_write=D("3.75"),
    reasoning=D("20.00"),
    per_request=D("0.0004"),
)

# AIMS gemini-3.0-flash: input 0.10, output 0.40, no explicit cache/reasoning prices.
FLASH = NewModelPrice(
    model_id="google/gemini-3.0-flash",
    name="Gemini 3.0 Flash",
    tier="fast",
    input=D("0.10"),
    output=D("0.40"),
).with_defaults()


def tokens(inp: int, cached: int, write: int, out: int, reasoning: int) -> TokenCounts:
    return TokenCounts(
        input_tokens=inp,
        cached_input_tokens=cached,
        cache_write_tokens=write,
        output_tokens=out,
        reasoning_tokens=reasoning,
    )


def test_plain_input_and_output_are_priced_per_million_tokens() -> None:
    # 1000 × 3.00/M + 500 × 15.00/M + 0.0004 = 0.003 + 0.0075 + 0.0004
    assert event_cost(tokens(1000, 0, 0, 500, 0), DISTINCT) == D("0.0109")


def test_cached_input_is_priced_at_cache_read_and_not_again_as_input() -> None:
    # input 10000 of which 4000 cached: 6000 × 3.00/M = 0.018; 4000 × 0.30/M = 0.0012
    # + per_request 0.0004 → 0.0196
    assert event_cost(tokens(10_000, 4_000, 0, 0, 0), DISTINCT) == D("0.0196")


def test_cache_writes_are_priced_at_cache_write_and_not_again_as_input() -> None:
    # input 10000 of which 2000 written: 8000 × 3.00/M = 0.024; 2000 × 3.75/M = 0.0075
    # + 0.0004 → 0.0319
    assert event_cost(tokens(10_000, 0, 2_000, 0, 0), DISTINCT) == D("0.0319")


def test_reasoning_is_priced_at_reasoning_and_not_again_as_output() -> None:
    # output 3000 of which 1200 reasoning: 1800 × 15/M = 0.027; 1200 × 20/M = 0.024
    # + 0.0004 → 0.0514
    assert event_cost(tokens(0, 0, 0, 3_000, 1_200), DISTINCT) == D("0.0514")


def test_every_token_class_together_sums_each_class_once() -> None:
    # input 12345 = 2345 plain + 7000 cached + 3000 written; output 6789 = 4789 + 2000 reasoning
    # 2345 × 3.00   =  7035
    # 7000 × 0.30   =  2100
    # 3000 × 3.75   = 11250
    # 4789 × 15.00  = 71835
    # 2000 × 20.00  = 40000
    # sum 132220 per 1M → 0.13222, + 0.0004 per request → 0.13262
    assert event_cost(tokens(12_345, 7_000, 3_000, 6_789, 2_000), DISTINCT) == D("0.13262")


def test_missing_cache_and_reasoning_prices_default_to_input_and_output() -> None:
    assert FLASH.cache_read == D("0.10")
    assert FLASH.cache_write == D("0.10")
    assert FLASH.reasoning == D("0.40")
    assert FLASH.per_request == 0
    # with the defaults the split does not change the price:
    # 1000 input × 0.10/M + 700 output × 0.40/M = 0.0001 + 0.00028 = 0.00038
    split = event_cost(tokens(1000, 300, 200, 700, 500), FLASH)
    whole = event_cost(tokens(1000, 0, 0, 700, 0), FLASH)
    assert split == whole == D("0.00038")


def test_per_request_price_is_charged_once_even_with_no_tokens() -> None:
    assert event_cost(tokens(0, 0, 0, 0, 0), DISTINCT) == D("0.0004")
    assert event_cost(tokens(0, 0, 0, 0, 0), FLASH) == 0


def test_one_token_costs_an_exact_millionth_of_the_price() -> None:
    price = NewModelPrice("m", "m", "economy", D("0.07"), D("0.13")).with_defaults()
    # 1 × 0.07 / 1e6 + 1 × 0.13 / 1e6 = 0.00000020
    cost = event_cost(tokens(1, 0, 0, 1, 0), price)
    assert cost == D("0.0000002")
    assert str(cost.normalize()) == "2E-7"  # exact, not a float approximation


def test_large_counts_keep_every_digit() -> None:
    price = NewModelPrice("m", "m", "premium", D("5.00"), D("25.00")).with_defaults()
    # 987654321987 × 5 = 4938271609935; 123456789123 × 25 = 3086419728075
    # sum 8024691338010 / 1e6 = 8024691.33801
    assert event_cost(tokens(987_654_321_987, 0, 0, 123_456_789_123, 0), price) == D(
        "8024691.33801"
    )


@pytest.mark.parametrize(
    ("counts", "why"),
    [
        (tokens(100, 60, 50, 0, 0), "cached + cache_write above input"),
        (tokens(100, 101, 0, 0, 0), "cached above input"),
        (tokens(100, 0, 101, 0, 0), "cache_write above input"),
        (tokens(0, 0, 0, 10, 11), "reasoning above output"),
    ],
)
def test_token_classes_above_their_totals_are_an_error(counts: TokenCounts, why: str) -> None:
    with pytest.raises(ValueError, match="exceed"):
        event_cost(counts, DISTINCT)


# Claude Sonnet 4.5 in the completed AIMS catalog: base 3.00 / 15.00, cache read 0.30,
# cache write 3.75; from 200,001 input tokens every token at 6.00 / 22.50, cache read 0.60,
# cache write 7.50 (reasoning defaults to the entry's output, 22.50).
SONNET = NewModelPrice(
    model_id="anthropic/claude-sonnet-4.5",
    name="Claude Sonnet 4.5",
    tier="standard",
    input=D("3.00"),
    output=D("15.00"),
    cache_read=D("0.30"),
    cache_write=D("3.75"),
    long_context=(
        NewLongContextPrice(
            200_001, D("6.00"), D("22.50"), cache_read=D("0.60"), cache_write=D("7.50")
        ),
    ),
).with_defaults()


def test_a_call_below_the_long_context_threshold_is_priced_at_the_base_rate() -> None:
    # 200,000 input = 140,000 plain + 50,000 cached + 10,000 written; 1,000 output of which
    # 200 reasoning: 140000×3 + 50000×0.30 + 10000×3.75 + 800×15 + 200×15
    # = 420000 + 15000 + 37500 + 12000 + 3000 = 487500 per 1M → 0.4875
    rate, cost = priced(tokens(200_000, 50_000, 10_000, 1_000, 200), SONNET)
    assert rate.long_context_from is None
    assert rate.label == "base"
    assert cost == D("0.4875")


def test_a_call_at_the_threshold_has_every_token_at_the_long_context_rate() -> None:
    # One more plain input token: 140001×6 + 50000×0.60 + 10000×7.50 + 800×22.50 + 200×22.50
    # = 840006 + 30000 + 75000 + 18000 + 4500 = 967506 per 1M → 0.967506
    rate, cost = priced(tokens(200_001, 50_000, 10_000, 1_000, 200), SONNET)
    assert rate.long_context_from == 200_001
    assert rate.label == "long context ≥ 200,001 input tokens"
    assert (rate.input, rate.output, rate.cache_read, rate.cache_write, rate.reasoning) == (
        D("6.00"),
        D("22.50"),
        D("0.60"),
        D("7.50"),
        D("22.50"),
    )
    assert cost == D("0.967506")
    assert event_cost(tokens(200_001, 50_000, 10_000, 1_000, 200), SONNET) == cost


def test_the_highest_threshold_reached_prices_and_per_request_stays_the_models() -> None:
    # Entries given out of order; the model's per_request (0.01) applies at every rate, and
    # an entry's cache and reasoning prices default to its own input and output.
    price = NewModelPrice(
        model_id="m",
        name="m",
        tier="premium",
        input=D("1"),
        output=D("2"),
        per_request=D("0.01"),
        long_context=(
            NewLongContextPrice(1_000_000, D("4"), D("8")),
            NewLongContextPrice(100_000, D("3"), D("5"), reasoning=D("7")),
        ),
    ).with_defaults()
    assert [lc.min_input_tokens for lc in price.long_context] == [100_000, 1_000_000]
    # 99,999 input (9,999 cached) at base: 99999×1 + 0×... → 99999 per 1M + 0.01
    assert event_cost(tokens(99_999, 9_999, 0, 0, 0), price) == D("0.109999")
    # 100,000 input of which 40,000 cached, 10 output of which 4 reasoning, at ≥ 100,000:
    # 60000×3 + 40000×3 (cache_read defaults to the entry's input) + 6×5 + 4×7
    # = 180000 + 120000 + 30 + 28 = 300058 per 1M → 0.300058, + 0.01
    assert event_cost(tokens(100_000, 40_000, 0, 10, 4), price) == D("0.310058")
    # 1,000,000 input at ≥ 1,000,000, not at ≥ 100,000: 1000000×4 per 1M = 4, + 0.01
    rate, cost = priced(tokens(1_000_000, 0, 0, 0, 0), price)
    assert (rate.long_context_from, cost) == (1_000_000, D("4.01"))
    assert price.rate_from(None).input == D("1")
    assert price.rate_from(100_000).reasoning == D("7")


# The text of a cost is what PostgreSQL stores (NUMERIC keeps the scale it is given), so
# the cost must be the very Decimal that exact Decimal arithmetic gives, not only an equal
# value: per 1M tokens, the sum keeps the unit prices' decimal places, and dividing by
# 10^6 drops trailing zeros of the quotient down to those places, never further.
@pytest.mark.parametrize(
    ("counts", "text"),
    [
        # 1,000,000 × 3.00 = 3000000.00 per 1M → 3.00 (the prices' two places stay)
        (tokens(1_000_000, 0, 0, 0, 0), "3.00"),
        # 1 × 3.00 = 3.00 per 1M → 0.00000300 needs 8 places; its zeros go: 0.000003
        (tokens(1, 0, 0, 0, 0), "0.000003"),
        # 1000 × 3.00 + 500 × 15.00 = 10500.00 per 1M → 0.01050000 → 0.0105
        (tokens(1000, 0, 0, 500, 0), "0.0105"),
        # no tokens: 0.00 per 1M → 0.00
        (tokens(0, 0, 0, 0, 0), "0.00"),
    ],
)
def test_a_cost_keeps_the_decimal_places_exact_arithmetic_gives(
    counts: TokenCounts, text: str
) -> None:
    price = NewModelPrice("m", "m", "standard", D("3.00"), D("15.00")).with_defaults()
    assert str(event_cost(counts, price)) == text


_EXACT = Context(prec=1000, traps=[Inexact])


def _decimal_cost(counts: TokenCounts, rate: Rate) -> Decimal:
    """The rule written out in Decimal arithmetic (what rate_cost computed until it summed
    integers): each class's own tokens × its price, summed from 0, over 10^6, plus the
    price per request."""
    own = {
        "input": counts.input_tokens - counts.cached_input_tokens - counts.cache_write_tokens,
        "cache_read": counts.cached_input_tokens,
        "cache_write": counts.cache_write_tokens,
        "output": counts.output_tokens - counts.reasoning_tokens,
        "reasoning": counts.reasoning_tokens,
    }
    per_million = Decimal(0)
    for name, count in own.items():
        per_million = _EXACT.add(per_million, _EXACT.multiply(Decimal(count), getattr(rate, name)))
    return _EXACT.add(_EXACT.divide(per_million, Decimal(10**6)), rate.per_request)


# Prices as a catalog holds them (up to 12 integer digits and 30 decimal places, trailing
# zeros kept), and a few with a positive exponent, which only Decimal arithmetic makes.
unit_prices = st.one_of(
    st.builds(
        lambda n, places: Decimal(n).scaleb(-places), st.integers(0, 10**42), st.integers(0, 30)
    ),
    st.sampled_from([D(0), D("0.000"), D("1E+1"), D("5E+3"), D("3.00"), D("0.1")]),
)
counts = st.integers(0, 10**12)


@given(
    st.tuples(*[unit_prices] * 6),
    st.tuples(counts, counts, counts, counts, counts),
)
def test_a_cost_is_the_decimal_that_exact_decimal_arithmetic_gives(
    prices: tuple[Decimal, ...], numbers: tuple[int, ...]
) -> None:
    cached, written, plain_in, reasoning, plain_out = numbers
    counts = tokens(cached + written + plain_in, cached, written, reasoning + plain_out, reasoning)
    rate = Rate(None, *prices)
    expected = _decimal_cost(counts, rate)
    cost = rate_cost(counts, rate)
    assert cost.as_tuple() == expected.as_tuple()
    assert str(cost) == str(expected)
