"""The token classes of SPEC §2, declared once: the fields of ``TokenCounts``.

A token class is a field of the usage event, a column of ``ledger_entries`` (whose charge
is the stored event), every rollup and ``invoice_lines``, a rollup measure, a wire field and
a ``class`` label of ``luc_tokens``. Every record that carries token counts extends
``TokenCounts`` (the validated event, ledger entries, rollup totals, invoice lines, a
provider's usage), and every column list and SQL sum is built from ``TOKEN_CLASSES``. The
lists that must be spelled out are checked against it by tests: the wire structs that
OpenAPI documents (``tests/unit/test_token_classes.py``) and the migrations' columns
(``tests/integration/test_token_columns.py``).

So adding a class is one field below (its price, the total it is part of, its label) and a
migration adding its columns; those tests then name each wire struct still without it.

A part is counted in its total too: ``input_tokens`` counts every prompt token, cached
reads and cache writes included; ``output_tokens`` counts reasoning. Each token is priced
once, at the price of the narrowest class that holds it (SPEC §3, ``pricing.cost``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _token_class(
    *, price: str, label: str, part_of: str | None = None, holds: str = ""
) -> dict[str, Any]:
    return {"token_class": {"price": price, "label": label, "part_of": part_of, "holds": holds}}


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCounts:
    """One count per token class. A total is required on the wire; a part defaults to 0."""

    input_tokens: int = field(
        metadata=_token_class(price="input", label="input", holds="every prompt token")
    )
    cached_input_tokens: int = field(
        default=0, metadata=_token_class(price="cache_read", label="cached", part_of="input_tokens")
    )
    cache_write_tokens: int = field(
        default=0,
        metadata=_token_class(price="cache_write", label="cache write", part_of="input_tokens"),
    )
    output_tokens: int = field(
        metadata=_token_class(price="output", label="output", holds="reasoning too")
    )
    reasoning_tokens: int = field(
        default=0,
        metadata=_token_class(price="reasoning", label="reasoning", part_of="output_tokens"),
    )


@dataclass(frozen=True, slots=True)
class TokenClass:
    """What the declaration above says about one class."""

    name: str
    """The field and column name (``cached_input_tokens``)."""
    price: str
    """The catalog price (USD per 1M tokens) of the tokens no narrower class holds."""
    label: str
    """How an invoice page names the class."""
    part_of: str | None
    """The total this class is part of; ``None`` for a total."""
    holds: str
    """For a total: what it counts, as rejections explain it."""

    @property
    def metric(self) -> str:
        """Its ``class`` label on ``luc_tokens`` (``cached_input``)."""
        return self.name.removesuffix("_tokens")


TOKEN_CLASSES: tuple[TokenClass, ...] = tuple(
    TokenClass(name=f.name, **f.metadata["token_class"]) for f in fields(TokenCounts)
)
TOKEN_FIELDS: tuple[str, ...] = tuple(c.name for c in TOKEN_CLASSES)
"""The class names in declaration order: the order of every column list."""

TOTALS: tuple[TokenClass, ...] = tuple(c for c in TOKEN_CLASSES if c.part_of is None)


def parts_of(total: TokenClass) -> tuple[TokenClass, ...]:
    """The classes counted inside ``total`` (cached reads and cache writes in input)."""
    return tuple(c for c in TOKEN_CLASSES if c.part_of == total.name)


def counts_of(record: object, sign: int = 1) -> dict[str, Any]:
    """The counts of ``record`` (a ``TokenCounts``, or a wire event) by class name, as
    keyword arguments for another record (``sign=-1``: reversed, for an entry that cancels
    a booking). Typed ``Any``: spread beside other keyword arguments, ints would be matched
    against every parameter by mypy."""
    return {name: sign * getattr(record, name) for name in TOKEN_FIELDS}


def counts_from_row(row: Any) -> dict[str, int]:
    """The counts of a database row (or mapping) with a column per class; NULL counts 0.

    Token sums are NUMERIC in the rollups and on invoices (migration 0007): ``int`` of them
    is exact."""
    return {name: int(row[name] or 0) for name in TOKEN_FIELDS}
