"""A rate plan's own price for a model is a catalog model entry without the model's
identity: every price a catalog entry takes (and, with it, anything a catalog entry gains),
with the same types and the same required fields, in and out."""

from __future__ import annotations

from typing import Any

import msgspec

from service.api.schemas.catalog import ModelIn, ModelOut
from service.api.schemas.plans import PlanPriceIn, PlanPriceOut

# What a catalog entry says about the model rather than its price.
IDENTITY = {"id", "name", "tier", "context_tokens"}


def _shape(struct: type[msgspec.Struct]) -> dict[str, tuple[Any, bool]]:
    return {
        f.name: (f.type, f.required)
        for f in msgspec.structs.fields(struct)
        if f.name not in IDENTITY
    }


def test_a_plan_price_entry_takes_what_a_catalog_entry_takes() -> None:
    assert _shape(PlanPriceIn) == _shape(ModelIn)


def test_a_plan_price_entry_answers_what_a_catalog_entry_answers() -> None:
    assert _shape(PlanPriceOut) == _shape(ModelOut)
