"""Rate plans and their versions.

A plan's own price for a model is a catalog model entry's prices: ``PlanPriceIn`` and
``PlanPriceOut`` are the catalog's ``ModelIn`` and ``ModelOut`` without the model's
identity (id, name, tier, context), spelled out for OpenAPI; a unit test checks them
against the catalog's, so an entry a catalog takes, a plan takes too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from service.api.schemas.catalog import LongContextIn, LongContextOut, PriceString, long_context_out
from service.api.schemas.common import body_instant, money, timestamp, wire_struct
from service.customers.models import NewPlanVersion
from service.customers.plans import parse_markup
from service.customers.service import parse_amount
from service.errors import InvalidRequestError
from service.pricing.models import ModelPrice
from service.pricing.plans import PlanVersion, RatePlan
from service.recording.repricing import RepriceSummary
from service.wire import money_text


class PlanPriceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Decimal strings in USD per 1M tokens (``per_request`` per call), the catalog's rules:
    cache prices default to ``input``, ``reasoning`` to ``output``."""

    input: PriceString
    output: PriceString
    cache_read: PriceString | None = None
    cache_write: PriceString | None = None
    reasoning: PriceString | None = None
    per_request: PriceString | None = None
    long_context: list[LongContextIn] | None = None
    """As in the catalog: the plan's prices for every token of a call that reaches a
    threshold."""


class PlanVersionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    effective_from: str
    """RFC 3339 with an offset: events from then on are priced by this version."""
    basis: str
    """``catalog`` (the markup applies to ``cost_usd``) or ``actual`` (to
    ``actual_cost_usd``: the provider's reported cost where there is one)."""
    markup: str
    """Decimal string, a fraction of the basis cost: ``0.25`` adds 25 %. 0 to 10."""
    per_request_usd: str | None = None
    """Decimal string added to every event priced by markup."""
    minimum_monthly_usd: str | None = None
    """Decimal string: a monthly-invoiced customer pays at least this per month."""
    models: dict[str, PlanPriceIn] = msgspec.field(default_factory=dict)
    """The plan's own price per model (catalog id or alias): events of these models are
    priced at it, without markup."""

    def new_version(self) -> NewPlanVersion:
        effective_from = body_instant("effective_from", self.effective_from)
        return NewPlanVersion(
            effective_from=effective_from,
            basis=self.basis,
            markup=parse_markup(self.markup),
            per_request_usd=parse_amount("per_request_usd", self.per_request_usd or "0"),
            minimum_monthly_usd=None
            if self.minimum_monthly_usd is None
            else parse_amount("minimum_monthly_usd", self.minimum_monthly_usd),
            models={
                model: {k: v for k, v in msgspec.to_builtins(entry).items() if v is not None}
                for model, entry in self.models.items()
            },
        )


class PlanIn(PlanVersionIn, kw_only=True):
    """A plan and its first version."""

    id: str
    """Letters, digits and . _ : - (1–128): it goes in URLs and ``LUC_DEFAULT_PLAN``."""
    name: str


class PlanPriceOut(msgspec.Struct):
    """Every price, defaults applied."""

    input: str
    output: str
    cache_read: str
    cache_write: str
    reasoning: str
    per_request: str
    long_context: list[LongContextOut]


class PlanVersionOut(msgspec.Struct, kw_only=True):
    id: int
    """Global: a ledger entry priced by this version names it."""
    plan_id: str
    effective_from: str
    created_at: str | None
    basis: str
    markup: str
    per_request_usd: str
    minimum_monthly_usd: str | None
    models: dict[str, PlanPriceOut]
    """By catalog model id (an alias given at creation is resolved)."""


class PlanOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    created_at: str | None
    current_version: int | None
    """The version in force now; null while every version starts in the future."""
    versions: list[PlanVersionOut]
    """Every version, in creation order."""


class PlanList(msgspec.Struct):
    items: list[PlanOut]


def plan_price_out(price: ModelPrice) -> PlanPriceOut:
    return wire_struct(
        PlanPriceOut, price, long_context=[long_context_out(lc) for lc in price.long_context]
    )


def plan_version_out(version: PlanVersion) -> PlanVersionOut:
    return wire_struct(
        PlanVersionOut,
        version,
        minimum_monthly_usd=money(version.minimum_monthly_usd),
        models={k: plan_price_out(v) for k, v in sorted(version.models.items())},
    )


def plan_out(plan: RatePlan, now: datetime | None = None) -> PlanOut:
    current = plan.version_at(now or datetime.now(UTC))
    return PlanOut(
        id=plan.id,
        name=plan.name,
        created_at=timestamp(plan.created_at),
        current_version=None if current is None else current.id,
        versions=[plan_version_out(v) for v in plan.versions],
    )


def describe_models(document: Any) -> dict[str, PlanPriceIn]:
    """A ``models`` object read from a file (``luc plans``), checked as REST checks it."""
    try:
        return msgspec.convert(document, dict[str, PlanPriceIn])
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"models: {exc}") from None


class RepriceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    since: str
    """RFC 3339: re-price events that occurred at or after this time."""
    dry_run: bool = False
    """Report the change per customer and job; append nothing."""


class PriceDeltaOut(msgspec.Struct):
    events: int
    """Events whose price moved (for a customer: that it gained or lost)."""
    price_delta_usd: str


class CustomerDeltaOut(PriceDeltaOut, kw_only=True):
    customer_id: str | None
    """Null: jobs without a customer."""


class JobDeltaOut(PriceDeltaOut, kw_only=True):
    job_id: str


class RepriceOut(msgspec.Struct):
    plan_id: str
    since: str
    dry_run: bool
    events_examined: int
    """The events the plan prices or priced since ``since``."""
    events_changed: int
    entries_appended: int
    """0 on a dry run, and on a second run."""
    price_delta_usd: str
    """Change of the price of every event examined; the cost never moves."""
    customers: list[CustomerDeltaOut]
    """Per customer: a job moved from one customer to another lowers the first's price
    and raises the second's."""
    jobs: list[JobDeltaOut]


def reprice_out(summary: RepriceSummary) -> RepriceOut:
    return RepriceOut(
        plan_id=summary.plan_id or "",
        since=timestamp(summary.since) or "",
        dry_run=summary.dry_run,
        events_examined=summary.events_examined,
        events_changed=summary.events_changed,
        entries_appended=summary.entries_appended,
        price_delta_usd=money_text(summary.price_delta_usd),
        # Jobs without a customer (None) first, then by id.
        customers=[
            CustomerDeltaOut(
                customer_id=c, events=d.events, price_delta_usd=money_text(d.price_delta_usd)
            )
            for c, d in sorted(
                summary.customers.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")
            )
        ],
        jobs=[
            JobDeltaOut(job_id=j, events=d.events, price_delta_usd=money_text(d.price_delta_usd))
            for j, d in sorted(summary.jobs.items())
        ],
    )
