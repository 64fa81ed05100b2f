"""Reconciliation's pure rules: which group drifts (on exact amounts), the ratio's digits,
the long-context threshold a model is checked against, and the wire row against the
declared measures."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from service.api.schemas.reconciliation import ReconciliationRowOut
from service.errors import InvalidRequestError
from service.pricing.catalog import Catalog
from service.pricing.models import CatalogVersion, NewModelPrice
from service.reconciliation.models import MEASURE_NAMES, Totals
from service.reconciliation.reasons import long_context_threshold, thresholds
from service.reconciliation.service import difference_ratio, drifts, group_keys

TOLERANCE = Decimal("0.01")


def totals(compared: int, cost: str, provider: str, unpriced: int = 0) -> Totals:
    return Totals(
        events=compared + unpriced,
        reported_events=compared + unpriced,
        unpriced_reported_events=unpriced,
        cost_usd=Decimal(cost),
        provider_cost_usd=Decimal(provider),
        unpriced_provider_cost_usd=Decimal(0),
    )


@pytest.mark.parametrize(
    ("group", "drift"),
    [
        (totals(20, "1", "1.01"), False),  # exactly the tolerance
        (totals(20, "1", "1.010000000000000000000000000000001"), True),  # one digit beyond
        (totals(20, "1", "0.989999999999999999999999999999999"), True),  # below, as far
        (totals(19, "1", "2"), False),  # too few reported events
        # SPEC §5 "over at least 20 reported events": the unpriced count among them
        (totals(19, "1", "2", unpriced=1), True),
        (totals(18, "1", "2", unpriced=1), False),
        (totals(20, "0", "2"), False),  # no catalog cost: no ratio to exceed
    ],
)
def test_drift_is_decided_on_the_exact_amounts(group: Totals, drift: bool) -> None:
    assert drifts(group, TOLERANCE) is drift


def test_the_ratio_has_twenty_significant_digits_and_none_without_a_catalog_cost() -> None:
    # 1 / 3 − 1 = −2/3 → −0.66666666666666666667 (away from zero at the 20th digit)
    assert difference_ratio(totals(20, "3", "1")) == Decimal("-0.66666666666666666667")
    # 4 / 3 − 1 = 1/3 → 0.33333333333333333334: away from zero, never shown smaller
    assert difference_ratio(totals(20, "3", "4")) == Decimal("0.33333333333333333334")
    assert difference_ratio(totals(20, "0.6", "0.312")) == Decimal("-0.48")
    assert difference_ratio(totals(20, "0", "0.5")) is None


@pytest.mark.parametrize(
    ("given", "keys"),
    [
        ("model", ["model"]),
        ("day, provider", ["day", "provider"]),
        ("model,model,day", ["model", "day"]),
    ],
)
def test_group_by_keeps_its_order_and_drops_repeats(given: str, keys: list[str]) -> None:
    assert group_keys(given) == keys


@pytest.mark.parametrize("given", [None, "", " , ", "model,", "agent", "Model"])
def test_group_by_refuses_what_is_not_a_key(given: str | None) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        group_keys(given)
    assert refused.value.status_code == 400


@dataclass(frozen=True)
class LongContext:
    min_input_tokens: int


def test_a_model_is_checked_against_its_own_long_context_threshold_when_it_has_one() -> None:
    plain = NewModelPrice("acme/a", "A", "fast", Decimal(1), Decimal(2)).with_defaults()
    assert long_context_threshold(plain) == long_context_threshold(None) == 200_001

    @dataclass(frozen=True)
    class WithLongContext:
        long_context: tuple[LongContext, ...]

    tiers = (LongContext(500_000), LongContext(128_001))
    assert long_context_threshold(WithLongContext(tiers)) == 128_001  # type: ignore[arg-type]

    version = CatalogVersion(
        id=7,
        label=None,
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        created_at=None,
        default_model=None,
        aliases={},
        models={"acme/a": plain, "acme/b": replace(plain, model_id="acme/b")},
    )
    # only thresholds other than the common one travel to the query
    assert thresholds(Catalog([version])) == ([], [], [])


def test_the_wire_row_spells_every_measure_out() -> None:
    fields = {f.name for f in msgspec.structs.fields(ReconciliationRowOut)}
    assert set(MEASURE_NAMES) <= fields


@pytest.mark.parametrize(
    ("provider", "shown"),
    [
        ("1.01", "0.01"),  # exactly the tolerance: no drift, shown at it
        ("1.010000000000000000000000000000001", "0.010000000000000000001"),  # beyond
        ("0.989999999999999999999999999999999", "-0.010000000000000000001"),  # below
        ("1.009999999999999999999999999999999", "0.010000000000000000000"),  # within
    ],
)
def test_a_ratio_shown_beyond_the_tolerance_is_one_that_drifts(provider: str, shown: str) -> None:
    # Half-even showed 0.01 for the second beside drift: true.
    group = totals(20, "1", provider)
    ratio = difference_ratio(group)
    assert ratio is not None and str(ratio) == shown
    assert drifts(group, TOLERANCE) is (ratio.copy_abs() > TOLERANCE)
