"""The pricing rule of SPEC §3, checked against costs worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.pricing.cost import event_cost
from service.pricing.models import ModelPrice, NewModelPrice
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
