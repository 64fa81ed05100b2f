"""Rate plans: immutable, effective-dated versions, chosen like catalog versions.

A plan turns what an event cost into what its customer pays (``pricing.price``). Which
version prices an event is the catalog's rule: the latest ``effective_from`` not after
``occurred_at``, ties to the version created last (the highest id).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from service.pricing.models import ModelPrice

BASES = ("catalog", "actual")
"""What a markup applies to: ``cost_usd`` (the catalog's list price) or ``actual_cost_usd``
(the provider's reported cost where there is one, else the catalog's)."""
CATALOG_BASIS, ACTUAL_BASIS = BASES

MAX_MARKUP = Decimal(10)
"""1000 %: a markup above it is a typo (25 written for 0.25), not a price."""


@dataclass(frozen=True, slots=True)
class PlanVersion:
    """What a plan charges from ``effective_from`` on. Never changes once created."""

    id: int
    plan_id: str
    effective_from: datetime
    created_at: datetime | None
    basis: str
    """``catalog`` or ``actual`` (``BASES``)."""
    markup: Decimal
    """A fraction of the basis cost added to it: 0.25 is 25 %. Between 0 and ``MAX_MARKUP``;
    a discount is a plan's own price for the model."""
    per_request_usd: Decimal = Decimal(0)
    """Added to every event priced by markup (not to one the plan prices itself: its own
    entry has its own ``per_request``)."""
    minimum_monthly_usd: Decimal | None = None
    """What a customer invoiced monthly pays at least in a month (applied by invoicing)."""
    models: Mapping[str, ModelPrice] = field(default_factory=dict)
    """The plan's own prices, by catalog model id (aliases resolved when it was created)."""


@dataclass(frozen=True, slots=True)
class RatePlan:
    """A plan and every version it has had; versions ordered for lookup by event time."""

    id: str
    name: str
    created_at: datetime | None
    versions: tuple[PlanVersion, ...]
    """In creation order (by id)."""
    _by_time: tuple[PlanVersion, ...] = field(init=False, repr=False, compare=False)
    _starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # On equal effective_from the version created last wins: ids ascend within a time
        # and the bisect takes the rightmost (as ``pricing.catalog.Catalog`` does).
        by_time = tuple(sorted(self.versions, key=lambda v: (v.effective_from, v.id)))
        object.__setattr__(self, "_by_time", by_time)
        object.__setattr__(self, "_starts", tuple(v.effective_from for v in by_time))

    @classmethod
    def of(
        cls, id: str, name: str, created_at: datetime | None, versions: Iterable[PlanVersion]
    ) -> RatePlan:
        return cls(id, name, created_at, tuple(sorted(versions, key=lambda v: v.id)))

    def version_at(self, when: datetime) -> PlanVersion | None:
        """The version in force at ``when``, or ``None`` before the plan's first one."""
        index = bisect.bisect_right(self._starts, when)
        return self._by_time[index - 1] if index else None


def plan_in_force(
    plans: Mapping[str, RatePlan], plan_id: str | None, default_plan: str | None, when: datetime
) -> PlanVersion | None:
    """The version that prices an event at ``when`` of a customer whose plan is ``plan_id``
    (None: the job has no customer, its customer is not registered, or has no plan).

    That plan's version in force, else ``default_plan``'s (``LUC_DEFAULT_PLAN``): a plan
    whose first version starts after the event does not price it. None: no plan prices the
    event, and its price is its catalog cost (``pricing.price.price_of``).
    """
    for candidate in (plan_id, default_plan):
        plan = plans.get(candidate) if candidate is not None else None
        version = plan.version_at(when) if plan is not None else None
        if version is not None:
            return version
    return None


@dataclass(frozen=True, slots=True)
class Plans:
    """Every rate plan, and the one ``LUC_DEFAULT_PLAN`` names: what prices an event for its
    customer (``in_force``). Loaded like the catalog and cached (``customers.plans``)."""

    plans: Mapping[str, RatePlan] = field(default_factory=dict)
    default_plan: str | None = None

    def in_force(self, plan_id: str | None, when: datetime) -> PlanVersion | None:
        """The version pricing an event at ``when`` of a customer whose plan is ``plan_id``
        (``plan_in_force``)."""
        if not self.plans:  # no plan at all (the usual case of a batch): none prices it
            return None
        return plan_in_force(self.plans, plan_id, self.default_plan, when)
