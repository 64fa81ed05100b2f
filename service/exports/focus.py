"""The FinOps FOCUS 1.2 form of a ledger row: its columns, declared once, and their cells.

LUC's view is the buyer's: the LLM providers sell, AIMS pays. So ``ProviderName`` and
``InvoiceIssuerName`` are the provider that was called (OpenRouter, Google Cloud for
Vertex AI), ``PublisherName`` the model's maker (the prefix of its catalog id), and the
costs are, for the row's events net of re-rating:

- ``BilledCost`` = ``EffectiveCost`` = the actual cost, what the provider billed (its
  reported cost where it reported one, else the catalog's): pay-as-you-go, no commitment to
  amortize, so the effective cost is the billed one.
- ``ListCost`` = ``ContractedCost`` = the catalog cost, the published price: LUC knows of no
  rate negotiated with a provider, and FOCUS makes the contracted cost the list cost then.
  What AIMS charges its own customers is another view (a sale, not a cost) and no column here.

FOCUS columns must not be null; an event no catalog version prices has no catalog cost,
and one the provider did not report either has no actual cost. Such a row is exported
all the same (its tokens were used), its costs counting the events that have one, and
``x_UnpricedEvents`` says how many do not: unpriced usage is never a silent zero.

Quantities are tokens, every class together (``input_tokens + output_tokens``): consumed
in ``Tokens``, priced in ``1000000 Tokens`` as the catalog prices them. A row blends token
classes (and, within a day, possibly catalog versions) at different unit prices, so it
has no single unit price: the unit-price columns (``ListUnitPrice``,
``ContractedUnitPrice``, ``SkuPriceId``, ``SkuMeter``, ``SkuPriceDetails``) are left out,
and the prices are found through ``x_CatalogVersions`` in the catalog. ``InvoiceId``
(recommended) is present and empty: the provider's invoice number is not known to LUC.
Other conditional columns are left out because their condition does not hold: one
pricing category, no commitment discounts or capacity reservations, no provisioned
resources, regions, sub accounts or tags, and the billing currency is the pricing
currency.

Nulls are empty cells, as FOCUS's own CSV examples write them. Times are UTC,
``YYYY-MM-DDTHH:mm:ssZ``. Text that LUC received (job ids, agents, models) is written as
received, except that a leading formula character gets a quote, as in invoice CSV, so a
spreadsheet never runs it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from service.exports.models import ExportRange, FocusRow
from service.money import EXACT
from service.tokens import TOKEN_CLASSES, TOTALS
from service.wire import money_text, spreadsheet_text

FOCUS_VERSION = "1.2"

MEDIA_TYPE = "text/csv"

# One line ending for every row, the endpoint's and the command line's alike (RFC 4180).
LINE_END = "\r\n"


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    """``ProviderName`` and ``InvoiceIssuerName``: who sells the calls and bills them."""
    service: str
    """``ServiceName``."""


PROVIDERS = {
    "openrouter": Provider("OpenRouter", "OpenRouter"),
    "vertex": Provider("Google Cloud", "Vertex AI"),
    # The gateway's heuristic answers without a key: on the ledger at zero, never billed.
    "stub": Provider("LUC", "LUC stub answers"),
}
"""The gateway's providers by the id events name; any other id stands for itself."""


def provider_of(provider_id: str) -> Provider:
    return PROVIDERS.get(provider_id) or Provider(provider_id, provider_id)


def publisher_of(row: FocusRow) -> str:
    """The model's maker: ``anthropic`` of ``anthropic/claude-opus-4.5``; for a model id
    without one, the provider that served it."""
    maker, slash, _ = row.model.partition("/")
    return maker if slash and maker else provider_of(row.provider).name


def total_tokens(row: FocusRow) -> int:
    """Every token of the row once: the totals (input, output) hold the other classes."""
    return sum(getattr(row, total.name) for total in TOTALS)


