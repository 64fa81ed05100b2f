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

``pricing.overrides`` are conditional prices. One whose only condition is
``min_prompt_tokens`` is long-context pricing: it applies when a request's prompt tokens
are strictly greater than the threshold, so it becomes the ``long_context`` entry from
``min_prompt_tokens + 1`` (LUC's threshold is inclusive). OpenRouter's keys left out of an
override inherit the base price (never another override's: a lower threshold listed after
a higher one took its explicit prices, by list order); overrides of one threshold are one
entry, the later winning per key. The importer writes each entry out, every price
explicit, so it means the same in LUC; a ``"0"`` ``internal_reasoning`` in an override is
"billed as completion", that entry's output price. An override with any other condition
(a UTC time window) is skipped, and the dry run says why: LUC prices an event by its
tokens, never by the time of day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from service.pricing.models import ModelPrice, NewLongContextPrice, NewModelPrice
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
class SkippedOverride:
    """A conditional price of an imported model that LUC cannot hold; the model is
    imported without it."""

    model_id: str
    index: int
    """Its place in ``pricing.overrides``."""
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    models: list[NewModelPrice]
    skipped: list[SkippedModel]
    skipped_overrides: list[SkippedOverride] = field(default_factory=list)


# An override's price keys → LUC's prices; others (audio, the 1-hour cache write) price
# nothing LUC meters, as in the base pricing.
_OVERRIDE_PRICES = (
    ("prompt", "input"),
    ("completion", "output"),
    ("input_cache_read", "cache_read"),
    ("input_cache_write", "cache_write"),
    ("internal_reasoning", "reasoning"),
)
_THRESHOLD = "min_prompt_tokens"
_MOST_TOKENS = 10**12
"""SPEC §2: an event carries at most 10^12 tokens of a class."""
_TIME_WINDOW = ("utc_start", "utc_end")
_PRICE_KEYS = frozenset(
    {
        "prompt",
        "completion",
        "request",
        "image",
        "image_token",
        "image_output",
        "audio",
        "input_audio_cache",
        "web_search",
        "internal_reasoning",
        "input_cache_read",
        "input_cache_write",
        "input_cache_write_1h",
        "discount",
    }
)
"""OpenRouter's pricing keys: in an override, prices, not conditions."""


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


def _override_threshold(override: Any, base_keys: set[str]) -> int | str:
    """An override's ``min_prompt_tokens`` when it is its only condition, else why not.
    ``base_keys`` are the model's own pricing keys: in an override they are prices too."""
    if not isinstance(override, dict):
        return "not an object"
    window = [key for key in _TIME_WINDOW if key in override]
    if window:
        return (
            f"its condition {'/'.join(window)} is a UTC time window: LUC prices an event by "
            "its tokens, never by the time of day"
        )
    # Any other key that is no price is a condition LUC cannot hold (a max_prompt_tokens
    # would bound the entry, which a long_context entry cannot): taking the override
    # without it would price requests it does not apply to.
    others = sorted(k for k in override if k != _THRESHOLD and k not in _PRICE_KEYS | base_keys)
    if others:
        return (
            f"its condition {'/'.join(others)} is not min_prompt_tokens alone: LUC's "
            "long-context prices depend on the input size only"
        )
    threshold = override.get(_THRESHOLD)
    if threshold is None:
        return f"no {_THRESHOLD} condition: nothing says when it applies"
    # A JSON number: 200000 or 200000.0; bool is an int in Python, and no count.
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        return f"{_THRESHOLD} is {threshold!r}, not a number"
    if threshold < 0 or threshold != int(threshold):
        return f"{_THRESHOLD} is {threshold!r}, not a whole count of tokens"
    if threshold >= _MOST_TOKENS:
        return f"{_THRESHOLD} is {threshold!r}: no event carries that many input tokens"
    return int(threshold)


def _long_context(
    model_id: str, pricing: dict[str, Any], base: dict[str, Decimal | None]
) -> tuple[tuple[NewLongContextPrice, ...], list[SkippedOverride]]:
    """The model's long-context entries from ``pricing.overrides``, every price written
    out (see the module docstring); the overrides that cannot be one, with why."""
    overrides = pricing.get("overrides")
    if overrides is None:
        return (), []
    if not isinstance(overrides, list):
        return (), [SkippedOverride(model_id, 0, "pricing.overrides is not a list")]
    skipped: list[SkippedOverride] = []
    tiers: list[tuple[int, dict[str, Any]]] = []  # (threshold, override), in list order
    for index, override in enumerate(overrides):
        threshold = _override_threshold(override, set(pricing) - {"overrides"})
        if isinstance(threshold, str):
            skipped.append(SkippedOverride(model_id, index, threshold))
            continue
        try:
            prices = {luc: _price(override, key) for key, luc in _OVERRIDE_PRICES}
        except ValueError as exc:
            skipped.append(SkippedOverride(model_id, index, str(exc)))
            continue
        own: dict[str, Decimal | None] = {
            k: per_million(v) for k, v in prices.items() if v is not None
        }
        # A "0" internal_reasoning is "billed as completion", as in the base pricing: this
        # entry's output price (None: the entry's default), whatever the base's reasoning.
        if prices["reasoning"] == 0:
            own["reasoning"] = None
        tiers.append((threshold, own))
    entries = []
    for threshold in sorted({t for t, _ in tiers}):
        # The overrides of this threshold (later ones winning per key) over the base prices.
        merged = dict(base)
        for other, own_prices in tiers:
            if other == threshold:
                merged.update(own_prices)
        input_price, output_price = merged["input"], merged["output"]
        assert input_price is not None and output_price is not None  # the base has both
        entries.append(
            NewLongContextPrice(
                min_input_tokens=threshold + 1,
                input=input_price,
                output=output_price,
                cache_read=merged["cache_read"],
                cache_write=merged["cache_write"],
                # An override's own reasoning price, else the base's, else (billed as
                # completion) this entry's output (the default).
                reasoning=merged["reasoning"],
            )
        )
    return tuple(entries), skipped


def parse_models(payload: Any, known: dict[str, ModelPrice]) -> ImportResult:
    """Model entries from an OpenRouter ``/models`` payload; ``known`` gives tiers and names."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise NotOpenRouterShapeError(
            'expected OpenRouter\'s /api/v1/models shape: {"data": [{"id": ..., "pricing": {...}}]}'
        )
    models: list[NewModelPrice] = []
    skipped: list[SkippedModel] = []
    skipped_overrides: list[SkippedOverride] = []
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
        base: dict[str, Decimal | None] = {
            "input": per_million(prompt),
            "output": per_million(completion),
            "cache_read": None if cache_read is None else per_million(cache_read),
            "cache_write": None if cache_write is None else per_million(cache_write),
            "reasoning": None if not reasoning else per_million(reasoning),
        }
        long_context, dropped = _long_context(model_id, pricing, base)
        skipped_overrides += dropped
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
                cache_read=base["cache_read"],
                cache_write=base["cache_write"],
                reasoning=base["reasoning"],
                per_request=per_request,
                # A JSON true is no window (Python's bool is an int: it was stored as 1).
                context_tokens=context if type(context) is int and context > 0 else None,
                long_context=long_context,
            )
        )
    return ImportResult(models=models, skipped=skipped, skipped_overrides=skipped_overrides)
