"""Why a group drifts: what LUC can see in the compared events that the catalog may price
otherwise than the provider bills. Each finding is a ``Reason``: a stable code, how many of
the group's compared events it concerns, and a sentence for people.

The codes:

- ``cache_read_at_input_price``: cached tokens were read while the catalog version used has
  no cache-read price of its own for the model. ``catalog_prices`` stores every price with
  its default applied (SPEC §3: ``cache_read`` defaults to ``input``), so "no price of its
  own" is seen as ``cache_read = input``: the cached tokens were priced at the full input
  rate, where providers bill a fraction of it.
- ``cache_write_at_input_price``: the same for cache writes (providers such as Anthropic
  bill them above the input rate).
- ``long_context``: events whose input reached the long-context threshold
  (``long_context_threshold``), which providers bill at another rate for the whole request.
- ``upstream_model_differs``: the provider answered with another model than the one the
  event is priced as. LUC's gateway records the answering model as
  ``attributes.upstream_model`` when it differs from the one asked for (and prices the
  event as that model when the catalog has it); events from other clients carry it only
  if they set it, so for them LUC cannot tell.
- ``reasoning_tokens``: reasoning tokens, priced at the version's reasoning rate (its output
  rate unless it gives one), which providers may count or bill otherwise.
- ``unexplained``: none of the above: compare the catalog's prices with the provider's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from service.pricing.catalog import Catalog
from service.pricing.models import ModelPrice
from service.reconciliation.models import Reason

LONG_CONTEXT_INPUT_TOKENS = 200_001
"""Anthropic (Claude Sonnet) and Google (Gemini Pro) bill a whole request at their
long-context rate when its input tokens, cached included, exceed 200,000."""


def long_context_threshold(price: ModelPrice | None) -> int:
    """The input tokens from which the provider bills ``price``'s model at a long-context
    rate: the lowest ``min_input_tokens`` of the version's ``long_context`` entries for it
    when it has some (SPEC §3), else the providers' common threshold."""
    # Read by name: a catalog whose prices hold no ``long_context`` (every version before
    # long-context entries existed) checks each model against the common threshold.
    entries = getattr(price, "long_context", None) or ()
    return min((int(e.min_input_tokens) for e in entries), default=LONG_CONTEXT_INPUT_TOKENS)


def thresholds(catalog: Catalog) -> tuple[list[int], list[str], list[int]]:
    """Every (version, model, threshold) whose threshold is not the common one, as the three
    arrays the reason query joins on."""
    found = [
        (version.id, model_id, long_context_threshold(price))
        for version in catalog.versions
        for model_id, price in version.models.items()
    ]
    kept = [t for t in found if t[2] != LONG_CONTEXT_INPUT_TOKENS]
    return [t[0] for t in kept], [t[1] for t in kept], [t[2] for t in kept]


@dataclass
class Findings:
    """What the reason queries counted for one group, by (catalog version, model)."""

    counts: dict[str, dict[tuple[int, str], int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    """count name → (version, model) → events"""
    upstream: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    """(version, priced model, answering model) → events"""

    def add_counts(self, row: Any) -> None:
        where = (int(row["catalog_version"]), str(row["priced_model"]))
        for name in COUNTS:
            if row[name]:
                self.counts[name][where] += int(row[name])

    def add_upstream(self, row: Any, catalog: Catalog) -> None:
        version_id, model = int(row["catalog_version"]), str(row["priced_model"])
        answered = str(row["upstream_model"])
        version = catalog.by_id.get(version_id)
        # The gateway prices an event as the answering model when the catalog has it: then
        # the answering model resolves to the priced one and explains nothing.
        if (version.resolve(answered) if version else answered) != model:
            self.upstream[(version_id, model, answered)] += int(row["events"])


COUNTS = ("cache_read_at_input", "cache_write_at_input", "long_context", "reasoning")
"""The per-event counts of the reason query (``queries.reason_counts``)."""

_MAX_NAMED = 5  # models (or versions) named in one sentence; more are summed up


def _named(items: Iterable[str]) -> str:
    names = sorted(set(items))
    shown = ", ".join(names[:_MAX_NAMED])
    return shown if len(names) <= _MAX_NAMED else f"{shown} and {len(names) - _MAX_NAMED} more"


def _in_versions(where: Iterable[tuple[int, str]]) -> str:
    """ "model in catalog version 1" for each (version, model)."""
    return _named(f"{model} in catalog version {version}" for version, model in where)


def reasons(findings: Findings, catalog: Catalog, compared: int) -> list[Reason]:
    """The reasons of one drifting group, in the order of the module docstring;
    ``compared``: the group's compared events (reported and priced), all of which an
    ``unexplained`` reason concerns."""
    found: list[Reason] = []
    counts = findings.counts
    if cache := counts.get("cache_read_at_input"):
        found.append(
            Reason(
                "cache_read_at_input_price",
                sum(cache.values()),
                "cached tokens priced at the full input rate: no cache_read price of its own "
                f"for {_in_versions(cache)}; providers bill cache reads below the input rate",
            )
        )
    if writes := counts.get("cache_write_at_input"):
        found.append(
            Reason(
                "cache_write_at_input_price",
                sum(writes.values()),
                "cache-write tokens priced at the input rate: no cache_write price of its own "
                f"for {_in_versions(writes)}; providers may bill cache writes otherwise",
            )
        )
    if long := counts.get("long_context"):
        found.append(Reason("long_context", sum(long.values()), _long_context_text(long, catalog)))
    if findings.upstream:
        pairs = (f"{answered} priced as {model}" for _, model, answered in findings.upstream)
        found.append(
            Reason(
                "upstream_model_differs",
                sum(findings.upstream.values()),
                "the provider answered with another model than the one the event is priced "
                f"as (attributes.upstream_model): {_named(pairs)}",
            )
        )
    if reasoning := counts.get("reasoning"):
        found.append(
            Reason(
                "reasoning_tokens",
                sum(reasoning.values()),
                "reasoning tokens present, priced at the reasoning rate (the output rate "
                f"unless the version gives one) for {_in_versions(reasoning)}; providers may "
                "count or bill them otherwise",
            )
        )
    if not found:
        found.append(
            Reason(
                "unexplained",
                compared,
                "no cached tokens at the input rate, no long context, no other answering "
                "model and no reasoning tokens: compare the catalog's prices for these models "
                "with the provider's price list",
            )
        )
    return found


def _long_context_text(long: dict[tuple[int, str], int], catalog: Catalog) -> str:
    without = [w for w in long if not getattr(_price(catalog, *w), "long_context", None)]
    limits = _named(f"{long_context_threshold(_price(catalog, *w)) - 1:,}" for w in long)
    text = f"input over {limits} tokens, which providers bill at a long-context rate"
    if without:
        return f"{text}; no long-context rate for {_in_versions(without)}"
    return f"{text}; priced at the version's long-context rate: check it against the provider's"


def _price(catalog: Catalog, version_id: int, model: str) -> ModelPrice | None:
    version = catalog.by_id.get(version_id)
    return version.models.get(model) if version else None
