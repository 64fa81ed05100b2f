"""Reading and writing catalog versions. A version, once written, never changes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal
from importlib import resources
from typing import Any

from service.catalog import queries
from service.db import Connection, from_row
from service.errors import CatalogError, NotFoundError
from service.ingest.models import MAX_TOKENS
from service.locks import lock_catalog_seed
from service.pricing.catalog import Catalog
from service.pricing.models import (
    PRICE_CLASSES,
    TIERS,
    TOKEN_PRICES,
    CatalogVersion,
    LongContextPrice,
    ModelPrice,
    NewLongContextPrice,
    NewModelPrice,
)
from service.wire import (
    WireValueError,
    parse_instant,
    parse_money,
    storable_instant_problem,
)

AIMS_CATALOG_FILE = "aims-v1.json"
PREVIOUS_AIMS_CATALOG_FILE = "aims-v1-previous.json"
"""Version 1 as LUC seeded it before cache prices and long context (``upgrade_aims``)."""

# Bounds that keep a price storable exactly (asyncpg silently encodes a numeric of 1e131072
# or more as 0, and refuses one with more than 16383 decimals) and every event cost exact
# within pricing's 80 digits. No real price comes near them.
MAX_PRICE = Decimal("1e12")
PRICE_DECIMALS = 30
_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMALS)
_WIDE = Context(prec=100)
MAX_CONTEXT_TOKENS = 2**31 - 1  # catalog_prices.context_tokens is a PostgreSQL integer


def _storable(price: Decimal) -> bool:
    return (
        price.is_finite()
        and 0 <= price < MAX_PRICE
        and price == price.quantize(_QUANTUM, context=_WIDE)
    )


@dataclass(frozen=True)
class NewCatalogVersion:
    effective_from: datetime
    label: str | None
    models: list[NewModelPrice]
    aliases: dict[str, str] = field(default_factory=dict)
    default_model: str | None = None
    parent_id: int | None = None


MAX_NAME_CHARS = 256
"""Of an alias: an event's ``model`` is at most this long."""


