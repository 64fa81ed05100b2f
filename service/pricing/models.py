"""Catalog shapes: a model's prices and a version (a full, immutable snapshot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

TIERS = ("premium", "standard", "fast", "economy")
PRICE_CLASSES = ("input", "output", "cache_read", "cache_write", "reasoning", "per_request")
"""The prices of a model, in the order invoices list them: USD per 1M tokens of a token
class (``service.tokens`` names which class each prices), and USD per request."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model in one catalog version; prices in USD per 1M tokens, defaults applied."""

    model_id: str
    name: str
    tier: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    reasoning: Decimal
    per_request: Decimal = Decimal(0)
    """USD per call, not per token."""
    context_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class CatalogVersion:
    id: int
    label: str | None
    effective_from: datetime
    created_at: datetime | None
    default_model: str | None
    aliases: dict[str, str]
    models: dict[str, ModelPrice] = field(default_factory=dict)
    parent_id: int | None = None

    def resolve(self, model: str) -> str:
        """The catalog model id that ``model`` names (an alias maps to its id)."""
        return self.aliases.get(model, model)

    def price_of(self, model: str) -> ModelPrice | None:
        return self.models.get(self.resolve(model))


@dataclass(frozen=True, slots=True)
class NewModelPrice:
    """A model entry as an author writes it: optional prices fall back to the rule."""

    model_id: str
    name: str
    tier: str
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    per_request: Decimal | None = None
    context_tokens: int | None = None

    def with_defaults(self) -> ModelPrice:
        """Apply SPEC defaults: cache prices default to input, reasoning to output."""
        return ModelPrice(
            model_id=self.model_id,
            name=self.name,
            tier=self.tier,
            input=self.input,
            output=self.output,
            cache_read=self.input if self.cache_read is None else self.cache_read,
            cache_write=self.input if self.cache_write is None else self.cache_write,
            reasoning=self.output if self.reasoning is None else self.reasoning,
            per_request=Decimal(0) if self.per_request is None else self.per_request,
            context_tokens=self.context_tokens,
        )
