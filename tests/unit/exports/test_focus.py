"""The FOCUS form of one ledger row, without a database: cells, nulls, names, periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from service.errors import InvalidRequestError
from service.exports.focus import HEADER, cells
from service.exports.models import ExportRange, FocusRow
from service.exports.service import MAX_DAYS, export_range, month_slices

D = Decimal
SPAN = ExportRange(datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def row(**given: Any) -> FocusRow:
    fields: dict[str, Any] = {
        "day": date(2026, 12, 31),
        "job_id": "job-1",
        "agent": "ACHEEVY",
        "model": "google/gemini-3.0-flash",
        "provider": "openrouter",
        "catalog_versions": (1,),
        "events": 3,
        "unpriced_events": 0,
        "cost_usd": D("0.0009"),
        "provider_cost_usd": None,
        "actual_cost_usd": D("0.0009"),
        "input_tokens": 3000,
        "cached_input_tokens": 1000,
        "output_tokens": 1500,
        "reasoning_tokens": 500,
        **given,
    }
    return FocusRow(**fields)


def cell_map(focus_row: FocusRow, span: ExportRange = SPAN) -> dict[str, str]:
    return dict(zip(HEADER, cells(focus_row, span), strict=True))


def test_the_last_day_of_the_year_is_billed_in_december() -> None:
    out = cell_map(row())
    assert (out["BillingPeriodStart"], out["BillingPeriodEnd"]) == (
        "2026-12-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    )
    assert (out["ChargePeriodStart"], out["ChargePeriodEnd"]) == (
        "2026-12-31T00:00:00Z",
        "2027-01-01T00:00:00Z",
    )


def test_tokens_are_counted_once_whatever_their_class() -> None:
    # 3,000 input (1,000 of them cached) + 1,500 output (500 of them reasoning)
    out = cell_map(row())
    assert (out["ConsumedQuantity"], out["PricingQuantity"]) == ("4500", "0.0045")
    huge = cell_map(row(input_tokens=10**15 + 1, output_tokens=0))
    assert huge["PricingQuantity"] == "1000000000.000001"  # exact, never in E notation


def test_costs_nobody_knows_are_zero_beside_a_count_of_unpriced_events() -> None:
    out = cell_map(row(cost_usd=None, actual_cost_usd=None, unpriced_events=3, catalog_versions=()))
    assert [out[c] for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")] == [
        "0"
    ] * 4
    assert (out["x_UnpricedEvents"], out["x_CatalogVersions"]) == ("3", "")


def test_several_catalog_versions_of_one_day_are_all_named() -> None:
    assert cell_map(row(catalog_versions=(3, 4)))["x_CatalogVersions"] == "3 4"


def test_an_unknown_provider_names_itself_and_a_model_without_maker_its_provider() -> None:
    out = cell_map(row(provider="acme-llm", model="house-model"))
    assert [out[c] for c in ("ProviderName", "InvoiceIssuerName", "ServiceName")] == [
        "acme-llm"
    ] * 3
    assert out["PublisherName"] == "acme-llm"
    assert out["SkuId"] == "house-model"


def test_text_a_spreadsheet_would_run_gets_a_quote_and_numbers_keep_their_sign() -> None:
    out = cell_map(row(job_id="=HYPERLINK(1)", agent="@SUM", actual_cost_usd=D("-0.5")))
    assert (out["x_JobId"], out["x_Agent"]) == ("'=HYPERLINK(1)", "'@SUM")
    assert out["BilledCost"] == "-0.5"


def test_a_range_is_read_a_month_at_a_time() -> None:
    span = export_range(
        datetime(2026, 11, 15, 6, tzinfo=UTC), datetime(2027, 1, 2, 0, 0, 1, tzinfo=UTC)
    )
    assert list(month_slices(span)) == [
        (datetime(2026, 11, 15, 6, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 2, 0, 0, 1, tzinfo=UTC)),
    ]


def test_instants_in_another_offset_are_taken_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    span = export_range(datetime(2026, 12, 1, 2, tzinfo=plus2), datetime(2026, 12, 2, tzinfo=plus2))
    assert (span.start, span.end) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 1, 22, tzinfo=UTC),
    )
    assert span.start.tzinfo is UTC


def test_the_longest_range_is_366_days() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    export_range(start, start.replace(year=2028, day=2))  # 366 days: 2027 + 1 day
    with pytest.raises(InvalidRequestError, match=f"longer than {MAX_DAYS} days"):
        export_range(start, start.replace(year=2028, day=2, second=1))
