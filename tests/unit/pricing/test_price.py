"""The price of one event for its customer, against amounts worked out by hand.

gemini-3.0-flash costs 0.10 / 0.40 USD per 1M input / output tokens in the AIMS catalog,
so the usual call of 1,000 input and 500 output tokens costs
1000 × 0.10/M + 500 × 0.40/M = 0.0001 + 0.0002 = 0.0003 USD.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from service.catalog.service import bundled_catalog
from service.pricing.models import ModelPrice, NewLongContextPrice, NewModelPrice, Rate
from service.pricing.plans import PlanVersion
from service.pricing.price import price_estimate, price_of
from service.tokens import TokenCounts

D = Decimal
FLASH = "google/gemini-3.0-flash"
SONNET = "anthropic/claude-sonnet-4.5"
CALL = TokenCounts(input_tokens=1000, output_tokens=500)
CALL_COST = D("0.0003")
NOVEMBER = datetime(2026, 11, 20, tzinfo=UTC)


def catalog_price(model: str) -> ModelPrice:
    price = bundled_catalog().quote(model, NOVEMBER).price
    assert price is not None
    return price


def rate_of(model: str, tokens: TokenCounts) -> Rate:
    """The rate the AIMS catalog prices ``tokens`` of ``model`` at."""
    return catalog_price(model).rate_for(tokens.input_tokens)


def plan(basis: str = "catalog", markup: str = "0.25", **fields: Any) -> PlanVersion:
    return PlanVersion(
        id=7,
        plan_id="p",
        effective_from=datetime(2026, 11, 1, tzinfo=UTC),
        created_at=None,
        basis=basis,
        markup=D(markup),
        **fields,
    )


# A plan's own Sonnet 4.5 price: 2.40 input, 12.00 output, 0.24 cache read, 3.00 cache
# write; reasoning left out, so it is the output price (the catalog's default rule).
OWN_SONNET: ModelPrice = NewModelPrice(
    model_id=SONNET,
    name="Claude Sonnet 4.5",
    tier="standard",
    input=D("2.40"),
    output=D("12.00"),
    cache_read=D("0.24"),
    cache_write=D("3.00"),
).with_defaults()


def test_a_25_percent_markup_on_the_catalog_cost() -> None:
    # 0.0003 × 1.25 = 0.000375
    assert price_of(CALL, CALL_COST, CALL_COST, plan(), FLASH, rate_of(FLASH, CALL)) == D(
        "0.000375"
    )


def test_actual_basis_marks_up_what_the_provider_reported() -> None:
    # The provider reported 0.0009804 for a call the catalog prices at 0.0003:
    # 0.0009804 × 1.10 = 0.00107844; the catalog cost plays no part.
    price = price_of(
        CALL, CALL_COST, D("0.0009804"), plan("actual", "0.10"), FLASH, rate_of(FLASH, CALL)
    )
    assert price == D("0.00107844")


def test_per_request_usd_is_added_to_each_event_priced_by_markup() -> None:
    # 0.0003 × 1.25 + 0.001 = 0.000375 + 0.001 = 0.001375
    version = plan(per_request_usd=D("0.001"))
    assert price_of(CALL, CALL_COST, CALL_COST, version, FLASH, rate_of(FLASH, CALL)) == D(
        "0.001375"
    )


def test_a_model_with_its_own_price_is_priced_by_the_catalog_formula_cache_included() -> None:
    # 10,000 input tokens of which 6,000 cached reads and 2,000 cache writes; 1,000 output of
    # which 200 reasoning. Per 1M tokens:
    #   plain input  2,000 × 2.40 =  4,800
    #   cache read   6,000 × 0.24 =  1,440
    #   cache write  2,000 × 3.00 =  6,000
    #   plain output   800 × 12   =  9,600
    #   reasoning      200 × 12   =  2,400   (defaults to the output price)
    #                               24,240 → 0.02424 USD
    # Neither the markup nor per_request_usd applies: the plan set this price itself.
    tokens = TokenCounts(
        input_tokens=10_000,
        cached_input_tokens=6_000,
        cache_write_tokens=2_000,
        output_tokens=1_000,
        reasoning_tokens=200,
    )
    version = plan(markup="0.50", per_request_usd=D("0.01"), models={SONNET: OWN_SONNET})
    assert price_of(
        tokens, D("0.0501"), D("0.0501"), version, SONNET, rate_of(SONNET, tokens)
    ) == D("0.02424")


def test_the_other_models_of_a_plan_with_own_prices_are_marked_up() -> None:
    version = plan(models={SONNET: OWN_SONNET})
    assert price_of(CALL, CALL_COST, CALL_COST, version, FLASH, rate_of(FLASH, CALL)) == D(
        "0.000375"
    )


@pytest.mark.parametrize(
    ("basis", "cost", "actual"),
    [("catalog", None, D("0.0009804")), ("actual", CALL_COST, None)],
)
def test_an_unknown_basis_cost_leaves_the_price_unknown(
    basis: str, cost: Decimal | None, actual: Decimal | None
) -> None:
    assert price_of(CALL, cost, actual, plan(basis), FLASH, rate_of(FLASH, CALL)) is None


def test_an_unpriced_event_of_a_model_with_its_own_price_is_priced_by_the_plan() -> None:
    # The catalog could not price it, the plan can: its own price needs no basis.
    # 1000 × 2.40/M + 500 × 12/M = 0.0024 + 0.006 = 0.0084
    version = plan(models={SONNET: OWN_SONNET})
    assert price_of(CALL, None, None, version, SONNET, rate_of(SONNET, CALL)) == D("0.0084")


def test_without_a_plan_the_price_is_the_catalog_cost() -> None:
    assert price_of(CALL, CALL_COST, D("0.0009804"), None, FLASH, rate_of(FLASH, CALL)) == CALL_COST
    assert price_of(CALL, None, D("0.0009804"), None, FLASH, None) is None


def test_a_zero_markup_is_the_basis_cost_exactly() -> None:
    assert (
        price_of(CALL, CALL_COST, CALL_COST, plan(markup="0"), FLASH, rate_of(FLASH, CALL))
        == CALL_COST
    )


def test_prices_keep_every_digit() -> None:
    # 0.000000000000000000000000000001 × (1 + 0.123456789) = 1.123456789e-30, exactly
    tiny = D("0.000000000000000000000000000001")
    price = price_of(CALL, tiny, tiny, plan(markup="0.123456789"), FLASH, rate_of(FLASH, CALL))
    assert price == D("0.000000000000000000000000000001123456789")


def test_a_price_budget_bounds_an_estimate_of_cents_under_own_prices() -> None:
    # The plan's own Sonnet has no long-context entries, so a long call is charged the
    # catalog's long rates (6.00 / 22.50 / 0.60 / 7.50, reasoning at output). Against the
    # catalog's lowest Sonnet rates (3.00 / 15.00 / 0.30 / 3.75) the largest ratio is 2
    # (6/3, 0.60/0.30, 7.50/3.75; output 1.5), so an estimate of 0.3 USD is bounded at
    # 0.6, to 30 places. At Python's default 28 digits the 30 places of such a bound
    # raised InvalidOperation (a 500 on check and reserve).
    own = plan(models={SONNET: OWN_SONNET})
    assert price_estimate(D("0.3"), own, catalog_price(SONNET)) == D("0.6")
    assert price_estimate(D("12345.678"), own, catalog_price(SONNET)) == D("24691.356")


def test_own_long_context_entries_bound_an_estimate_by_their_own_rates() -> None:
    # With its own long rates (4.80 / 24 from 200,001), the largest ratio is 24/15 = 1.6
    # (input 4.80/3 = 1.6, cache read 0.48/0.30 = 1.6, cache write 6/3.75 = 1.6).
    long_own = dataclasses.replace(
        OWN_SONNET,
        long_context=(
            NewLongContextPrice(
                min_input_tokens=200_001,
                input=D("4.80"),
                output=D("24"),
                cache_read=D("0.48"),
                cache_write=D("6"),
            ).with_defaults(),
        ),
    )
    own = plan(models={SONNET: long_own})
    assert price_estimate(D("0.3"), own, catalog_price(SONNET)) == D("0.48")


# A long Sonnet call: 250,000 input tokens (the catalog's long rate from 200,001) and
# 1,000 output tokens.
LONG_CALL = TokenCounts(input_tokens=250_000, output_tokens=1_000)


def test_an_own_price_without_long_context_charges_a_long_call_the_catalog_s_long_rate() -> None:
    # SPEC §11: the catalog formula, long context included when the catalog entry has it.
    # 250,000 × 6.00 + 1,000 × 22.50 = 1,522,500 per 1M = 1.5225, plus the own price's
    # per_request 0.002 (per_request stays the model's: the plan's): 1.5245. At the own
    # base prices it was 250,000 × 2.40 + 1,000 × 12 = 0.612, below its cost.
    own = dataclasses.replace(OWN_SONNET, per_request=D("0.002"))
    version = plan(models={SONNET: own})
    cost = D("1.5225")
    assert price_of(LONG_CALL, cost, cost, version, SONNET, rate_of(SONNET, LONG_CALL)) == D(
        "1.5245"
    )
    # Below the threshold its own base prices: 200,000 × 2.40 + 1,000 × 12 = 492,000 per
    # 1M = 0.492, + 0.002.
    short = TokenCounts(input_tokens=200_000, output_tokens=1_000)
    assert price_of(short, D("0.615"), D("0.615"), version, SONNET, rate_of(SONNET, short)) == D(
        "0.494"
    )
    # An unpriced event (no catalog rate) is priced at the own base prices.
    assert price_of(LONG_CALL, None, None, version, SONNET, None) == D("0.614")
