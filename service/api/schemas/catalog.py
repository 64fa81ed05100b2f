"""The catalog: versions, one model's price history, diffs, and re-rating."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from service.api.schemas.common import timestamp, wire_struct
from service.pricing.catalog import Catalog
from service.pricing.diff import CatalogDiff, ModelChange
from service.pricing.models import CatalogVersion, LongContextPrice, ModelPrice
from service.recording.rerating import RerateSummary

PriceString = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


# omit_defaults: the controller hands on only the fields given (msgspec.to_builtins), so a
# price left out follows the default rule.
class LongContextIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Prices for every token of a call whose input_tokens (cached included) reach
    ``min_input_tokens``; cache prices default to this entry's input, reasoning to its
    output. ``per_request`` stays the model's."""

    min_input_tokens: int
    """A positive integer, unique within the model."""
    input: PriceString
    output: PriceString
    cache_read: PriceString | None = None
    cache_write: PriceString | None = None
    reasoning: PriceString | None = None


class ModelIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A model entry; prices are decimal strings in USD per 1M tokens."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    tier: Literal["premium", "standard", "fast", "economy"]
    input: PriceString
    output: PriceString
    cache_read: PriceString | None = None
    cache_write: PriceString | None = None
    reasoning: PriceString | None = None
    per_request: PriceString | None = None
    """USD per call."""
    context_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    long_context: list[LongContextIn] | None = None


class VersionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    effective_from: str
    """RFC 3339 with an offset."""
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    parent: int | None = None
    models: list[ModelIn] = msgspec.field(default_factory=list)
    remove: list[str] = msgspec.field(default_factory=list)
    aliases: dict[str, str] | None = None
    default_model: str | None = None


class LongContextOut(msgspec.Struct):
    min_input_tokens: int
    input: str
    output: str
    cache_read: str
    cache_write: str
    reasoning: str


class ModelOut(msgspec.Struct):
    id: str
    name: str
    tier: str
    input: str
    output: str
    cache_read: str
    cache_write: str
    reasoning: str
    per_request: str
    context_tokens: int | None
    long_context: list[LongContextOut]
    """Ascending by threshold; empty when the model has one rate."""


class VersionSummaryOut(msgspec.Struct):
    id: int
    label: str | None
    effective_from: str
    created_at: str | None
    parent: int | None
    models: int


class VersionOut(msgspec.Struct, kw_only=True):
    id: int
    label: str | None
    effective_from: str
    created_at: str | None
    parent: int | None
    default_model: str | None
    models: list[ModelOut]
    aliases: dict[str, str]
    repriced_events: int | None = None
    """On creation: events that were unpriced and this version now prices."""


class VersionList(msgspec.Struct):
    items: list[VersionSummaryOut]


class HistoryPoint(msgspec.Struct):
    catalog_version: int
    label: str | None
    effective_from: str
    price: ModelOut | None
    """None where the version does not carry the model."""


class ModelHistoryOut(msgspec.Struct):
    model_id: str
    versions: list[HistoryPoint]


class ChangeOut(msgspec.Struct):
    id: str
    fields: list[str]
    before: ModelOut
    after: ModelOut


class DiffOut(msgspec.Struct):
    from_version: int = msgspec.field(name="from")
    to_version: int = msgspec.field(name="to")
    added: list[ModelOut] = msgspec.field(default_factory=list)
    removed: list[ModelOut] = msgspec.field(default_factory=list)
    changed: list[ChangeOut] = msgspec.field(default_factory=list)


class RerateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    since: str
    """RFC 3339: re-price events that occurred at or after this time."""
    dry_run: bool = False


class DeltaOut(msgspec.Struct):
    key: str
    events: int
    delta_usd: str
    """Change of the catalog cost."""
    actual_delta_usd: str
    """Change of the actual cost: events with a provider-reported cost keep theirs."""
    price_delta_usd: str
    """Change of the customers' price, where their plans' basis cost moved."""
    events_now_unpriced: int
    """Events priced before and unpriced now (their model left the catalog): the deltas
    count an unknown cost as none, so their cost leaves the totals but is not saved."""
    events_now_priced: int
    """Events unpriced before and priced now."""


class RerateOut(msgspec.Struct):
    since: str | None
    dry_run: bool
    events_examined: int
    events_changed: int
    entries_appended: int
    delta_usd: str
    actual_delta_usd: str
    price_delta_usd: str
    events_now_unpriced: int
    """Events priced before and unpriced now: ``delta_usd`` takes their cost off, though it
    is not saved but unknown (the job's ``cost_usd`` goes null when all its events are)."""
    events_now_priced: int
    jobs: list[DeltaOut]
    agents: list[DeltaOut]


def long_context_out(lc: LongContextPrice) -> LongContextOut:
    return wire_struct(LongContextOut, lc)


def model_out(m: ModelPrice) -> ModelOut:
    return wire_struct(
        ModelOut, m, id=m.model_id, long_context=[long_context_out(lc) for lc in m.long_context]
    )


def version_out(v: CatalogVersion, repriced: int | None = None) -> VersionOut:
    return wire_struct(
        VersionOut,
        v,
        parent=v.parent_id,
        models=[model_out(m) for m in sorted(v.models.values(), key=lambda m: m.model_id)],
        aliases=dict(sorted(v.aliases.items())),
        repriced_events=repriced,
    )


def rerate_out(summary: RerateSummary) -> RerateOut:
    def deltas(buckets: dict[str, Any]) -> list[DeltaOut]:
        return [wire_struct(DeltaOut, d, key=k) for k, d in sorted(buckets.items())]

    return wire_struct(RerateOut, summary, jobs=deltas(summary.jobs), agents=deltas(summary.agents))


def version_summary_out(v: CatalogVersion) -> VersionSummaryOut:
    return wire_struct(VersionSummaryOut, v, parent=v.parent_id, models=len(v.models))


def model_history_out(catalog: Catalog, model_id: str) -> ModelHistoryOut:
    """``model_id``'s price in every version (None where a version does not carry it)."""
    return ModelHistoryOut(
        model_id=model_id,
        versions=[
            HistoryPoint(
                catalog_version=v.id,
                label=v.label,
                effective_from=timestamp(v.effective_from) or "",
                price=model_out(v.models[model_id]) if model_id in v.models else None,
            )
            for v in catalog.versions
        ],
    )


def diff_out(before: CatalogVersion, after: CatalogVersion, diff: CatalogDiff) -> DiffOut:
    def change(c: ModelChange) -> ChangeOut:
        return ChangeOut(
            id=c.model_id,
            fields=c.changed_fields,
            before=model_out(c.before),
            after=model_out(c.after),
        )

    return DiffOut(
        from_version=before.id,
        to_version=after.id,
        added=[model_out(m) for m in diff.added],
        removed=[model_out(m) for m in diff.removed],
        changed=[change(c) for c in diff.changed],
    )
