"""Which catalog version prices an event (SPEC §3): latest effective_from not after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from service.pricing.catalog import Catalog
from service.pricing.models import CatalogVersion, NewModelPrice


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def version(
    version_id: int, effective_from: str, input_price: str = "1", **aliases: str
) -> CatalogVersion:
    price = NewModelPrice(
        model_id="vendor/model-a",
        name="Model A",
        tier="fast",
        input=Decimal(input_price),
        output=Decimal("2"),
    ).with_defaults()
    return CatalogVersion(
        id=version_id,
        label=f"v{version_id}",
        effective_from=at(effective_from),
        created_at=None,
        default_model=None,
        aliases=dict(aliases),
        models={price.model_id: price},
    )


V1 = version(1, "2026-01-01T00:00:00Z")
V2 = version(2, "2026-03-01T00:00:00Z")
V3 = version(3, "2026-02-01T00:00:00Z")  # created after V2, effective before it
CATALOG = Catalog([V2, V1, V3])


def test_an_event_before_the_first_version_has_no_version() -> None:
    assert CATALOG.version_at(at("2025-12-31T23:59:59.999999Z")) is None


def test_a_version_is_in_force_from_its_effective_instant_inclusive() -> None:
    assert CATALOG.version_at(at("2026-01-01T00:00:00Z")) is V1
    assert CATALOG.version_at(at("2026-02-01T00:00:00Z")) is V3
    assert CATALOG.version_at(at("2026-01-31T23:59:59.999999Z")) is V1


def test_the_latest_effective_from_not_after_the_event_wins_not_the_newest_id() -> None:
    # V3 has a higher id than V2 but V2's effective_from is later: V2 prices March.
    assert CATALOG.version_at(at("2026-02-15T00:00:00Z")) is V3
    assert CATALOG.version_at(at("2026-03-15T00:00:00Z")) is V2
    assert CATALOG.version_at(at("2030-01-01T00:00:00Z")) is V2


def test_instants_compare_across_offsets() -> None:
    # 2026-03-01T00:30+01:00 is 2026-02-28T23:30Z: still V3.
    plus_one = timezone(timedelta(hours=1))
    assert CATALOG.version_at(datetime(2026, 3, 1, 0, 30, tzinfo=plus_one)) is V3
    assert CATALOG.version_at(datetime(2026, 3, 1, 0, 30, tzinfo=UTC)) is V2


def test_on_equal_effective_from_the_version_created_last_wins() -> None:
    first = version(7, "2026-05-01T00:00:00Z", input_price="1")
    later = version(9, "2026-05-01T00:00:00Z", input_price="2")
    middle = version(8, "2026-05-01T00:00:00Z", input_price="3")
    catalog = Catalog([later, first, middle])
    assert catalog.version_at(at("2026-05-01T00:00:00Z")) is later
    assert catalog.version_at(at("2026-06-01T00:00:00Z")) is later
    quote = catalog.quote("vendor/model-a", at("2026-05-02T00:00:00Z"))
    assert quote.price is not None and quote.price.input == Decimal("2")


def test_an_empty_catalog_has_no_version() -> None:
    assert Catalog([]).version_at(at("2026-01-01T00:00:00Z")) is None


def test_a_quote_names_the_version_and_price_in_force() -> None:
    quote = CATALOG.quote("vendor/model-a", at("2026-02-10T00:00:00Z"))
    assert quote.version is V3
    assert quote.model_id == "vendor/model-a"
    assert quote.price is V3.models["vendor/model-a"]
    assert quote.reason is None


def test_an_alias_resolves_to_its_model_id() -> None:
    aliased = version(4, "2026-01-01T00:00:00Z", **{"model-a": "vendor/model-a"})
    quote = Catalog([aliased]).quote("model-a", at("2026-01-02T00:00:00Z"))
    assert quote.model_id == "vendor/model-a"
    assert quote.price is aliased.models["vendor/model-a"]
    assert quote.reason is None


def test_an_alias_of_another_version_does_not_apply() -> None:
    # V1 has no aliases: the short name is an unknown model there.
    quote = Catalog([V1]).quote("model-a", at("2026-01-02T00:00:00Z"))
    assert quote.price is None
    assert quote.model_id == "model-a"


def test_an_unknown_model_gets_no_price_and_a_reason_naming_model_and_version() -> None:
    quote = CATALOG.quote("vendor/unknown-9", at("2026-02-10T00:00:00Z"))
    assert quote.version is V3
    assert quote.price is None
    assert quote.model_id == "vendor/unknown-9"
    assert quote.reason is not None
    assert "vendor/unknown-9" in quote.reason
    assert "3" in quote.reason


def test_an_event_before_any_version_gets_no_price_and_a_reason() -> None:
    quote = CATALOG.quote("vendor/model-a", at("2020-01-01T00:00:00Z"))
    assert quote.version is None
    assert quote.price is None
    assert quote.reason is not None and "no catalog version" in quote.reason
