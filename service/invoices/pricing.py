"""How an invoice line's amount is made from its usage when a rate plan priced it: the unit
prices that explain it and the plan's terms stated on the line. Pure, no I/O.

A plan's own price for the model replaces the catalog's unit prices on the line (the
amount is then usage × those prices, as a catalog cost is), but on a line the catalog
prices at a long-context rate when the own price has no long-context entries: those are
the catalog's (``pricing.price.own_rate``). Otherwise the line keeps the
catalog's unit prices and states the markup: amount = basis cost × (1 + markup) +
per-request fee × calls, the basis cost being the catalog cost of the usage (recomputable
from the line) or, on an ``actual`` plan, the providers' reported cost, stated on the line.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from service.invoices.models import DraftLine
from service.money import exact
from service.pricing.models import PRICE_CLASSES, Rate
from service.pricing.plans import ACTUAL_BASIS, PlanVersion
from service.pricing.price import own_rate
from service.wire import money_text

OWN_PRICES = "plan_prices"
MARKUP = "markup"
REPRICING = "repricing"


def percent_text(markup: Decimal) -> str:
    """``0.25`` → ``25``, ``0.125`` → ``12.5``; every digit of the markup (the default
    28-digit context would round a markup of 29 decimal places, so the terms stated would
    not be the ones billed)."""
    with exact():
        value = (markup * 100).normalize()
    return format(value, "f")


def priced_by_plan(line: DraftLine, plan: PlanVersion | None) -> DraftLine:
    """``line`` with the unit prices and terms of the plan version that priced it."""
    if plan is None:
        return line
    terms = {"plan_id": plan.plan_id, "plan_version": str(plan.id)}
    if line.events == 0 and not line.cost_usd and line.amount_usd != 0:
        # Only re-pricing adjustments (a change of price, no usage, no cost: zero, or
        # unknown for events no catalog version prices): the amount is the change the
        # plan version made to usage billed before.
        return dataclasses.replace(line, pricing={**terms, "method": REPRICING})
    own = plan.models.get(line.model)
    if own is not None:
        # The plan's own rate, which its thresholds set (``queries._WITH_PLAN_RATE``), or
        # the catalog's long rate the line is at (``pricing.price.own_rate``): the line's
        # rate is then the one its unit prices are at.
        rate = own_rate(own, own.rate_from(line.plan_long_context_from), _catalog_rate(line))
        prices: dict[str, Decimal | None] = {**rate.unit_prices()}
        return dataclasses.replace(
            line,
            long_context_from=rate.long_context_from,
            unit_prices=prices,
            pricing={**terms, "method": OWN_PRICES},
        )
    basis = line.actual_cost_usd if plan.basis == ACTUAL_BASIS else line.cost_usd
    # A line's basis is known: an unknown basis is an unknown price, whose entries wait
    # (``queries._UNINVOICED_ENTRY_IDS``) or net to no line. The fallback keeps the shape.
    return dataclasses.replace(
        line,
        pricing={
            **terms,
            "method": MARKUP,
            "basis": plan.basis,
            "basis_usd": money_text(basis or Decimal(0)),
            "markup": money_text(plan.markup),
            "per_request_usd": money_text(plan.per_request_usd),
        },
    )


def terms_text(pricing: dict[str, str]) -> list[str]:
    """The plan's terms as the forms state them: ``catalog price + 25 %``, ``plus 0.01 per
    call``; nothing for a plan's own prices (the unit prices shown are the plan's)."""
    plan = f"plan {pricing['plan_id']} version {pricing['plan_version']}"
    if pricing["method"] == REPRICING:
        return [f"change of price under {plan} (re-pricing of usage billed before)"]
    if pricing["method"] == OWN_PRICES:
        return [f"{plan} prices"]
    percent = percent_text(Decimal(pricing["markup"]))
    if pricing["basis"] == ACTUAL_BASIS:
        texts = [f"providers' cost {pricing['basis_usd']} USD + {percent} %"]
    else:
        texts = [f"catalog price + {percent} %"]
    if Decimal(pricing["per_request_usd"]):
        texts.append(f"plus {pricing['per_request_usd']} USD per call")
    return texts


def _catalog_rate(line: DraftLine) -> Rate | None:
    """The catalog's rate of ``line`` (its entries' unit prices; a line holds one rate),
    None when no catalog version prices its entries."""
    prices = {k: line.unit_prices.get(k) for k in PRICE_CLASSES}
    known = {k: v for k, v in prices.items() if v is not None}
    if len(known) < len(prices):
        return None
    return Rate(long_context_from=line.long_context_from, **known)
