"""The token classes and rollup measures are declared once (service.tokens, rollups.models);
the wire structs that must spell them out for OpenAPI are checked against the declaration
here, so adding a class or a measure names every struct still without it."""

from __future__ import annotations

from dataclasses import fields

import msgspec
import pytest

from service.api.schemas.catalog import LongContextIn, LongContextOut, ModelIn, ModelOut
from service.api.schemas.common import TotalsOut, UnitPrices
from service.api.schemas.invoices import InvoiceLineOut
from service.api.schemas.jobs import JobLineOut, LedgerEntryOut
from service.api.schemas.usage import UnpricedEventOut
from service.ingest.models import UsageEvent, UsageEventIn
from service.pricing.models import (
    PRICE_CLASSES,
    RATE_MARKER,
    TOKEN_PRICES,
    LongContextPrice,
    ModelPrice,
    Rate,
)
from service.rollups.models import MEASURE_NAMES, Totals
from service.tokens import TOKEN_CLASSES, TOKEN_FIELDS, TokenCounts


def struct_fields(struct: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {f.name: f for f in msgspec.structs.fields(struct)}


@pytest.mark.parametrize(
    "struct", [UsageEventIn, TotalsOut, LedgerEntryOut, UnpricedEventOut, InvoiceLineOut]
)
def test_every_wire_struct_with_token_counts_has_every_token_class(
    struct: type[msgspec.Struct],
) -> None:
    missing = [name for name in TOKEN_FIELDS if name not in struct_fields(struct)]
    assert missing == [], f"{struct.__name__} lacks {missing}"


def test_a_wire_event_requires_the_totals_and_defaults_the_parts_to_zero() -> None:
    wire = struct_fields(UsageEventIn)
    for token_class in TOKEN_CLASSES:
        field = wire[token_class.name]
        if token_class.part_of is None:
            assert field.required, token_class.name
        else:
            assert field.default == 0, token_class.name


def test_the_totals_on_the_wire_are_exactly_the_rollup_measures() -> None:
    assert set(struct_fields(TotalsOut)) == set(MEASURE_NAMES)


def test_records_that_carry_token_counts_get_every_class_from_the_declaration() -> None:
    for record in (UsageEvent, Totals):
        assert issubclass(record, TokenCounts)
        assert {f.name for f in fields(record)} >= set(TOKEN_FIELDS)


def test_every_token_class_is_priced_by_a_price_of_the_catalog() -> None:
    prices = {f.name for f in fields(ModelPrice)}
    assert {c.price for c in TOKEN_CLASSES} <= set(PRICE_CLASSES) <= prices
    assert all(c.part_of in (None, *TOKEN_FIELDS) for c in TOKEN_CLASSES)


@pytest.mark.parametrize("struct", [UnitPrices, ModelIn, ModelOut])
def test_every_wire_struct_with_prices_has_every_price_class(
    struct: type[msgspec.Struct],
) -> None:
    missing = [name for name in PRICE_CLASSES if name not in struct_fields(struct)]
    assert missing == [], f"{struct.__name__} lacks {missing}"


@pytest.mark.parametrize("struct", [LongContextIn, LongContextOut])
def test_a_long_context_entry_on_the_wire_has_every_token_price_and_no_per_request(
    struct: type[msgspec.Struct],
) -> None:
    names = set(struct_fields(struct))
    assert names == {"min_input_tokens", *TOKEN_PRICES}, struct.__name__
    assert {f.name for f in fields(LongContextPrice)} == names


@pytest.mark.parametrize("struct", [LedgerEntryOut, JobLineOut, InvoiceLineOut])
def test_every_wire_struct_with_unit_prices_names_their_rate(
    struct: type[msgspec.Struct],
) -> None:
    assert RATE_MARKER in struct_fields(struct), struct.__name__
    assert RATE_MARKER in {f.name for f in fields(Rate)}
