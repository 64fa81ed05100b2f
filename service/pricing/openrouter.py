"""OpenRouter's ``GET /api/v1/models`` payload → catalog model entries, exactly.

OpenRouter prices are decimal strings in USD per token (``request`` per call); LUC prices
are per 1M tokens, so each is multiplied by 10⁶ as a Decimal — no float on the way.
Mapping: ``prompt`` → input, ``completion`` → output, ``input_cache_read`` → cache_read,
``input_cache_write`` → cache_write, ``internal_reasoning`` → reasoning, ``request`` →
per_request. ``"-1"`` (dynamic pricing) or a missing ``prompt``/``completion`` skips the
model with a reason. A ``"0"`` ``internal_reasoning`` means "not priced separately":
OpenRouter bills reasoning as completion tokens, so reasoning falls back to the output
price rather than becoming free.

Tier rule for models the catalog does not know yet, on the output price per 1M tokens:
≥ $20 premium, ≥ $8 standard, ≥ $0.30 fast, otherwise economy. Known models keep the
tier (and display name) the catalog already gives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

from service.pricing.models import ModelPrice, NewModelPrice
from service.wire import parse_money

DYNAMIC_PRICE = "-1"
# Moving the decimal point is exact whatever the number of digits in the source string.
_WIDE = Context(prec=200)

TIER_FLOORS = (
    (Decimal(20), "premium"),
    (Decimal(8), "standard"),
    (Decimal("0.30"), "fast"),
)


class NotOpenRouterShapeError(ValueError):
    """The payload is not ``{"data": [model, ...]}`` as OpenRouter serves it."""


@dataclass(frozen=True, slots=True)
class SkippedModel:
    model_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    models: list[NewModelPrice]
    skipped: list[SkippedModel]


def per_million(per_token: Decimal) -> Decimal:
    """USD per token → USD per 1M tokens, exactly."""
    value = per_token.scaleb(6, context=_WIDE)
    # "0.00015" scales to 1.5E+2; a positive exponent would print in scientific notation
    # (the import diff shows these values), so bring it back to a plain integer, exactly.
    if value == value.to_integral_value():
        value = value.quantize(Decimal(1), context=_WIDE)
    return value


def tier_for(output_per_million: Decimal) -> str:
    for floor, tier in TIER_FLOORS:
        if output_per_million >= floor:
            return tier
    return "economy"


def _price(pricing: dict[str, Any], key: str) -> Decimal | None:
    """Per-1M price of one key; None when absent. Raises ValueError for bad values."""
    raw = pricing.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(f"pricing.{key} is {raw!r}, not a decimal string")
    if raw.strip() == DYNAMIC_PRICE:
        raise ValueError(f"pricing.{key} is dynamic (-1)")
    # SPEC §2's money rule, as for any price LUC takes (WireValueError is a ValueError).
    return parse_money(f"pricing.{key}", raw)


def parse_models(payload: Any, known: dict[str, ModelPrice]) -> ImportResult:
    """Model entries from an OpenRouter ``/models`` payload; ``known`` gives tiers and names."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise NotOpenRouterShapeError(
            'expected OpenRouter\'s /api/v1/models shape: {"data": [{"id": ..., "pricing": {...}}]}'
        )
    models: list[NewModelPrice] = []
    skipped: list[SkippedModel] = []
    seen: set[str] = set()
    for index, entry in enumerate(payload["data"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            skipped.append(SkippedModel(f"data[{index}]", "entry has no string id"))
            continue
        model_id = entry["id"]
        if model_id in seen:
            skipped.append(SkippedModel(model_id, "listed twice; the first entry is kept"))
            continue
        pricing = entry.get("pricing")
        if not isinstance(pricing, dict):
            skipped.append(SkippedModel(model_id, "no pricing object"))
            continue
        try:
            prompt = _price(pricing, "prompt")
            completion = _price(pricing, "completion")
            if prompt is None or completion is None:
                raise ValueError("pricing.prompt and pricing.completion are both required")
            cache_read = _price(pricing, "input_cache_read")
            cache_write = _price(pricing, "input_cache_write")
            reasoning = _price(pricing, "internal_reasoning")
            per_request = _price(pricing, "request")
        except ValueError as exc:
            skipped.append(SkippedModel(model_id, str(exc)))
            continue
        seen.add(model_id)
        output = per_million(completion)
        previous = known.get(model_id)
        context = entry.get("context_length")
        models.append(
            NewModelPrice(
                model_id=model_id,
                name=previous.name if previous else str(entry.get("name") or model_id),
                tier=previous.tier if previous else tier_for(output),
                input=per_million(prompt),
                output=output,
                cache_read=None if cache_read is None else per_million(cache_read),
                cache_write=None if cache_write is None else per_million(cache_write),
                reasoning=None if not reasoning else per_million(reasoning),
                per_request=per_request,
                context_tokens=context if isinstance(context, int) and context > 0 else None,
            )
        )
    return ImportResult(models=models, skipped=skipped)
