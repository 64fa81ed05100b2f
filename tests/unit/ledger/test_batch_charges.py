"""A batch stages each event with exactly the charge ``charge_for`` makes of it.

``BatchCharges`` looks a batch's quotes and rates up once and builds the staging rows
straight from the events; every column must be what the entry of ``charge_for`` holds, as
text where it travels as text (a Decimal's own text, exponent included): over catalog
versions, aliases, unknown models, long-context rates, stub answers and rate plans.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from service.ingest.models import UsageEvent
from service.ledger import service as ledger_service
from service.ledger.queries import STAGED_NAMES
from service.ledger.service import (
    BatchCharges,
    StagedCharge,
    charge_for,
    charges_for,
    staged_price,
)
from service.pricing.catalog import Catalog
from service.pricing.models import (
    CatalogVersion,
    ModelPrice,
    NewLongContextPrice,
    NewModelPrice,
)
from service.pricing.plans import PlanVersion
from service.tokens import TOKEN_FIELDS

D = Decimal
JAN, JUN = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
SONNET = NewModelPrice(
    model_id="anthropic/claude-sonnet-4.5",
    name="Sonnet",
    tier="standard",
    input=D("3.00"),
    output=D("15.00"),
    cache_read=D("0.30"),
    cache_write=D("3.75"),
    long_context=(NewLongContextPrice(200_001, D("6.00"), D("22.50")),),
).with_defaults()
FLASH = NewModelPrice(
    "google/gemini-3.0-flash", "Flash", "fast", D("0.1"), D("0.40")
).with_defaults()
FEE = NewModelPrice(
    "vendor/fee", "Fee", "economy", D("2"), D("4"), per_request=D("0.001")
).with_defaults()


def version(id: int, effective_from: datetime, *models: ModelPrice) -> CatalogVersion:
    return CatalogVersion(
        id=id,
        label=None,
        effective_from=effective_from,
        created_at=None,
        default_model=None,
        aliases={"flash": FLASH.model_id},
        models={m.model_id: m for m in models},
    )


# From June the prices change (and Flash's input is written with more places: the same
# value at another exponent).
CATALOG = Catalog(
    [
        version(1, JAN, SONNET, FLASH, FEE),
        version(2, JUN, replace(SONNET, output=D("16")), replace(FLASH, input=D("0.100")), FEE),
    ]
)


def plan(id: int, plan_id: str, basis: str, markup: str, **fields: Any) -> PlanVersion:
    return PlanVersion(
        id=id,
        plan_id=plan_id,
        effective_from=JAN,
        created_at=None,
        basis=basis,
        markup=D(markup),
        **fields,
    )


PLANS = [
    None,
    plan(7, "markup", "catalog", "0.25"),
    plan(8, "actual", "actual", "0.10", per_request_usd=D("0.001")),
    plan(9, "own", "catalog", "0", models={SONNET.model_id: replace(SONNET, input=D("2.40"))}),
]


@st.composite
def events(draw: st.DrawFn, index: int) -> UsageEvent:
    plain_in, cached, written = (draw(st.integers(0, 150_000)) for _ in range(3))
    plain_out, reasoning = draw(st.integers(0, 5_000)), draw(st.integers(0, 5_000))
    return UsageEvent(
        id=f"e{index}",
        occurred_at=JAN + timedelta(seconds=draw(st.integers(0, 300 * 86_400))),
        job_id="job-1",
        agent="ACHEEVY",
        provider=draw(st.sampled_from(["openrouter", "vertex", "stub"])),
        model=draw(st.sampled_from([*CATALOG.versions[0].models, "flash", "vendor/unknown"])),
        input_tokens=plain_in + cached + written,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=plain_out + reasoning,
        reasoning_tokens=reasoning,
        provider_cost_usd=draw(st.sampled_from([None, D("0.00123"), D("5E-9"), D("0")])),
        status=draw(st.sampled_from(["ok", "error"])),
        attributes=draw(st.sampled_from([None, {"route": "/chat", "n": [1, 2.5]}])),
        reservation_id=draw(st.sampled_from([None, "res-1"])),
        customer_id=draw(st.sampled_from([None, "cust-1"])),
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def expected_row(
    event: UsageEvent, customer_id: str | None, plan: PlanVersion | None
) -> StagedCharge:
    """The staging row, column by column, from ``charge_for``'s entry and the event."""
    entry = charge_for(event, CATALOG.quote(event.model, event.occurred_at), customer_id, plan)
    columns = {
        "event_id": event.id,
        "occurred_at": event.occurred_at,
        "job_id": event.job_id,
        "agent": event.agent,
        "provider": event.provider,
        "sent_model": event.model,
        **{name: getattr(event, name) for name in TOKEN_FIELDS},
        "provider_cost_usd": _text(event.provider_cost_usd),
        "status": event.status,
        "attributes": None
        if event.attributes is None
        else msgspec.json.encode(event.attributes).decode(),
        "reservation_id": event.reservation_id,
        "customer_id": event.customer_id,
        "model": entry.model,
        "tier": entry.tier,
        "catalog_version": entry.catalog_version,
        "long_context_from": entry.long_context_from,
        "billing_day": entry.billing_day,
        "unpriced_count": entry.unpriced_count,
        "cost_usd": _text(entry.cost_usd),
        "price_input": _text(entry.price_input),
        "price_output": _text(entry.price_output),
        "price_cache_read": _text(entry.price_cache_read),
        "price_cache_write": _text(entry.price_cache_write),
        "price_reasoning": _text(entry.price_reasoning),
        "price_per_request": _text(entry.price_per_request),
        "reason": entry.reason,
        "price_usd": _text(entry.price_usd),
        "job_customer_id": entry.customer_id,
        "plan_id": entry.plan_id,
        "plan_version": entry.plan_version,
    }
    assert list(columns) == list(STAGED_NAMES)
    return tuple(columns.values())


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6).flatmap(events),
            st.sampled_from([None, "cust-1", "cust-2"]),
            st.sampled_from(PLANS),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_each_staged_row_holds_the_charge_charge_for_makes(
    batch: list[tuple[UsageEvent, str | None, PlanVersion | None]],
) -> None:
    # The process's kept one (``charges_for``): its lookups are shared by the events of
    # every batch (every example), whatever their versions, models, providers and times.
    charges = charges_for(CATALOG)
    for event, customer_id, plan in batch:
        row = charges.row(event, customer_id, plan)
        assert row == expected_row(event, customer_id, plan)
        # Equal is not enough for money: the text is what PostgreSQL stores.
        assert [str(v) for v in row] == [str(v) for v in expected_row(event, customer_id, plan)]


