"""``GET /v1/models``: the catalog's models in OpenAI's list format (SPEC §8).

OpenAI-compatible tools list the models before they offer them (model pickers, the SDK's
``client.models.list()``), with the same key they call ``/v1/chat/completions`` with: an
``ingest`` key, so that scope may read this list (a ``read`` key too: it holds no usage).

The list is the catalog version in force now: what the proxy can price, so what it
accepts. Each catalog id is one entry; aliases are not entries of their own (a picker would
show one model twice) but are listed on their model as ``aliases``, and
``GET /v1/models/{alias}`` answers the model it names, as the proxy accepts either.
``created`` is when the model first appeared in the catalog (the ``effective_from`` of the
first version that priced it, in Unix seconds), so it does not move when prices change;
``owned_by`` is the provider part of the id (``google/gemini-3.0-flash`` → ``google``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from service.api.deps import Resources, provide_resources
from service.api.params import ANY_QUERY
from service.api.proxy import proxy_http_error, proxy_luc_error, proxy_unexpected_error
from service.api.schemas.proxy import OpenAIError
from service.auth.guard import INGEST_OR_READ
from service.db import on_connection
from service.errors import LucError, NotFoundError
from service.pricing.catalog import Catalog
from service.pricing.models import CatalogVersion


class ModelObject(msgspec.Struct, kw_only=True):
    """One model as OpenAI lists it, with LUC's catalog facts beside."""

    id: str
    object: Literal["model"] = "model"
    created: int
    """Unix seconds: when the model first appeared in LUC's catalog."""
    owned_by: str
    name: str
    tier: str
    context_window: int | None
    aliases: list[str]
    """Other names the proxy accepts for this model."""


class ModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelObject]


def _owner(model_id: str) -> str:
    owner, slash, _ = model_id.partition("/")
    return owner if slash and owner else "luc"


def _first_seen(catalog: Catalog, model_id: str, fallback: datetime) -> int:
    seen = [v.effective_from for v in catalog.versions if model_id in v.models]
    return int(min(seen, default=fallback).timestamp())


def model_object(catalog: Catalog, version: CatalogVersion, model_id: str) -> ModelObject:
    price = version.models[model_id]
    return ModelObject(
        id=model_id,
        created=_first_seen(catalog, model_id, version.effective_from),
        owned_by=_owner(model_id),
        name=price.name,
        tier=price.tier,
        context_window=price.context_tokens,
        aliases=sorted(a for a, target in version.aliases.items() if target == model_id),
    )


def _in_force(catalog: Catalog) -> CatalogVersion | None:
    return catalog.version_at(datetime.now(UTC))


class ModelsController(Controller):
    path = "/v1/models"
    tags = ["gateway"]
    opt = {**INGEST_OR_READ, ANY_QUERY: True}  # as OpenAI SDKs call it
    dependencies = {"luc": Provide(provide_resources)}
    # As on /v1/chat/completions: OpenAI's error body, which the SDKs turn into exceptions.
    exception_handlers = {
        LucError: proxy_luc_error,
        HTTPException: proxy_http_error,
        Exception: proxy_unexpected_error,
    }

    @get(
        "/",
        operation_id="listModels",
        summary="The catalog's models in OpenAI's list format",
        description=(
            "The models of the catalog version in force, as OpenAI's GET /v1/models lists "
            "them (object, data[id, object, created, owned_by]), with each model's name, "
            "tier, context window and aliases. What the proxy can price, so what it accepts."
        ),
    )
    async def list_models(self, luc: NamedDependency[Resources]) -> ModelList:
        catalog = await on_connection(luc.pool, luc.catalog_cache.get)
        version = _in_force(catalog)
        if version is None:
            return ModelList(data=[])
        return ModelList(data=[model_object(catalog, version, m) for m in sorted(version.models)])

    @get(
        "/{model:path}",
        operation_id="retrieveModel",
        summary="One model of the catalog, by id or alias, in OpenAI's format",
        responses={
            404: ResponseSpec(
                OpenAIError,
                description="The catalog in force has no such model or alias",
                generate_examples=False,
            )
        },
    )
    async def retrieve_model(
        self, luc: NamedDependency[Resources], model: FromPath[str]
    ) -> ModelObject:
        model = model.removeprefix("/")  # a path parameter keeps its leading slash
        catalog = await on_connection(luc.pool, luc.catalog_cache.get)
        version = _in_force(catalog)
        model_id = version.resolve(model) if version else model
        if version is None or model_id not in version.models:
            raise NotFoundError(
                f"model {model!r} is not in LUC's catalog; GET /v1/models lists the models "
                "the proxy can price"
            )
        return model_object(catalog, version, model_id)
