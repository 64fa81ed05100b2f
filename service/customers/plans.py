"""Rate plans and their versions in PostgreSQL. A version, once written, never changes.

A plan's own price for a model is a catalog model entry: parsed by the catalog's parser
(``catalog.service.new_model_price``) and checked by the catalog's rules
(``check_price_entry``), held as the pure ``ModelPrice``, so a plan can hold exactly what a
catalog entry holds and nothing is declared twice. Model names are resolved through the
catalog's aliases when the version is created, and must name a catalog model: a plan
price for a model LUC never prices would never apply, which is a mistake worth refusing.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import asyncpg

from service.catalog.service import check_price_entry, new_model_price, price_problem
from service.customers import queries
from service.customers.models import NewPlanVersion
from service.customers.service import MAX_NAME_CHARS, check_text
from service.db import Connection, from_row
from service.errors import (
    CatalogError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    SettingsError,
)
from service.pricing.catalog import Catalog
from service.pricing.models import ModelPrice
from service.pricing.plans import BASES, MAX_MARKUP, Plans, PlanVersion, RatePlan
from service.wire import WireValueError, instant_text, parse_money, storable_instant_problem

MAX_PLAN_ID_CHARS = 128
# Plan ids go in URLs and in LUC_DEFAULT_PLAN: letters, digits and . _ : - only.
_PLAN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")


def check_plan_id(plan_id: str) -> str:
    check_text("id", plan_id, MAX_PLAN_ID_CHARS)
    if not set(plan_id) <= _PLAN_ID_CHARS:
        raise InvalidRequestError(
            f"id: {plan_id!r} may hold only letters, digits and . _ : - (it goes in URLs)"
        )
    return plan_id


def parse_markup(text: str) -> Decimal:
    """A markup as a decimal string: a fraction of the basis cost, 0 to 10 (1000 %)."""
    try:
        markup = parse_money("markup", text, signed=True)
    except WireValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    # "-0" too: no sign where the value cannot be negative (SPEC §2), as "+0.1" is refused.
    if markup < 0 or text.lstrip().startswith("-"):
        said = "is negative" if markup < 0 else "has a sign"
        raise InvalidRequestError(
            f"markup: {text!r} {said}; a markup is 0 or more (0.25 adds 25 %), and a "
            "discount is the plan's own price for a model (models)"
        )
    if markup > MAX_MARKUP:
        raise InvalidRequestError(
            f"markup: {text!r} is above {MAX_MARKUP} (1000 %); a markup is a fraction of "
            "the cost (0.25 adds 25 %)"
        )
    return markup


def _catalog_model(catalog: Catalog, name: str) -> ModelPrice:
    """The catalog model ``name`` (an id or an alias) names, in the newest version that
    knows it: the id a plan's price is kept under, and the model's name and tier."""
    for version in reversed(catalog.versions):
        model = version.price_of(name)
        if model is not None:
            return model
    raise InvalidRequestError(
        f"models: {name!r} is not a model of any catalog version (GET /v1/catalog lists "
        "them; an alias works too)"
    )


def own_prices(
    catalog: Catalog, models: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """A version's own prices as stored: by catalog model id, each entry as given (its
    decimal strings) with the model's catalog name and tier; every entry checked as the
    catalog checks its own."""
    stored: dict[str, dict[str, Any]] = {}
    given_as: dict[str, str] = {}
    for name, entry in models.items():
        model = _catalog_model(catalog, name)
        if model.model_id in stored:
            raise InvalidRequestError(
                f"models: {given_as[model.model_id]!r} and {name!r} are the same model "
                f"({model.model_id}); give its price once"
            )
        given_as[model.model_id] = name
        raw = {**entry, "id": model.model_id, "name": model.name, "tier": model.tier}
        try:
            check_price_entry(new_model_price(raw))
        except WireValueError as exc:  # names the price: models[<model id>].<price>
            raise InvalidRequestError(str(exc)) from None
        except KeyError as exc:
            raise InvalidRequestError(f"models[{name}]: {exc.args[0]} is required") from None
        except CatalogError as exc:
            raise InvalidRequestError(exc.message) from None
        stored[model.model_id] = {k: v for k, v in raw.items() if k != "id"}
    return stored


def _model_price(model_id: str, stored: Mapping[str, Any]) -> ModelPrice:
    return new_model_price({**stored, "id": model_id}).with_defaults()


def _check_version(version: NewPlanVersion) -> None:
    if version.effective_from.tzinfo is None:
        raise InvalidRequestError("effective_from: timestamp has no UTC offset; add 'Z'")
    if problem := storable_instant_problem(version.effective_from):
        # Stored, it read back naive and every later read of the plans failed.
        raise InvalidRequestError(f"effective_from: {problem}")
    if version.basis not in BASES:
        raise InvalidRequestError(f"basis: {version.basis!r} is not one of {', '.join(BASES)}")
    if not 0 <= version.markup <= MAX_MARKUP:
        raise InvalidRequestError(f"markup: must be between 0 and {MAX_MARKUP}")
    for name in ("per_request_usd", "minimum_monthly_usd"):
        amount = getattr(version, name)
        if amount is not None and amount < 0:
            raise InvalidRequestError(f"{name}: must not be negative")
    # A price per call, as a model's own per_request is: 40 nines billed every call 10^40.
    if problem := price_problem(version.per_request_usd):
        raise InvalidRequestError(f"per_request_usd: {problem}")


async def _insert_version(
    conn: Connection, plan_id: str, version: NewPlanVersion, catalog: Catalog
) -> int:
    _check_version(version)
    version_id = await conn.fetchval(
        queries.INSERT_PLAN_VERSION,
        plan_id,
        version.effective_from,
        version.basis,
        version.markup,
        version.per_request_usd,
        version.minimum_monthly_usd,
        own_prices(catalog, version.models),
    )
    return int(version_id)


async def create_plan(
    conn: Connection, plan_id: str, name: str, first: NewPlanVersion, catalog: Catalog
) -> RatePlan:
    """A plan with its first version; 409 when the id is taken."""
    check_plan_id(plan_id)
    check_text("name", name, MAX_NAME_CHARS)
    try:
        async with conn.transaction():
            await conn.execute(queries.INSERT_PLAN, plan_id, name)
            await _insert_version(conn, plan_id, first, catalog)
    except asyncpg.UniqueViolationError:
        raise ConflictError(f"plan {plan_id!r} already exists") from None
    return await get_plan(conn, plan_id)


async def add_plan_version(
    conn: Connection, plan_id: str, version: NewPlanVersion, catalog: Catalog
) -> PlanVersion:
    """A new version of ``plan_id``; earlier versions stay as they were."""
    if not await conn.fetchval(queries.PLAN_EXISTS, plan_id):
        raise NotFoundError(f"plan {plan_id!r} does not exist")
    version_id = await _insert_version(conn, plan_id, version, catalog)
    plan = await get_plan(conn, plan_id)
    return next(v for v in plan.versions if v.id == version_id)


def _version(row: asyncpg.Record) -> PlanVersion:
    models = {k: _model_price(k, v) for k, v in sorted(row["models"].items())}
    return from_row(PlanVersion, row, models=models)


async def get_plan(conn: Connection, plan_id: str) -> RatePlan:
    row = await conn.fetchrow(queries.SELECT_PLAN, plan_id)
    if row is None:
        raise NotFoundError(f"plan {plan_id!r} does not exist")
    versions = [_version(r) for r in await conn.fetch(queries.SELECT_VERSIONS_OF_PLAN, plan_id)]
    return RatePlan.of(row["id"], row["name"], row["created_at"], versions)


async def load_plans(conn: Connection) -> dict[str, RatePlan]:
    """Every plan with every version, by id: what pricing looks versions up in."""
    versions: dict[str, list[PlanVersion]] = {}
    for r in await conn.fetch(queries.SELECT_PLAN_VERSIONS):
        versions.setdefault(r["plan_id"], []).append(_version(r))
    return {
        r["id"]: RatePlan.of(r["id"], r["name"], r["created_at"], versions.get(r["id"], []))
        for r in await conn.fetch(queries.SELECT_PLANS)
    }


PlanStamp = tuple[int, int | None]
"""``(plan versions, newest version id)``: ``queries.PLAN_STAMP``."""


class PlanCache:
    """The process's copy of every rate plan, with ``LUC_DEFAULT_PLAN``: what ingest and
    re-pricing price events with, without a query per event.

    As ``catalog.service.CatalogCache``: versions are immutable, so the copy is stale only
    when a version was added (here or by another process); the stamp that tells is read
    once per batch, in the statement that opens it (``recording.queries.OPEN_BATCH``).
    """

    def __init__(self, default_plan: str | None = None) -> None:
        self.default_plan = default_plan
        self._plans = Plans(default_plan=default_plan)
        self._stamp: PlanStamp = (0, None)
        self._read = False

    @property
    def loaded(self) -> tuple[Plans, PlanStamp] | None:
        """The plans as last read, with their stamp, without asking the database; None
        before the first read (a stamp of (0, None) is also that of no plan at all)."""
        return (self._plans, self._stamp) if self._read else None

    async def get(self, conn: Connection, stamp: PlanStamp | None = None) -> Plans:
        """The plans as the database holds them; ``stamp`` when the caller just read it."""
        if stamp is None:
            row = await conn.fetchrow(queries.PLAN_STAMP)
            assert row is not None
            stamp = (int(row["plan_versions"]), row["newest_plan_version"])
        if stamp != self._stamp:
            self._plans = Plans(await load_plans(conn), self.default_plan)
            self._stamp = stamp
        self._read = True
        return self._plans


async def record_default_plan(conn: Connection, plan_id: str | None) -> None:
    """Write the default plan this server prices with, for the commands run beside it."""
    await conn.execute(queries.RECORD_SERVERS_DEFAULT_PLAN, plan_id)


async def servers_default_plan(conn: Connection, configured: str | None) -> str | None:
    """The default plan a command that prices entries (re-rating, re-pricing, a monthly
    invoice) must use: the one ``luc serve`` last started with, so that the command prices
    as the server does. An operator's shell rarely carries the server's environment: a
    re-rating run without ``LUC_DEFAULT_PLAN`` priced every job without a customer at its
    catalog cost. ``configured`` (this process's ``LUC_DEFAULT_PLAN``) unset takes the
    server's; set to another, it is refused rather than picked between. With no server
    started yet, ``configured`` is the one, and it must exist."""
    row = await conn.fetchrow(queries.SELECT_SERVERS_DEFAULT_PLAN)
    if row is None:
        await check_default_plan(conn, configured)
        return configured
    recorded: str | None = row["plan_id"]
    if configured is not None and configured != recorded:
        said = "no default plan" if recorded is None else f"default plan {recorded!r}"
        raise SettingsError(
            f"LUC_DEFAULT_PLAN: luc serve prices with {said} (since it started at "
            f"{instant_text(row['recorded_at'])}) and this command was given {configured!r}: "
            "run it with the server's setting (or unset), or restart the server with the "
            "new one first"
        )
    await check_default_plan(conn, recorded)
    return recorded


async def check_default_plan(conn: Connection, plan_id: str | None) -> None:
    """``LUC_DEFAULT_PLAN`` names a plan that exists: checked at start-up, so a typo stops
    the service instead of pricing every job without a customer at the catalog cost."""
    if plan_id is not None and not await conn.fetchval(queries.PLAN_EXISTS, plan_id):
        raise SettingsError(
            f"LUC_DEFAULT_PLAN: plan {plan_id!r} does not exist; create it first "
            "(luc plans create) or unset LUC_DEFAULT_PLAN"
        )