def test_the_kept_charges_are_the_catalogs_own_and_start_afresh_when_full(
    monkeypatch: Any,
) -> None:
    kept = charges_for(CATALOG)
    assert charges_for(CATALOG) is kept
    other = Catalog(CATALOG.versions)  # another catalog loaded: its own lookups
    assert charges_for(other) is not kept and charges_for(other).catalog is other
    # Made-up models fill it: at KEPT_TARIFFS lookups it is dropped for a fresh one.
    monkeypatch.setattr(ledger_service, "KEPT_TARIFFS", 3)
    fresh = BatchCharges(CATALOG)
    monkeypatch.setitem(ledger_service._kept, CATALOG, fresh)
    for n in range(3):
        base = UsageEvent(
            id=f"e{n}",
            occurred_at=JAN,
            job_id="job-1",
            agent="ACHEEVY",
            provider="openrouter",
            model=f"made-up/model-{n}",
            input_tokens=1,
            output_tokens=0,
            provider_cost_usd=None,
            status="ok",
            attributes=None,
        )
        assert charges_for(CATALOG) is fresh
        fresh.row(base)
    assert len(fresh) == 3
    assert charges_for(CATALOG) is not fresh and len(charges_for(CATALOG)) == 0


def test_a_long_context_call_and_a_base_call_of_one_model_each_have_their_rate() -> None:
    # Sonnet at version 1: 200,000 input tokens at 3.00 = 600000.00 per 1M → 0.60;
    # 200,001 reach the long-context entry: every token at 6.00 → 1200006.00 per 1M →
    # 1.200006. The same BatchCharges prices both, each at its own rate.
    base = UsageEvent(
        id="base",
        occurred_at=JAN,
        job_id="job-1",
        agent="ACHEEVY",
        provider="openrouter",
        model=SONNET.model_id,
        input_tokens=200_000,
        output_tokens=0,
        provider_cost_usd=None,
        status="ok",
        attributes=None,
    )
    long = replace(base, id="long", input_tokens=200_001)
    charges = BatchCharges(CATALOG)
    rows = [dict(zip(STAGED_NAMES, charges.row(e), strict=True)) for e in (base, long, base)]
    assert [(r["long_context_from"], r["price_input"], r["cost_usd"]) for r in rows] == [
        (None, "3.00", "0.60"),
        (200_001, "6.00", "1.200006"),
        (None, "3.00", "0.60"),
    ]


def test_a_staged_price_reads_back_as_the_very_decimal_priced() -> None:
    # Flash at version 2 (input 0.100) under a 25 % markup: 1,000 input tokens at 0.100 =
    # 100.000 per 1M → 0.0001 (the quotient needs 4 places, more than the prices' 3, and
    # keeps no zero beyond them); × 1.25 = 0.000125.
    event = UsageEvent(
        id="e1",
        occurred_at=JUN,
        job_id="job-1",
        agent="ACHEEVY",
        provider="openrouter",
        model="flash",
        input_tokens=1_000,
        output_tokens=0,
        provider_cost_usd=None,
        status="ok",
        attributes=None,
    )
    row = BatchCharges(CATALOG).row(event, "cust-1", PLANS[1])
    event_id, customer_id, price, occurred_at = staged_price(row)
    assert (event_id, customer_id, str(price), occurred_at) == ("e1", "cust-1", "0.000125", JUN)
