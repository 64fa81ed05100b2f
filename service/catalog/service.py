"""Reading and writing catalog versions. A version, once written, never changes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from service.catalog import queries
from service.db import Connection
from service.errors import CatalogError
from service.pricing.catalog import Catalog
from service.pricing.models import TIERS, CatalogVersion, ModelPrice, NewModelPrice

AIMS_CATALOG_FILE = "aims-v1.json"


@dataclass(frozen=True)
class NewCatalogVersion:
    effective_from: datetime
    label: str
    models: list[NewModelPrice]
    aliases: dict[str, str] = field(default_factory=dict)
    default_model: str | None = None
    parent_id: int | None = None


def _check(version: NewCatalogVersion) -> None:
    if version.effective_from.tzinfo is None:
        raise CatalogError("effective_from must carry a UTC offset")
    seen: set[str] = set()
    for model in version.models:
        if model.model_id in seen:
            raise CatalogError(f"model {model.model_id!r} appears twice")
        seen.add(model.model_id)
        if model.tier not in TIERS:
            raise CatalogError(f"model {model.model_id!r}: tier must be one of {', '.join(TIERS)}")
        prices = [model.input, model.output, model.cache_read, model.cache_write]
        prices += [model.reasoning, model.per_request]
        if any(p is not None and (not p.is_finite() or p < 0) for p in prices):
            raise CatalogError(f"model {model.model_id!r}: prices must be finite and not negative")
    for alias, target in version.aliases.items():
        if target not in seen:
            raise CatalogError(f"alias {alias!r} points at {target!r}, which is not in the version")


async def create_version(conn: Connection, version: NewCatalogVersion) -> int:
    """Store ``version`` as a full snapshot and return its id. The caller owns the transaction."""
    _check(version)
    row = await conn.fetchrow(
        queries.INSERT_VERSION,
        version.label,
        version.effective_from,
        version.default_model,
        version.aliases,
        version.parent_id,
    )
    assert row is not None
    prices = [m.with_defaults() for m in version.models]
    await conn.execute(
        queries.INSERT_PRICES,
        row["id"],
        [p.model_id for p in prices],
        [p.name for p in prices],
        [p.tier for p in prices],
        [p.context_tokens for p in prices],
        [p.input for p in prices],
        [p.output for p in prices],
        [p.cache_read for p in prices],
        [p.cache_write for p in prices],
        [p.reasoning for p in prices],
        [p.per_request for p in prices],
    )
    return int(row["id"])


async def load_catalog(conn: Connection) -> Catalog:
    """Every version with its prices."""
    prices: dict[int, dict[str, ModelPrice]] = {}
    for r in await conn.fetch(queries.SELECT_PRICES):
        prices.setdefault(r["version_id"], {})[r["model_id"]] = ModelPrice(
            model_id=r["model_id"],
            name=r["name"],
            tier=r["tier"],
            input=r["input"],
            output=r["output"],
            cache_read=r["cache_read"],
            cache_write=r["cache_write"],
            reasoning=r["reasoning"],
            per_request=r["per_request"],
            context_tokens=r["context_tokens"],
        )
    versions = [
        CatalogVersion(
            id=r["id"],
            label=r["label"],
            effective_from=r["effective_from"],
            created_at=r["created_at"],
            default_model=r["default_model"],
            aliases=dict(r["aliases"] or {}),
            models=prices.get(r["id"], {}),
            parent_id=r["parent_id"],
        )
        for r in await conn.fetch(queries.SELECT_VERSIONS)
    ]
    return Catalog(versions)


class CatalogCache:
    """The process's copy of the catalog, reloaded when a version has been added.

    Versions are immutable, so a copy is only stale when the set of versions grew; one
    cheap ``count/max`` query per batch tells.
    """

    def __init__(self) -> None:
        self._catalog = Catalog([])
        self._stamp: tuple[int, int | None] = (0, None)

    async def get(self, conn: Connection) -> Catalog:
        row = await conn.fetchrow(queries.CATALOG_STAMP)
        assert row is not None
        stamp = (int(row["versions"]), row["newest"])
        if stamp != self._stamp:
            self._catalog = await load_catalog(conn)
            self._stamp = stamp
        return self._catalog


def parse_catalog_document(doc: dict[str, Any]) -> NewCatalogVersion:
    """A catalog in the AIMS file shape (``aims-v1.json``) as a new version."""
    try:
        models = [
            NewModelPrice(
                model_id=m["id"],
                name=m["name"],
                tier=m["tier"],
                input=Decimal(m["input"]),
                output=Decimal(m["output"]),
                cache_read=Decimal(m["cache_read"]) if "cache_read" in m else None,
                cache_write=Decimal(m["cache_write"]) if "cache_write" in m else None,
                reasoning=Decimal(m["reasoning"]) if "reasoning" in m else None,
                per_request=Decimal(m["per_request"]) if "per_request" in m else None,
                context_tokens=m.get("context_tokens"),
            )
            for m in doc["models"]
        ]
        return NewCatalogVersion(
            effective_from=datetime.fromisoformat(doc["effective_from"]),
            label=doc.get("version_label", "catalog"),
            models=models,
            aliases=dict(doc.get("aliases", {})),
            default_model=doc.get("default_model"),
        )
    except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
        raise CatalogError(f"catalog document is malformed: {exc!r}") from exc


def aims_catalog() -> NewCatalogVersion:
    """The AIMS model catalog shipped with LUC (version 1 of every new ledger)."""
    text = resources.files("service.pricing").joinpath(AIMS_CATALOG_FILE).read_text()
    return parse_catalog_document(json.loads(text))


async def seed_catalog(conn: Connection) -> bool:
    """Make the AIMS catalog version 1 when the ledger has no catalog yet."""
    async with conn.transaction():
        await conn.execute(queries.SEED_LOCK)
        if await conn.fetchval(queries.COUNT_VERSIONS):
            return False
        await create_version(conn, aims_catalog())
        return True
