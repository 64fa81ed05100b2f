"""Differences between two catalog snapshots: added, removed and changed models."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from service.pricing.models import TOKEN_PRICES, LongContextPrice, ModelPrice
from service.wire import money_text

COMPARED_FIELDS = tuple(f.name for f in fields(ModelPrice) if f.name != "model_id")
"""Every field of a model entry but its id: prices, name, tier, context, long context."""


@dataclass(frozen=True, slots=True)
class ModelChange:
    model_id: str
    before: ModelPrice
    after: ModelPrice

    @property
    def changed_fields(self) -> list[str]:
        return [f for f in COMPARED_FIELDS if getattr(self.before, f) != getattr(self.after, f)]


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    added: list[ModelPrice]
    removed: list[ModelPrice]
    changed: list[ModelChange]
    aliases_before: dict[str, str]
    aliases_after: dict[str, str]

    @property
    def is_empty(self) -> bool:
        return (
            not self.added
            and not self.removed
            and not self.changed
            and self.aliases_before == self.aliases_after
        )


def diff_models(
    before: dict[str, ModelPrice],
    after: dict[str, ModelPrice],
    aliases_before: dict[str, str] | None = None,
    aliases_after: dict[str, str] | None = None,
) -> CatalogDiff:
    """What changed from ``before`` to ``after`` (prices compare by value: 3 == 3.00)."""
    return CatalogDiff(
        added=[after[m] for m in sorted(after.keys() - before.keys())],
        removed=[before[m] for m in sorted(before.keys() - after.keys())],
        changed=[
            ModelChange(m, before[m], after[m])
            for m in sorted(before.keys() & after.keys())
            if before[m] != after[m]
        ],
        aliases_before=dict(aliases_before or {}),
        aliases_after=dict(aliases_after or {}),
    )


def describe(diff: CatalogDiff) -> list[str]:
    """Human lines for a terminal: ``+ id``, ``- id``, ``~ id: input 3 → 2.5``."""
    lines = [
        f"+ {m.model_id} ({m.tier}): input {money_text(m.input)}, output {money_text(m.output)}"
        for m in diff.added
    ]
    lines += [f"- {m.model_id}" for m in diff.removed]
    for change in diff.changed:
        parts: list[Any] = [
            f"{f} {_shown(f, getattr(change.before, f))} → {_shown(f, getattr(change.after, f))}"
            for f in change.changed_fields
        ]
        lines.append(f"~ {change.model_id}: {', '.join(parts)}")
    if diff.aliases_before != diff.aliases_after:
        lines.append(f"aliases: {diff.aliases_before} → {diff.aliases_after}")
    return lines


def describe_long_context(entries: tuple[LongContextPrice, ...]) -> str:
    """``≥ 200,001: input 6, output 22.5, …; ≥ …`` (``none`` without entries)."""
    if not entries:
        return "none"
    return "; ".join(
        f"≥ {lc.min_input_tokens:,}: "
        + ", ".join(f"{k} {money_text(getattr(lc, k))}" for k in TOKEN_PRICES)
        for lc in entries
    )


def _shown(field: str, value: Any) -> Any:
    if field == "long_context":
        return describe_long_context(value)
    # As the API writes prices: every digit (str() of a tiny Decimal is 1E-7), no
    # trailing zeros (the stored scale's 6.00 is 6 on the wire).
    return money_text(value) if isinstance(value, Decimal) else value
