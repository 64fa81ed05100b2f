"""Turning an OpenRouter ``/models`` payload into a new catalog version, when it changes one.

The import starts from the catalog version in force at its ``effective_from`` (SPEC §3:
what prices an event is the version in force at its instant, so that is what the new
version changes): imported models replace or join its models, models the payload does not
list are kept (the gateway may reach them elsewhere, e.g. on Vertex AI), aliases and the
default model carry over. No change, no version. A version that takes effect later keeps
its own prices: the import's hold until then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from service.catalog.service import (
    NewCatalogVersion,
    check_price_entry,
    check_version,
    derive_version,
)
from service.errors import CatalogError, UpstreamError
from service.pricing.catalog import Catalog
from service.pricing.diff import CatalogDiff, diff_models
from service.pricing.models import CatalogVersion
from service.pricing.openrouter import (
    NotOpenRouterShapeError,
    SkippedModel,
    SkippedOverride,
    parse_models,
)
from service.wire import storable_instant_problem

DEFAULT_OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"


@dataclass(frozen=True)
class ImportPlan:
    version: NewCatalogVersion | None
    """None when the payload changes nothing."""
    diff: CatalogDiff
    skipped: list[SkippedModel]
    imported: int
    skipped_overrides: list[SkippedOverride] = field(default_factory=list)
    """Conditional prices of imported models that LUC cannot hold (time windows)."""
    base: CatalogVersion | None = None
    """The version the import changes: the one in force at its ``effective_from``."""
    later: list[CatalogVersion] = field(default_factory=list)
    """Versions that take effect after ``effective_from``: they keep their own prices."""


def plan_import(
    payload: Any, catalog: Catalog, *, effective_from: datetime, label: str | None
) -> ImportPlan:
    # Before the diff: a dry run must refuse what the import would.
    if problem := storable_instant_problem(effective_from):
        raise CatalogError(f"effective_from: {problem}")
    # Not the newest version: one scheduled for later (a price rise next month) would leak
    # its prices into now, and a backdated import would carry today's into the past.
    base = catalog.version_at(effective_from)
    later = [v for v in catalog.versions if v.effective_from > effective_from]
    known = base.models if base else {}
    try:
        result = parse_models(payload, known)
    except NotOpenRouterShapeError as exc:
        raise CatalogError(str(exc)) from exc
    # A model the catalog cannot hold (a price past its bounds or its decimals, a context
    # window past its column) is skipped with the reason, as a dynamic price is: kept, it
    # refused the whole version after a dry run that showed it fine.
    models = []
    skipped = list(result.skipped)
    aliases = base.aliases if base else {}
    for model in result.models:
        try:
            check_price_entry(model)
        except CatalogError as exc:
            skipped.append(SkippedModel(model.model_id, exc.message))
            continue
        if model.model_id in aliases:
            # Kept, it refused the whole version after a dry run that showed it fine, and
            # every sync after it.
            skipped.append(
                SkippedModel(
                    model.model_id,
                    f"its id is an alias of the catalog ({model.model_id!r} names "
                    f"{aliases[model.model_id]!r}), and an alias names another model",
                )
            )
            continue
        models.append(model)
    if not models:
        # Say why: the skip reasons are the only clue to what is wrong with the file.
        why = "; ".join(f"{s.model_id}: {s.reason}" for s in skipped[:3])
        raise CatalogError(
            "the payload prices no model; nothing to import" + (f" ({why})" if why else "")
        )
    version = derive_version(
        base,
        effective_from=effective_from,
        label=label,
        models=models,
        remove=[],
        aliases=None,
        default_model=None,
    )
    check_version(version)  # what the import would refuse, the dry run refuses too
    after = {m.model_id: m.with_defaults() for m in version.models}
    diff = diff_models(known, after, base.aliases if base else {}, version.aliases)
    return ImportPlan(
        version=None if diff.is_empty else version,
        diff=diff,
        skipped=skipped,
        imported=len(models),
        skipped_overrides=result.skipped_overrides,
        base=base,
        later=later,
    )


async def fetch_openrouter_models(
    client: httpx.AsyncClient, base_url: str, timeout_seconds: float | None = None
) -> Any:
    """``GET {base_url}/models``: the public model list (no key needed), whole within
    ``timeout_seconds`` (httpx's own timeout bounds each read: a list trickled a little at
    a time was waited for without end)."""
    url = f"{base_url.rstrip('/')}/models"
    try:
        async with asyncio.timeout(timeout_seconds):
            response = await client.get(url)
            response.raise_for_status()
            return response.json()
    except TimeoutError as exc:
        raise UpstreamError(
            f"cannot fetch {url}: no whole answer within {timeout_seconds:g} s"
        ) from exc
    except httpx.HTTPStatusError as exc:
        raise UpstreamError(f"{url} answered {exc.response.status_code}") from exc
    except httpx.TimeoutException as exc:
        # Its text is often empty ("cannot fetch …: ;" said nothing).
        raise UpstreamError(f"cannot fetch {url}: {type(exc).__name__} (timed out)") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot fetch {url}: {exc or type(exc).__name__}") from exc
    except ValueError as exc:
        raise UpstreamError(f"{url} did not answer JSON") from exc
