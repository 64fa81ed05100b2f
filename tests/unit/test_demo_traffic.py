"""``luc demo``'s provider costs follow the providers' published rules, as the AIMS catalog
does, so LUC's catalog cost and what OpenRouter reports agree (within OpenRouter's
rounding to 9 decimals), event by event and in total."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from service.demo_traffic import plan_traffic
from tests.support.ledger_truth import expected_cost


def test_the_demos_provider_costs_agree_with_the_catalog_within_the_rounding() -> None:
    plan = plan_traffic(5, 12, "t1", datetime(2026, 11, 20, tzinfo=UTC))
    reported = [
        (e, Decimal(e["provider_cost_usd"]))
        for e in {e["id"]: e for e in plan.events}.values()
        if "provider_cost_usd" in e and e["model"] != "mistralai/mistral-large-2512"
    ]
    assert len(reported) > 50
    # Cached reads and writes among them, so the cache prices are what is being compared.
    assert sum(e["cached_input_tokens"] for e, _ in reported) > 0
    assert sum(e["cache_write_tokens"] for e, _ in reported) > 0
    half_a_billionth = Decimal("0.0000000005")
    for event, provider in reported:
        catalog = expected_cost(event)
        assert catalog is not None
        assert abs(provider - catalog) <= half_a_billionth, event["id"]
    catalog_total = sum((c for e, _ in reported if (c := expected_cost(e)) is not None), Decimal(0))
    provider_total = sum((p for _, p in reported), Decimal(0))
    assert abs(provider_total - catalog_total) <= half_a_billionth * len(reported)
