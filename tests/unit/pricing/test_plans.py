"""Which rate plan version prices an event: the catalog's rule, latest effective_from not
after the event, ties to the version created last."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from service.pricing.plans import PlanVersion, RatePlan, plan_in_force


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def version(version_id: int, effective_from: str, markup: str = "0") -> PlanVersion:
    return PlanVersion(
        id=version_id,
        plan_id="standard",
        effective_from=at(effective_from),
        created_at=None,
        basis="catalog",
        markup=Decimal(markup),
    )


# Given out of order: the lookup must not depend on the order versions are loaded in.
PLAN = RatePlan.of(
    "standard",
    "Standard",
    None,
    [
        version(3, "2026-11-15T00:00:00+00:00", "0.30"),
        version(1, "2026-11-01T00:00:00+00:00", "0.10"),
        version(2, "2026-11-15T00:00:00+00:00", "0.20"),
    ],
)


def test_no_version_is_in_force_before_the_first_one() -> None:
    assert PLAN.version_at(at("2026-10-31T23:59:59.999999+00:00")) is None


def test_a_version_is_in_force_from_its_effective_from_on() -> None:
    in_force = PLAN.version_at(at("2026-11-01T00:00:00+00:00"))
    assert in_force is not None and in_force.id == 1


def test_the_last_microsecond_before_a_boundary_is_the_earlier_version() -> None:
    in_force = PLAN.version_at(at("2026-11-14T23:59:59.999999+00:00"))
    assert in_force is not None and in_force.id == 1


def test_at_a_boundary_two_versions_share_the_one_created_last_wins() -> None:
    in_force = PLAN.version_at(at("2026-11-15T00:00:00+00:00"))
    assert in_force is not None and (in_force.id, in_force.markup) == (3, Decimal("0.30"))


def test_offsets_compare_as_instants() -> None:
    # 01:00 at +01:00 is midnight UTC: the boundary itself.
    in_force = PLAN.version_at(at("2026-11-15T01:00:00+01:00"))
    assert in_force is not None and in_force.id == 3


def test_versions_are_listed_in_creation_order() -> None:
    assert [v.id for v in PLAN.versions] == [1, 2, 3]


DEFAULT = RatePlan.of("default", "Default", None, [version(9, "2026-01-01T00:00:00+00:00")])
PLANS = {"standard": PLAN, "default": DEFAULT}


def test_a_customer_s_plan_prices_its_events() -> None:
    in_force = plan_in_force(PLANS, "standard", "default", at("2026-11-20T10:00:00+00:00"))
    assert in_force is not None and in_force.id == 3


def test_without_a_plan_of_its_own_the_default_plan_prices() -> None:
    when = at("2026-11-20T10:00:00+00:00")
    for plan_id in (None, "deleted-or-mistyped"):
        in_force = plan_in_force(PLANS, plan_id, "default", when)
        assert in_force is not None and in_force.id == 9


def test_before_its_plan_starts_an_event_is_priced_by_the_default_plan() -> None:
    in_force = plan_in_force(PLANS, "standard", "default", at("2026-10-01T00:00:00+00:00"))
    assert in_force is not None and in_force.id == 9


def test_without_any_plan_in_force_nothing_prices_the_event() -> None:
    assert plan_in_force(PLANS, None, None, at("2026-11-20T10:00:00+00:00")) is None
    assert plan_in_force(PLANS, "standard", None, at("2026-10-01T00:00:00+00:00")) is None
    assert plan_in_force(PLANS, None, "default", at("2025-12-31T23:59:59+00:00")) is None
