"""Catalog shapes: a model's prices and a version (a full, immutable snapshot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

TIERS = ("premium", "standard", "fast", "economy")
PRICE_CLASSES = ("input", "output", "cache_read", "cache_write", "reasoning", "per_request")
"""The prices of a model, in the order invoices list them: USD per 1M tokens of a token
class (``service.tokens`` names which class each prices), and USD per request."""
TOKEN_PRICES = PRICE_CLASSES[:-1]
"""The prices per 1M tokens: what a long-context entry holds (``per_request`` stays the
model's whatever the size of the call)."""


RATE_MARKER = "long_context_from"
"""The rate marker, declared once: the name under which a ledger entry, a job line and an
invoice line (columns and wire fields alike) say which rate of their catalog version
priced them (``Rate.long_context_from``). It is part of the invoice-line key, so a line
keeps one unit price; ``tests/integration/test_token_columns.py`` and
``tests/unit/test_token_classes.py`` check the tables and wire structs against it."""


def rate_label(long_context_from: int | None) -> str:
    """How an invoice names the rate that priced a line: ``base``, or
    ``long context ≥ 200,001 input tokens``."""
    if long_context_from is None:
        return "base"
    return f"long context ≥ {long_context_from:,} input tokens"


@dataclass(frozen=True, slots=True)
class LongContextPrice:
    """A model's prices for a call whose ``input_tokens`` (cached reads and writes
    included) reach ``min_input_tokens``: the providers bill every token of such a call at
    these (SPEC §3). Defaults applied: cache prices default to this entry's input, reasoning
    to its output."""

    min_input_tokens: int
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    reasoning: Decimal


@dataclass(frozen=True, slots=True)
class NewLongContextPrice:
    """A long-context entry as an author writes it: optional prices fall back to the rule."""

    min_input_tokens: int
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None

    def with_defaults(self) -> LongContextPrice:
        return LongContextPrice(
            min_input_tokens=self.min_input_tokens,
            input=self.input,
            output=self.output,
            cache_read=self.input if self.cache_read is None else self.cache_read,
            cache_write=self.input if self.cache_write is None else self.cache_write,
            reasoning=self.output if self.reasoning is None else self.reasoning,
        )


@dataclass(frozen=True, slots=True)
class Rate:
    """The unit prices that price one call: the model's base prices, or those of the
    long-context entry its input reached, with the model's ``per_request`` either way.

    ``long_context_from`` is the rate marker: the ``min_input_tokens`` of that entry, or
    ``None`` for the base prices. Ledger entries, job lines and invoice lines carry it under
    this name beside their unit prices, and a line holds one rate (one unit price per line).
    """

    long_context_from: int | None
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    reasoning: Decimal
    per_request: Decimal

    @property
    def label(self) -> str:
        return rate_label(self.long_context_from)

    def unit_prices(self) -> dict[str, Decimal]:
        """The prices by ``PRICE_CLASSES`` name."""
        return {k: getattr(self, k) for k in PRICE_CLASSES}


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
    long_context: tuple[LongContextPrice, ...] = ()
    """Ascending by ``min_input_tokens`` (thresholds are unique within a model)."""

    def rate_for(self, input_tokens: int) -> Rate:
        """The prices of a call with ``input_tokens`` prompt tokens: the long-context entry
        with the highest threshold the call reaches, else the base prices."""
        reached = [lc for lc in self.long_context if input_tokens >= lc.min_input_tokens]
        prices = reached[-1] if reached else self
        return Rate(
            long_context_from=reached[-1].min_input_tokens if reached else None,
            input=prices.input,
            output=prices.output,
            cache_read=prices.cache_read,
            cache_write=prices.cache_write,
            reasoning=prices.reasoning,
            per_request=self.per_request,
        )

    def rate_from(self, long_context_from: int | None) -> Rate:
        """The rate a ledger entry names by its marker (``None``: the base prices)."""
        return self.rate_for(0 if long_context_from is None else long_context_from)


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
    long_context: tuple[NewLongContextPrice, ...] = ()

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
            long_context=tuple(
                sorted(
                    (lc.with_defaults() for lc in self.long_context),
                    key=lambda lc: lc.min_input_tokens,
                )
            ),
        )