def _text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` (a text column, or a jsonb key), if it cannot:
    as a refusal naming the field, not a driver error (a NUL in an alias was a 500)."""
    if "\x00" in value:
        return "must not contain the NUL character (U+0000)"
    if any("\ud800" <= c <= "\udfff" for c in value):
        return "holds a lone UTF-16 surrogate, which is not Unicode text"
    return None


def _check_text(where: str, value: str) -> None:
    if not 1 <= len(value) <= MAX_NAME_CHARS:
        raise CatalogError(f"{where}: must be 1 to {MAX_NAME_CHARS} characters, got {len(value)}")
    if problem := _text_problem(value):
        raise CatalogError(f"{where}: {problem}")


def check_version(version: NewCatalogVersion) -> None:
    """Refuses (``CatalogError``, naming what is wrong) a version the catalog cannot hold."""
    if version.label is not None and (problem := _text_problem(version.label)):
        raise CatalogError(f"label: {problem}")
    if version.effective_from.tzinfo is None:
        raise CatalogError("effective_from: timestamp has no UTC offset; add 'Z' or '+hh:mm'")
    if problem := storable_instant_problem(version.effective_from):
        raise CatalogError(f"effective_from: {problem}")
    if not version.models:
        raise CatalogError("models: a catalog version needs at least one model")
    seen: set[str] = set()
    for model in version.models:
        if model.model_id in seen:
            raise CatalogError(f"models: model {model.model_id!r} appears twice")
        seen.add(model.model_id)
        if problem := _text_problem(model.model_id):
            raise CatalogError(f"models: model id {model.model_id[:80]!r} {problem}")
        if problem := _text_problem(model.name):
            raise CatalogError(f"model {model.model_id!r}: name {problem}")
        if model.tier not in TIERS:
            raise CatalogError(f"model {model.model_id!r}: tier must be one of {', '.join(TIERS)}")
        prices = [model.input, model.output, model.cache_read, model.cache_write]
        prices += [model.reasoning, model.per_request]
        for name in PRICE_CLASSES:
            price = getattr(model, name)
            if price is not None and not _storable(price):
                raise CatalogError(f"model {model.model_id!r}: {_PRICE_RULE} ({name} is {price:f})")
        _check_long_context(model)
        if model.context_tokens is not None and not 0 < model.context_tokens <= MAX_CONTEXT_TOKENS:
            raise CatalogError(
                f"model {model.model_id!r}: context_tokens must be between 1 and "
                f"{MAX_CONTEXT_TOKENS}"
            )
    for alias, target in version.aliases.items():
        if not alias:
            # An event's model is at least one character: an empty alias names nothing.
            raise CatalogError("aliases: an alias is a name of at least one character")
        # An event's model is at most MAX_NAME_CHARS: a longer alias names nothing either.
        _check_text(f"aliases: alias {alias[:80]!r}", alias)
        if target not in seen:
            raise CatalogError(
                f"aliases: alias {alias!r} points at {target!r}, which is not in the version"
            )
        if alias in seen:
            # Pricing resolves an alias before it looks up a model: the model of that id
            # would never be priced at its own prices.
            raise CatalogError(
                f"aliases: alias {alias!r} is also the id of a model of the version; an alias "
                "names another model (rename the model, or drop the alias)"
            )
    if version.default_model is not None and version.default_model not in seen:
        raise CatalogError(f"default_model {version.default_model!r} is not in the version")


_PRICE_RULE = (
    f"prices must be finite, not negative, below {MAX_PRICE:f} and have at most "
    f"{PRICE_DECIMALS} decimal places"
)


def price_problem(price: Decimal) -> str | None:
    """Why ``price`` cannot be a price (a catalog's or a plan's, per 1M tokens or per call),
    or None."""
    return None if _storable(price) else f"{_PRICE_RULE} (it is {price:f})"


def _check_long_context(model: NewModelPrice) -> None:
    """Thresholds positive integers an event can reach, unique within the model; prices
    like any price."""
    thresholds: set[int] = set()
    for index, entry in enumerate(model.long_context):
        where = f"model {model.model_id!r}: long_context[{index}]"
        threshold = entry.min_input_tokens
        # bool is an int in Python; a JSON true is no token count.
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise CatalogError(f"{where}.min_input_tokens must be a positive integer")
        if threshold > MAX_TOKENS:
            raise CatalogError(
                f"{where}.min_input_tokens must be at most {MAX_TOKENS} (the most input "
                "tokens an event carries); a higher threshold could never be reached"
            )
        if threshold in thresholds:
            raise CatalogError(
                f"{where}.min_input_tokens {threshold} appears twice; thresholds are unique "
                "within a model"
            )
        thresholds.add(threshold)
        for name in TOKEN_PRICES:
            price = getattr(entry, name)
            if price is not None and not _storable(price):
                raise CatalogError(f"{where}: {_PRICE_RULE} ({name} is {price:f})")


def derive_version(
    parent: CatalogVersion | None,
    *,
    effective_from: datetime,
    label: str | None,
    models: list[NewModelPrice],
    remove: list[str],
    aliases: dict[str, str] | None,
    default_model: str | None,
) -> NewCatalogVersion:
    """A full snapshot: ``models`` alone, or the parent's models changed by ``models``
    (added or replaced) and ``remove`` (dropped). Aliases merge over the parent's."""
    if parent is None:
        if remove:
            raise CatalogError("remove: only a version with a parent can remove models")
        return NewCatalogVersion(
            effective_from=effective_from,
            label=label,
            models=models,
            aliases=dict(aliases or {}),
            default_model=default_model,
        )
    snapshot = {m.model_id: _as_new(m) for m in parent.models.values()}
    for index, model_id in enumerate(remove):
        if model_id in remove[:index]:
            raise CatalogError(f"remove: model {model_id!r} appears twice")
        if model_id not in snapshot:
            raise CatalogError(f"remove: model {model_id!r} is not in parent version {parent.id}")
        if any(m.model_id == model_id for m in models):
            raise CatalogError(f"model {model_id!r} is both removed and given")
        del snapshot[model_id]
    given: set[str] = set()
    for model in models:
        if model.model_id in given:
            raise CatalogError(f"models: model {model.model_id!r} appears twice")
        given.add(model.model_id)
        snapshot[model.model_id] = model
    # A parent's alias that no event can name (stored before such aliases were refused)
    # is left behind rather than refusing every version derived from it.
    merged_aliases = {
        alias: target
        for alias, target in parent.aliases.items()
        if target in snapshot and 1 <= len(alias) <= MAX_NAME_CHARS
    } | dict(aliases or {})
    inherited_default = parent.default_model if parent.default_model in snapshot else None
    return NewCatalogVersion(
        effective_from=effective_from,
        label=label,
        models=list(snapshot.values()),
        aliases=merged_aliases,
        default_model=default_model or inherited_default,
        parent_id=parent.id,
    )


def _as_new(price: ModelPrice) -> NewModelPrice:
    """A stored price as an entry of a new version (every price explicit): the same fields."""
    fields = {f.name: getattr(price, f.name) for f in dataclasses.fields(price)}
    return NewModelPrice(
        **{**fields, "long_context": tuple(_long_as_new(lc) for lc in price.long_context)}
    )


def _long_as_new(entry: LongContextPrice) -> NewLongContextPrice:
    return NewLongContextPrice(
        **{f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
    )


async def create_version(conn: Connection, version: NewCatalogVersion) -> int:
    """Store ``version`` as a full snapshot and return its id. The caller owns the transaction."""
    check_version(version)
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
    long_context = [(p.model_id, lc) for p in prices for lc in p.long_context]
    if long_context:
        await conn.execute(
            queries.INSERT_LONG_CONTEXT,
            row["id"],
            [model_id for model_id, _ in long_context],
            [lc.min_input_tokens for _, lc in long_context],
            *([getattr(lc, k) for _, lc in long_context] for k in TOKEN_PRICES),
        )
    return int(row["id"])


async def load_catalog(conn: Connection) -> Catalog:
    """Every version with its prices."""
    long_context: dict[tuple[int, str], list[LongContextPrice]] = {}
    for r in await conn.fetch(queries.SELECT_LONG_CONTEXT):
        long_context.setdefault((r["version_id"], r["model_id"]), []).append(
            from_row(LongContextPrice, r)
        )
    prices: dict[int, dict[str, ModelPrice]] = {}
    for r in await conn.fetch(queries.SELECT_PRICES):
        prices.setdefault(r["version_id"], {})[r["model_id"]] = from_row(
            ModelPrice,
            r,
            long_context=tuple(long_context.get((r["version_id"], r["model_id"]), ())),
        )
    versions = [
        from_row(
            CatalogVersion,
            r,
            aliases=dict(r["aliases"] or {}),
            models=prices.get(r["id"], {}),
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

    async def get(self, conn: Connection, stamp: tuple[int, int | None] | None = None) -> Catalog:
        """The catalog as the database holds it; ``stamp`` is the ``versions, newest`` row
        of ``queries.CATALOG_STAMP`` when the caller has just read it."""
        if stamp is None:
            row = await conn.fetchrow(queries.CATALOG_STAMP)
            assert row is not None
            stamp = (int(row["versions"]), row["newest"])
        if stamp != self._stamp:
            self._catalog = await load_catalog(conn)
            self._stamp = stamp
        return self._catalog

    async def model_id(self, conn: Connection, model: str, at: datetime) -> str:
        """The catalog id ``model`` names at ``at``: an alias resolves as pricing resolves
        it (gemini-3.0-flash → google/gemini-3.0-flash); any other name is itself."""
        return (await self.get(conn)).quote(model, at).model_id

    @property
    def loaded(self) -> Catalog | None:
        """The catalog as last loaded, without asking the database; None before the first
        load. Only ``LUC_INGEST_PERSIST=0`` (a benchmark) prices against it as it is."""
        return None if self._stamp == (0, None) else self._catalog

    @property
    def stamp(self) -> tuple[int, int | None]:
        """The ``versions, newest`` of the catalog as last loaded ((0, None) before)."""
        return self._stamp


REQUIRED_PRICES = ("input", "output")


def _prices(where: str, raw: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Decimal]:
    return {
        name: parse_money(f"{where}.{name}", raw[name])
        for name in names
        if name in REQUIRED_PRICES or name in raw
    }


def new_model_price(raw: Mapping[str, Any]) -> NewModelPrice:
    """A model entry as an author writes it (the catalog file, ``POST /v1/catalog/versions``):
    prices are decimal strings by SPEC §2's money rule, never negative, per 1M tokens; an
    optional price left out follows the default rule, in a long-context entry too (its own
    input and output). Raises ``WireValueError`` naming the price, ``KeyError`` for a
    missing field."""
    where = f"models[{raw['id']}]"
    long_context = raw.get("long_context") or []
    if not isinstance(long_context, list):
        raise WireValueError(f"{where}.long_context", "expected a list of entries")
    return NewModelPrice(
        model_id=raw["id"],
        name=raw["name"],
        tier=raw["tier"],
        **_prices(where, raw, PRICE_CLASSES),
        context_tokens=raw.get("context_tokens"),
        long_context=tuple(
            NewLongContextPrice(
                min_input_tokens=entry["min_input_tokens"],
                **_prices(f"{where}.long_context[{i}]", entry, TOKEN_PRICES),
            )
            for i, entry in enumerate(long_context)
        ),
    )


def checked_model_price(raw: Mapping[str, Any]) -> NewModelPrice:
    """``new_model_price``, a price that is not a decimal string being a ``CatalogError``."""
    try:
        return new_model_price(raw)
    except WireValueError as exc:
        raise CatalogError(str(exc)) from None


def catalog_version(catalog: Catalog, version_id: int) -> CatalogVersion:
    """Version ``version_id`` of ``catalog``."""
    version = catalog.by_id.get(version_id)
    if version is None:
        raise NotFoundError(f"catalog version {version_id} does not exist")
    return version


def parse_catalog_document(doc: dict[str, Any]) -> NewCatalogVersion:
    """A catalog in the AIMS file shape (``aims-v1.json``) as a new version."""
    try:
        models = [new_model_price(m) for m in doc["models"]]
        return NewCatalogVersion(
            effective_from=parse_instant("effective_from", doc["effective_from"]),
            label=doc.get("version_label", "catalog"),
            models=models,
            aliases=dict(doc.get("aliases", {})),
            default_model=doc.get("default_model"),
        )
    except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
        raise CatalogError(f"catalog document is malformed: {exc!r}") from exc


def aims_catalog(file: str = AIMS_CATALOG_FILE) -> NewCatalogVersion:
    """The AIMS model catalog shipped with LUC (version 1 of every new ledger)."""
    text = resources.files("service.pricing").joinpath(file).read_text()
    return parse_catalog_document(json.loads(text))


def same_content(version: CatalogVersion, new: NewCatalogVersion) -> bool:
    """Whether ``version`` holds what ``new`` would: the same start, models and prices
    (defaults applied, compared by value), aliases and default model. Labels, ids and
    parents do not count."""
    return (
        version.effective_from == new.effective_from
        and version.models == {m.model_id: m.with_defaults() for m in new.models}
        and version.aliases == new.aliases
        and version.default_model == new.default_model
    )


def bundled_catalog() -> Catalog:
    """The AIMS catalog shipped with LUC, without a database: the price lookup of a gateway
    that cannot read LUC's own (``gateway.ports.fixed_catalog(bundled_catalog())``)."""
    new = aims_catalog()
    version = CatalogVersion(
        id=0,
        label=new.label,
        effective_from=new.effective_from,
        created_at=None,
        default_model=new.default_model,
        aliases=new.aliases,
        models={m.model_id: m.with_defaults() for m in new.models},
    )
    return Catalog([version])


async def seed_catalog(conn: Connection) -> bool:
    """Make the AIMS catalog version 1 when the ledger has no catalog yet."""
    async with conn.transaction():
        await lock_catalog_seed(conn)
        if await conn.fetchval(queries.COUNT_VERSIONS):
            return False
        await create_version(conn, aims_catalog())
        return True


def check_price_entry(model: NewModelPrice) -> None:
    """The catalog's checks of one model entry (its prices, tier and context), for a price
    list that is not a catalog version: a rate plan's own prices (``service.customers``)
    obey exactly the catalog's rules. Raises ``CatalogError``."""
    # Any instant with an offset: a lone entry has no time of its own.
    when = datetime.now().astimezone()
    check_version(NewCatalogVersion(effective_from=when, label=None, models=[model]))
