"""The catalog: versions, one model's price history, diffs, and re-rating."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from service.api.deps import Resources, provide_resources
from service.api.params import parse_instant
from service.api.schemas import money, timestamp
from service.auth.guard import ADMIN, READ
from service.catalog.service import CatalogCache, derive_version
from service.db import Connection, on_connection
from service.errors import CatalogError, InvalidRequestError, NotFoundError
from service.pricing.catalog import Catalog
from service.pricing.diff import ModelChange, diff_models
from service.pricing.models import CatalogVersion, ModelPrice, NewModelPrice
from service.recording.rerating import (
    RerateSummary,
    create_version_and_price_unpriced,
    rerate_since,
)
from service.wire import WireValueError, parse_money

PriceString = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ModelIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
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


class VersionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    effective_from: str
    """RFC 3339 with an offset."""
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    parent: int | None = None
    models: list[ModelIn] = msgspec.field(default_factory=list)
    remove: list[str] = msgspec.field(default_factory=list)
    aliases: dict[str, str] | None = None
    default_model: str | None = None


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


class RerateOut(msgspec.Struct):
    since: str | None
    dry_run: bool
    events_examined: int
    events_changed: int
    entries_appended: int
    delta_usd: str
    jobs: list[DeltaOut]
    agents: list[DeltaOut]


def model_out(m: ModelPrice) -> ModelOut:
    return ModelOut(
        id=m.model_id,
        name=m.name,
        tier=m.tier,
        input=money(m.input) or "0",
        output=money(m.output) or "0",
        cache_read=money(m.cache_read) or "0",
        cache_write=money(m.cache_write) or "0",
        reasoning=money(m.reasoning) or "0",
        per_request=money(m.per_request) or "0",
        context_tokens=m.context_tokens,
    )


def version_out(v: CatalogVersion, repriced: int | None = None) -> VersionOut:
    return VersionOut(
        id=v.id,
        label=v.label,
        effective_from=timestamp(v.effective_from) or "",
        created_at=timestamp(v.created_at),
        parent=v.parent_id,
        default_model=v.default_model,
        models=[model_out(m) for m in sorted(v.models.values(), key=lambda m: m.model_id)],
        aliases=dict(sorted(v.aliases.items())),
        repriced_events=repriced,
    )


def rerate_out(summary: RerateSummary) -> RerateOut:
    def deltas(buckets: dict[str, Any]) -> list[DeltaOut]:
        return [
            DeltaOut(key=k, events=d.events, delta_usd=money(d.delta_usd) or "0")
            for k, d in sorted(buckets.items())
        ]

    return RerateOut(
        since=timestamp(summary.since),
        dry_run=summary.dry_run,
        events_examined=summary.events_examined,
        events_changed=summary.events_changed,
        entries_appended=summary.entries_appended,
        delta_usd=money(summary.delta_usd) or "0",
        jobs=deltas(summary.jobs),
        agents=deltas(summary.agents),
    )


def _decimal(field: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        return parse_money(field, raw)  # SPEC §2's money rule; a price is never negative
    except WireValueError as exc:
        raise CatalogError(str(exc)) from None


def new_model(m: ModelIn) -> NewModelPrice:
    where = f"models[{m.id}]"
    price_input = _decimal(f"{where}.input", m.input)
    price_output = _decimal(f"{where}.output", m.output)
    assert price_input is not None and price_output is not None
    return NewModelPrice(
        model_id=m.id,
        name=m.name,
        tier=m.tier,
        input=price_input,
        output=price_output,
        cache_read=_decimal(f"{where}.cache_read", m.cache_read),
        cache_write=_decimal(f"{where}.cache_write", m.cache_write),
        reasoning=_decimal(f"{where}.reasoning", m.reasoning),
        per_request=_decimal(f"{where}.per_request", m.per_request),
        context_tokens=m.context_tokens,
    )


async def _catalog(luc: Resources) -> Catalog:
    cache: CatalogCache = luc.catalog_cache
    return await on_connection(luc.pool, cache.get)


def _version(catalog: Catalog, version_id: int) -> CatalogVersion:
    version = catalog.by_id.get(version_id)
    if version is None:
        raise NotFoundError(f"catalog version {version_id} does not exist")
    return version


class CatalogController(Controller):
    path = "/v1/catalog"
    tags = ["catalog"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @get("/", operation_id="getCurrentCatalog", summary="The catalog version in force now")
    async def current(self, luc: NamedDependency[Resources]) -> VersionOut:
        catalog = await _catalog(luc)
        version = catalog.version_at(datetime.now(UTC))
        if version is None:
            raise NotFoundError("no catalog version is in force yet")
        return version_out(version)

    @get("/versions", operation_id="listCatalogVersions", summary="Every catalog version")
    async def versions(self, luc: NamedDependency[Resources]) -> VersionList:
        catalog = await _catalog(luc)
        return VersionList(
            items=[
                VersionSummaryOut(
                    id=v.id,
                    label=v.label,
                    effective_from=timestamp(v.effective_from) or "",
                    created_at=timestamp(v.created_at),
                    parent=v.parent_id,
                    models=len(v.models),
                )
                for v in sorted(catalog.versions, key=lambda v: v.id)
            ]
        )

    @get(
        "/versions/{version_id:int}",
        operation_id="getCatalogVersion",
        summary="One catalog version: its models, prices and aliases",
    )
    async def version(
        self, luc: NamedDependency[Resources], version_id: FromPath[int]
    ) -> VersionOut:
        return version_out(_version(await _catalog(luc), version_id))

    @post(
        "/versions",
        operation_id="createCatalogVersion",
        summary="Create a catalog version (a full snapshot, or changes against a parent)",
        description=(
            "Without `parent`, `models` is the whole catalog. With it, `models` adds or "
            "replaces the parent's entries and `remove` drops some. Prices are decimal "
            "strings per 1M tokens. Unpriced events that the new version prices are priced "
            "at once with adjustment entries; already priced events change only through "
            "re-rating (`POST /v1/catalog/rerate`)."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def create(
        self, luc: NamedDependency[Resources], data: JSONBody[VersionIn]
    ) -> VersionOut:
        effective_from = parse_instant("effective_from", data.effective_from)
        if effective_from is None:
            raise InvalidRequestError("effective_from: give an RFC 3339 timestamp with offset")
        catalog = await _catalog(luc)
        parent = _version(catalog, data.parent) if data.parent is not None else None
        new = derive_version(
            parent,
            effective_from=effective_from,
            label=data.label,
            models=[new_model(m) for m in data.models],
            remove=data.remove,
            aliases=data.aliases,
            default_model=data.default_model,
        )

        async def create(conn: Connection) -> tuple[int, RerateSummary]:
            return await create_version_and_price_unpriced(conn, new)

        version_id, summary = await on_connection(luc.pool, create)
        catalog = await _catalog(luc)
        return version_out(_version(catalog, version_id), repriced=summary.events_changed)

    @get(
        "/models/{model_path:path}",
        operation_id="getModelPriceHistory",
        summary="One model's prices across catalog versions: /v1/catalog/models/{model_id}/history",
    )
    async def history(
        self, luc: NamedDependency[Resources], model_path: FromPath[str]
    ) -> ModelHistoryOut:
        # Model ids hold slashes (anthropic/claude-opus-4.6), so the id is the path up to
        # the final /history.
        path = model_path.strip("/")
        if not path.endswith("/history"):
            raise NotFoundError("use /v1/catalog/models/{model_id}/history")
        model_id = path.removesuffix("/history")
        catalog = await _catalog(luc)
        points = [
            HistoryPoint(
                catalog_version=v.id,
                label=v.label,
                effective_from=timestamp(v.effective_from) or "",
                price=model_out(v.models[model_id]) if model_id in v.models else None,
            )
            for v in catalog.versions
        ]
        if all(p.price is None for p in points):
            raise NotFoundError(f"model {model_id!r} is in no catalog version")
        return ModelHistoryOut(model_id=model_id, versions=points)

    @get(
        "/diff",
        operation_id="diffCatalogVersions",
        summary="Models added, removed and changed between two catalog versions",
    )
    async def diff(
        self,
        luc: NamedDependency[Resources],
        from_version: Annotated[int, QueryParameter(name="from", description="version id")],
        to_version: Annotated[int, QueryParameter(name="to", description="version id")],
    ) -> DiffOut:
        catalog = await _catalog(luc)
        before, after = _version(catalog, from_version), _version(catalog, to_version)
        diff = diff_models(before.models, after.models, before.aliases, after.aliases)

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

    @post(
        "/rerate",
        operation_id="rerateSince",
        summary="Re-price events since a time with the catalog as it now stands",
        description=(
            "For a retroactive correction. `dry_run: true` reports the change per job and "
            "agent without writing; otherwise reversal and re-booking adjustment entries are "
            "appended. A second run appends nothing."
        ),
        status_code=200,
        opt=ADMIN,
    )
    async def rerate(self, luc: NamedDependency[Resources], data: JSONBody[RerateIn]) -> RerateOut:
        since = parse_instant("since", data.since)
        if since is None:
            raise InvalidRequestError("since: required")

        async def run(conn: Connection) -> RerateSummary:
            return await rerate_since(conn, since, dry_run=data.dry_run)

        return rerate_out(await on_connection(luc.pool, run))
