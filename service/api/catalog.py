"""The catalog: versions, one model's price history, diffs, and re-rating."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.api.deps import LucController, Resources
from service.api.openapi import NOT_FOUND_WITHOUT_PARAMETERS
from service.api.request import LucRequest, unless_client_leaves
from service.api.schemas.catalog import (
    DiffOut,
    ModelHistoryOut,
    RerateIn,
    RerateOut,
    VersionIn,
    VersionList,
    VersionOut,
    diff_out,
    model_history_out,
    rerate_out,
    version_out,
    version_summary_out,
)
from service.api.schemas.common import body_instant
from service.auth.guard import ADMIN, READ
from service.catalog.service import catalog_version, checked_model_price, derive_version
from service.db import Connection, on_connection
from service.errors import InvalidRequestError, NotFoundError
from service.pricing.catalog import Catalog
from service.pricing.diff import diff_models
from service.recording.rerating import (
    RerateSummary,
    create_version_and_price_unpriced,
    rerate_since,
)
from service.wire import storable_instant_problem


async def _catalog(luc: Resources) -> Catalog:
    return await on_connection(luc.pool, luc.catalog_cache.get)


class CatalogController(LucController):
    path = "/v1/catalog"
    tags = ["catalog"]
    opt = READ

    @get(
        "/",
        operation_id="getCurrentCatalog",
        summary="The catalog version in force now",
        opt={NOT_FOUND_WITHOUT_PARAMETERS: True},  # none in force yet
    )
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
            items=[version_summary_out(v) for v in sorted(catalog.versions, key=lambda v: v.id)]
        )

    @get(
        "/versions/{version_id:int}",
        operation_id="getCatalogVersion",
        summary="One catalog version: its models, prices and aliases",
    )
    async def version(
        self, luc: NamedDependency[Resources], version_id: FromPath[int]
    ) -> VersionOut:
        return version_out(catalog_version(await _catalog(luc), version_id))

    @post(
        "/versions",
        operation_id="createCatalogVersion",
        summary="Create a catalog version (a full snapshot, or changes against a parent)",
        description=(
            "Without `parent`, `models` is the whole catalog. With it, `models` adds or "
            "replaces the parent's entries and `remove` drops some (a `parent` that does not "
            "exist is a 422 naming it). Prices are decimal "
            "strings per 1M tokens; a model's `long_context` entries price every token of a "
            "call whose input reaches their `min_input_tokens`. Unpriced events that the "
            "new version prices are priced at once with adjustment entries; already priced "
            "events change only through "
            "re-rating (`POST /v1/catalog/rerate`)."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def create(
        self, luc: NamedDependency[Resources], data: JSONBody[VersionIn]
    ) -> VersionOut:
        effective_from = body_instant("effective_from", data.effective_from)
        catalog = await _catalog(luc)
        parent = None
        if data.parent is not None:
            parent = catalog.by_id.get(data.parent)
            if parent is None:
                # A referent named in the body, as a customer's plan_id or a job's
                # customer_id: the client's input, 422 naming the field (the route itself
                # exists; a 404 would say it does not).
                raise InvalidRequestError(f"parent: catalog version {data.parent} does not exist")
        new = derive_version(
            parent,
            effective_from=effective_from,
            label=data.label,
            models=[
                # Only the fields given (omit_defaults): a price left out follows the
                # default rule.
                checked_model_price(msgspec.to_builtins(m))
                for m in data.models
            ],
            remove=data.remove,
            aliases=data.aliases,
            default_model=data.default_model,
        )

        async def create(conn: Connection) -> tuple[int, RerateSummary]:
            return await create_version_and_price_unpriced(
                conn, new, default_plan=luc.settings.billing.default_plan
            )

        version_id, summary = await on_connection(luc.pool, create)
        catalog = await _catalog(luc)
        return version_out(catalog_version(catalog, version_id), repriced=summary.events_changed)

    @get(
        "/models/{model_path:path}",
        operation_id="getModelPriceHistory",
        summary="One model's prices across catalog versions",
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
        history = model_history_out(catalog, model_id)
        if all(p.price is None for p in history.versions):
            # An alias (SPEC §2: events name a model by its id or an alias) stands for the
            # model it names now.
            resolved = catalog.quote(model_id, datetime.now(UTC)).model_id
            if resolved != model_id:
                history = model_history_out(catalog, resolved)
        if all(p.price is None for p in history.versions):
            raise NotFoundError(f"model {model_id!r} is in no catalog version")
        return history

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
        before = catalog_version(catalog, from_version)
        after = catalog_version(catalog, to_version)
        return diff_out(
            before, after, diff_models(before.models, after.models, before.aliases, after.aliases)
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
    async def rerate(
        self, request: LucRequest, luc: NamedDependency[Resources], data: JSONBody[RerateIn]
    ) -> RerateOut:
        since = body_instant("since", data.since)
        if problem := storable_instant_problem(since):
            raise InvalidRequestError(f"since: {problem}")

        async def run(conn: Connection) -> RerateSummary:
            return await rerate_since(
                conn, since, default_plan=luc.settings.billing.default_plan, dry_run=data.dry_run
            )

        work = on_connection(luc.pool, run)
        # An applied run finishes whoever waits: what it appends is the correction asked for.
        return rerate_out(await (unless_client_leaves(request, work) if data.dry_run else work))
