"""The price of one event for its customer: f(cost, rate plan version), pure and exact.

When the plan version has its own price for the event's model, that price with the
catalog's formula (``pricing.cost.event_cost``); otherwise the basis cost × (1 + markup)
+ ``per_request_usd``. An unknown basis cost leaves the price unknown too (``None``):
unpriced is never silently zero, for the customer either. Without a plan version (no
customer, no plan, no ``LUC_DEFAULT_PLAN``) the price is the catalog cost.

Stub answers are the caller's to exclude: this rule prices what it is given.
"""

from __future__ import annotations

from decimal import Decimal

from service.money import EXACT
from service.pricing.cost import event_cost
from service.pricing.plans import ACTUAL_BASIS, CATALOG_BASIS, PlanVersion
from service.tokens import TokenCounts


def price_of(
    tokens: TokenCounts,
    cost_usd: Decimal | None,
    actual_cost_usd: Decimal | None,
    plan: PlanVersion | None,
    model_id: str,
) -> Decimal | None:
    """USD the customer pays for one event of ``model_id`` (a catalog id, aliases already
    resolved) with these ``tokens``, under ``plan`` (the version in force at the event)."""
    if plan is None:
        return cost_usd
    own = plan.models.get(model_id)
    if own is not None:
        return event_cost(tokens, own)
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
