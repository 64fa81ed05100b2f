"""The price of one event for its customer, against amounts worked out by hand.

gemini-3.0-flash costs 0.10 / 0.40 USD per 1M input / output tokens in the AIMS catalog,
so the usual call of 1,000 input and 500 output tokens costs
1000 × 0.10/M + 500 × 0.40/M = 0.0001 + 0.0002 = 0.0003 USD.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from service.catalog.service import bundled_catalog
from service.pricing.models import ModelPrice, NewModelPrice
from service.pricing.plans import PlanVersion
from service.pricing.price import price_estimate, price_of
from service.tokens import TokenCounts

D = Decimal
FLASH = "google/gemini-3.0-flash"
SONNET = "anthropic/claude-sonnet-4.5"
CALL = TokenCounts(input_tokens=1000, output_tokens=500)
CALL_COST = D("0.0003")


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
    assert price_of(CALL, CALL_COST, CALL_COST, plan(), FLASH) == D("0.000375")


def test_actual_basis_marks_up_what_the_provider_reported() -> None:
    # The provider reported 0.0009804 for a call the catalog prices at 0.0003:
    # 0.0009804 × 1.10 = 0.00107844; the catalog cost plays no part.
    price = price_of(CALL, CALL_COST, D("0.0009804"), plan("actual", "0.10"), FLASH)
    assert price == D("0.00107844")


def test_per_request_usd_is_added_to_each_event_priced_by_markup() -> None:
    # 0.0003 × 1.25 + 0.001 = 0.000375 + 0.001 = 0.001375
    version = plan(per_request_usd=D("0.001"))
    assert price_of(CALL, CALL_COST, CALL_COST, version, FLASH) == D("0.001375")


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
    assert price_of(tokens, D("0.0501"), D("0.0501"), version, SONNET) == D("0.02424")


def test_the_other_models_of_a_plan_with_own_prices_are_marked_up() -> None:
    version = plan(models={SONNET: OWN_SONNET})
    assert price_of(CALL, CALL_COST, CALL_COST, version, FLASH) == D("0.000375")


@pytest.mark.parametrize(
    ("basis", "cost", "actual"),
    [("catalog", None, D("0.0009804")), ("actual", CALL_COST, None)],
)
def test_an_unknown_basis_cost_leaves_the_price_unknown(
    basis: str, cost: Decimal | None, actual: Decimal | None
) -> None:
    assert price_of(CALL, cost, actual, plan(basis), FLASH) is None


def test_an_unpriced_event_of_a_model_with_its_own_price_is_priced_by_the_plan() -> None:
    # The catalog could not price it, the plan can: its own price needs no basis.
    # 1000 × 2.40/M + 500 × 12/M = 0.0024 + 0.006 = 0.0084
    version = plan(models={SONNET: OWN_SONNET})
    assert price_of(CALL, None, None, version, SONNET) == D("0.0084")


def test_without_a_plan_the_price_is_the_catalog_cost() -> None:
    assert price_of(CALL, CALL_COST, D("0.0009804"), None, FLASH) == CALL_COST
    assert price_of(CALL, None, D("0.0009804"), None, FLASH) is None


def test_a_zero_markup_is_the_basis_cost_exactly() -> None:
    assert price_of(CALL, CALL_COST, CALL_COST, plan(markup="0"), FLASH) == CALL_COST


def test_prices_keep_every_digit() -> None:
    # 0.000000000000000000000000000001 × (1 + 0.123456789) = 1.123456789e-30, exactly
    tiny = D("0.000000000000000000000000000001")
    price = price_of(CALL, tiny, tiny, plan(markup="0.123456789"), FLASH)
    assert price == D("0.000000000000000000000000000001123456789")


def test_a_price_budget_bounds_an_estimate_of_cents_under_own_prices() -> None:
    # The plan's own Sonnet against the catalog's lowest Sonnet rates (3.00 / 15.00 / 0.30 /
    # 3.75, reasoning at output): every ratio is 0.8 (2.40/3.00, 12/15, 0.24/0.30, 3/3.75),
    # so an estimate of 0.3 USD is bounded at 0.24, to 30 places. At Python's default 28
    # digits the 30 places of 0.24 raised InvalidOperation (a 500 on check and reserve).
    catalog_sonnet = bundled_catalog().quote(SONNET, datetime(2026, 11, 20, tzinfo=UTC)).price
    assert catalog_sonnet is not None
    own = plan(models={SONNET: OWN_SONNET})
    assert price_estimate(D("0.3"), own, catalog_sonnet) == D("0.24")
    assert price_estimate(D("12345.678"), own, catalog_sonnet) == D("9876.5424")
