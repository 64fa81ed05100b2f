"""A stub answer is priced at zero with its reason; re-rating moves a stub answer booked at
the catalog's price (before this rule) to zero, once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from service.ingest.models import UsageEvent
from service.ledger.service import charge_for
from service.pricing.catalog import NOT_BILLED_STUB, Catalog
from service.pricing.models import CatalogVersion, NewModelPrice
from service.pricing.plans import Plans
from service.recording.bookings import Booking, plan_rerating

AT = datetime(2026, 3, 1, tzinfo=UTC)
PRICE = NewModelPrice(
    model_id="vendor/model-a",
    name="Model A",
    tier="fast",
    input=Decimal("1"),
    output=Decimal("2"),
    per_request=Decimal("0.001"),
).with_defaults()
CATALOG = Catalog(
    [
        CatalogVersion(
            id=1,
            label="v1",
            effective_from=datetime(2026, 1, 1, tzinfo=UTC),
            created_at=None,
            default_model=None,
            aliases={"a": "vendor/model-a"},
            models={PRICE.model_id: PRICE},
        )
    ]
)


def event(provider: str, model: str = "a") -> UsageEvent:
    return UsageEvent(
        id=f"{provider}-1",
        occurred_at=AT,
        job_id="job-1",
        agent="ACHEEVY",
        provider=provider,
        model=model,
        input_tokens=1_000,
        cached_input_tokens=0,
        cache_write_tokens=0,
        output_tokens=500,
        reasoning_tokens=0,
        provider_cost_usd=None,
        status="ok",
        attributes=None,
    )


def test_a_stub_answer_is_charged_zero_with_its_reason_and_a_real_call_its_price() -> None:
    real = charge_for(event("openrouter"), CATALOG.quote("a", AT))
    # 1,000 × 1 + 500 × 2 = 2,000 per 1M = 0.002, + 0.001 per request
    assert (real.cost_usd, real.reason) == (Decimal("0.003"), None)
    stub = charge_for(event("stub"), CATALOG.quote("a", AT))
    assert (stub.cost_usd, stub.reason, stub.unpriced_count) == (Decimal(0), NOT_BILLED_STUB, 0)
    assert (stub.catalog_version, stub.model, stub.tier) == (1, "vendor/model-a", "fast")
    assert (stub.price_input, stub.price_output, stub.price_per_request) == (
        Decimal(0),
        Decimal(0),
        Decimal(0),
    )


def test_a_stub_answer_for_an_unknown_model_stays_unpriced_not_zero() -> None:
    stub = charge_for(event("stub", "vendor/nope"), CATALOG.quote("vendor/nope", AT))
    assert (stub.cost_usd, stub.unpriced_count, stub.catalog_version) == (None, 1, None)
    assert stub.reason == "model 'vendor/nope' is not in catalog version 1"


def test_re_rating_moves_a_stub_answer_booked_at_the_catalog_price_to_zero_once() -> None:
    stub = event("stub")
    old = Booking(
        stub, 1, "vendor/model-a", "fast", Decimal("0.003"), Decimal("0.003"), unpriced=False
    )
    plan = plan_rerating(old, CATALOG, Plans(), "re-rated since 2026-01-01T00:00:00+00:00")
    assert plan is not None
    reversal, rebooking = plan.entries
    assert (reversal.cost_usd, reversal.event_count, reversal.price_input) == (
        Decimal("-0.003"),
        -1,
        Decimal("1"),
    )
    assert (rebooking.cost_usd, rebooking.event_count, rebooking.catalog_version) == (
        Decimal(0),
        1,
        1,
    )
    assert rebooking.reason == f"re-rated since 2026-01-01T00:00:00+00:00; {NOT_BILLED_STUB}"
    assert plan.delta_usd == Decimal("-0.003")
    assert plan.actual_delta_usd == Decimal("-0.003")  # no reported cost: the catalog's moves it
    # Booked at zero now: a second run changes nothing.
    now = Booking(stub, 1, "vendor/model-a", "fast", Decimal(0), Decimal(0), unpriced=False)
    assert plan_rerating(now, CATALOG, Plans(), "again") is None
    # A real call at its price is left alone, as before.
    real = Booking(
        event("openrouter"), 1, "vendor/model-a", "fast", Decimal("0.003"), Decimal("0.003"), False
    )
    assert plan_rerating(real, CATALOG, Plans(), "again") is None
