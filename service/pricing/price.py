"""The price of one event for its customer: f(cost, rate plan version), pure and exact.

When the plan version has its own price for the event's model, that price with the
catalog's formula, long context included (``own_rate``); otherwise the basis cost × (1 + markup)
+ ``per_request_usd``. An unknown basis cost leaves the price unknown too (``None``):
unpriced is never silently zero, for the customer either. Without a plan version (no
customer, no plan, no ``LUC_DEFAULT_PLAN``) the price is the catalog cost.

Stub answers are the caller's to exclude: this rule prices what it is given.
"""

from __future__ import annotations

import dataclasses
import decimal
from decimal import Decimal

from service.money import EXACT
from service.pricing.catalog import STUB_PROVIDER
from service.pricing.cost import rate_cost
from service.pricing.models import TOKEN_PRICES, ModelPrice, Rate
from service.pricing.plans import ACTUAL_BASIS, CATALOG_BASIS, PlanVersion
from service.tokens import TokenCounts


def price_of(
    tokens: TokenCounts,
    cost_usd: Decimal | None,
    actual_cost_usd: Decimal | None,
    plan: PlanVersion | None,
    model_id: str,
    catalog_rate: Rate | None,
) -> Decimal | None:
    """USD the customer pays for one event of ``model_id`` (a catalog id, aliases already
    resolved) with these ``tokens``, under ``plan`` (the version in force at the event);
    ``catalog_rate``: the rate the catalog priced the event at (None: unpriced)."""
    if plan is None:
        return cost_usd
    own = plan.models.get(model_id)
    if own is not None:
        return rate_cost(tokens, own_rate(own, own.rate_for(tokens.input_tokens), catalog_rate))
    if plan.basis == CATALOG_BASIS:
        basis = cost_usd
    elif plan.basis == ACTUAL_BASIS:
        basis = actual_cost_usd
    else:
        raise ValueError(f"plan version {plan.id} has an unknown basis {plan.basis!r}")
    if basis is None:
        return None
    # Inexact is trapped (service.money): a price is exact or pricing fails loudly.
    marked_up = EXACT.multiply(basis, EXACT.add(Decimal(1), plan.markup))
    return EXACT.add(marked_up, plan.per_request_usd)


def own_rate(own: ModelPrice, rate: Rate, catalog_rate: Rate | None) -> Rate:
    """The rate a plan's own price for a model charges a call that its own entries price at
    ``rate`` and the catalog at ``catalog_rate``: SPEC §11's "the catalog formula, long
    context included when the catalog entry has it". An own price with long-context
    entries of its own prices long calls by them (``rate``); one without them charges a
    call the catalog prices at a long-context rate that rate's unit prices, with its own
    price per request (SPEC §3: ``per_request`` stays the model's), rather than its base
    prices: a discount on Claude Sonnet 4.5's 3 USD sold its 6 USD long calls below cost."""
    if own.long_context or catalog_rate is None or catalog_rate.long_context_from is None:
        return rate
    return dataclasses.replace(catalog_rate, per_request=own.per_request)


def customer_price(
    tokens: TokenCounts,
    cost_usd: Decimal | None,
    actual_cost_usd: Decimal | None,
    plan: PlanVersion | None,
    model_id: str,
    provider: str,
    catalog_rate: Rate | None,
) -> Decimal | None:
    """``price_of`` for a recorded event: a stub answer (no LLM called, never billed) costs
    its customer what it cost, nothing; no plan's per-request fee or own price applies."""
    if provider == STUB_PROVIDER:
        return cost_usd
    return price_of(tokens, cost_usd, actual_cost_usd, plan, model_id, catalog_rate)


def margin(price_usd: Decimal | None, actual_cost_usd: Decimal | None) -> Decimal | None:
    """``price_usd − actual_cost_usd`` (SPEC §11), exactly; None unless both are known."""
    if price_usd is None or actual_cost_usd is None:
        return None
    return EXACT.subtract(price_usd, actual_cost_usd)


# A bound is rounded up, never down, to the places a reservation holds.
_BOUND_PLACES = Decimal(1).scaleb(-30)
_UPWARDS = decimal.Context(prec=100, rounding=decimal.ROUND_CEILING)


def price_estimate(
    cost_estimate: Decimal, plan: PlanVersion | None, catalog_price: ModelPrice | None
) -> Decimal:
    """What a call estimated at ``cost_estimate`` (at the catalog's list price, before the
    call) may cost its customer under ``plan``: what a price budget holds for it.

    The markup rule applied to the estimate (either basis: before the call the list price
    stands for the provider's cost too). For a model the plan prices itself, a bound: the
    estimate times the largest ratio, over the token classes, of the plan's highest unit
    price to the catalog's lowest (long-context rates included), plus the plan's own price
    per request; a cost is a sum of tokens times unit prices, so the price cannot exceed
    it. When a catalog unit price is zero where the plan's is not, no ratio bounds it and
    the markup rule stands. No plan: the estimate itself (the price is the cost).
    """
    if plan is None:
        return cost_estimate
    own = plan.models.get(catalog_price.model_id) if catalog_price is not None else None
    marked_up = EXACT.add(
        EXACT.multiply(cost_estimate, EXACT.add(Decimal(1), plan.markup)), plan.per_request_usd
    )
    if own is None or catalog_price is None:
        return marked_up
    # Without long-context entries of its own, it charges the catalog's long rates.
    charged = _rates(own) if own.long_context else [*_rates(own), *_rates(catalog_price)[1:]]
    ratios = []
    for name in TOKEN_PRICES:
        highest = max(getattr(rate, name) for rate in charged)
        lowest = min(getattr(rate, name) for rate in _rates(catalog_price))
        if lowest == 0:
            if highest > 0:
                return marked_up
            continue
        ratios.append(_UPWARDS.divide(highest, lowest))
    scaled = _UPWARDS.multiply(cost_estimate, max(ratios, default=Decimal(0)))
    bound = EXACT.add(
        # In a context wide enough for 30 places: under Python's default 28 digits, any
        # bound of 0.01 USD or more raised InvalidOperation.
        scaled.quantize(_BOUND_PLACES, rounding=decimal.ROUND_CEILING, context=_UPWARDS),
        own.per_request,
    )
    return bound


def _rates(price: ModelPrice) -> list[Rate]:
    """Every rate of a model: its base prices and each long-context entry's."""
    return [
        price.rate_from(None),
        *(price.rate_from(lc.min_input_tokens) for lc in price.long_context),
    ]