def instant(value: datetime) -> str:
    """FOCUS's Date/Time form: UTC, whole seconds, ``Z``; four year digits always (the C
    library's ``%Y`` writes the year 500 as ``500``)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def charge_period(row: FocusRow, span: ExportRange) -> tuple[datetime, datetime]:
    """The row's UTC day, cut to the range asked for: a range that starts or ends inside a
    day exports only the part of the day it covers, and says so."""
    start = midnight(row.day)
    return max(start, span.start), min(start + timedelta(days=1), span.end)


def _money(value: Decimal | None) -> str:
    return money_text(value if value is not None else Decimal(0))


def _description(row: FocusRow) -> str:
    return (
        f"LLM tokens of {row.model} through {provider_of(row.provider).service} "
        f"for job {row.job_id}, agent {row.agent}"
    )


Cell = Callable[[FocusRow, ExportRange], "str | None"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    cell: Cell
    text: bool = False
    """Holds text LUC received: a leading formula character is quoted."""


def _const(value: str | None) -> Cell:
    return lambda row, span: value


# FOCUS 1.2 columns, in alphabetical order (FOCUS allows it). All mandatory columns, then
# the recommended and conditional ones that apply, as the module docstring says.
FOCUS_COLUMNS: tuple[Column, ...] = (
    Column("BilledCost", lambda r, s: _money(r.actual_cost_usd)),
    Column("BillingAccountId", lambda r, s: r.provider, text=True),
    # The account's display name at the provider: LUC does not know it.
    Column("BillingAccountName", _const(None)),
    Column("BillingCurrency", _const("USD")),
    Column("BillingPeriodEnd", lambda r, s: instant(midnight(next_month(r.day)))),
    Column("BillingPeriodStart", lambda r, s: instant(midnight(month_start(r.day)))),
    Column("ChargeCategory", _const("Usage")),
    # Null: a correction is booked into the day of the event it corrects, never as a
    # correction of a closed billing period.
    Column("ChargeClass", _const(None)),
    Column("ChargeDescription", lambda r, s: _description(r), text=True),
    Column("ChargeFrequency", _const("Usage-Based")),
    Column("ChargePeriodEnd", lambda r, s: instant(charge_period(r, s)[1])),
    Column("ChargePeriodStart", lambda r, s: instant(charge_period(r, s)[0])),
    Column("ConsumedQuantity", lambda r, s: str(total_tokens(r))),
    Column("ConsumedUnit", _const("Tokens")),
    Column("ContractedCost", lambda r, s: _money(r.cost_usd)),
    Column("EffectiveCost", lambda r, s: _money(r.actual_cost_usd)),
    # Recommended ("SHOULD be present") since 1.2, and null where a charge is on no invoice
    # LUC knows of: the provider's invoice number never reaches LUC.
    Column("InvoiceId", _const(None)),
    Column("InvoiceIssuerName", lambda r, s: provider_of(r.provider).name, text=True),
    Column("ListCost", lambda r, s: _money(r.cost_usd)),
    Column("PricingQuantity", lambda r, s: money_text(Decimal(total_tokens(r)).scaleb(-6, EXACT))),
    Column("PricingUnit", _const("1000000 Tokens")),
    Column("ProviderName", lambda r, s: provider_of(r.provider).name, text=True),
    Column("PublisherName", lambda r, s: publisher_of(r), text=True),
    Column("ServiceCategory", _const("AI and Machine Learning")),
    Column("ServiceName", lambda r, s: provider_of(r.provider).service, text=True),
    Column("ServiceSubcategory", _const("Generative AI")),
    # The catalog's model id: the same whatever the price, the account or the version.
    Column("SkuId", lambda r, s: r.model, text=True),
)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _token_column(name: str) -> Column:
    return Column(f"x_{_pascal(name)}", lambda r, s: str(getattr(r, name)))


# LUC's own columns, after FOCUS's, prefixed x_ as FOCUS asks of custom columns.
CUSTOM_COLUMNS: tuple[Column, ...] = (
    Column("x_JobId", lambda r, s: r.job_id, text=True),
    Column("x_Agent", lambda r, s: r.agent, text=True),
    Column("x_Model", lambda r, s: r.model, text=True),
    Column("x_Provider", lambda r, s: r.provider, text=True),
    Column("x_CatalogVersions", lambda r, s: " ".join(map(str, r.catalog_versions)) or None),
    Column("x_Events", lambda r, s: str(r.events)),
    Column("x_UnpricedEvents", lambda r, s: str(r.unpriced_events)),
    *(_token_column(c.name) for c in TOKEN_CLASSES),
    # Null when no event of the row had a reported cost.
    Column(
        "x_ProviderReportedCost",
        lambda r, s: None if r.provider_cost_usd is None else money_text(r.provider_cost_usd),
    ),
)

COLUMNS: tuple[Column, ...] = (*FOCUS_COLUMNS, *CUSTOM_COLUMNS)
HEADER: tuple[str, ...] = tuple(c.name for c in COLUMNS)


def cells(row: FocusRow, span: ExportRange) -> list[str]:
    """The row's CSV cells, in ``HEADER`` order; a null is an empty cell."""
    out = []
    for column in COLUMNS:
        value = column.cell(row, span)
        if value is None:
            out.append("")
        else:
            out.append(spreadsheet_text(value) if column.text else value)
    return out


def header_csv() -> str:
    return _csv([list(HEADER)])


def rows_csv(rows: Iterable[FocusRow], span: ExportRange) -> str:
    return _csv(cells(row, span) for row in rows)


def _csv(rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=LINE_END).writerows(rows)
    return out.getvalue()
