"""Jobs: totals, invoice lines by agent × model × provider × catalog version, ledger entries,
and a job's status and invoice metadata."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from service.api.schemas.common import (
    TotalsOut,
    UnitPrices,
    money,
    one_of,
    totals_fields,
    unit_prices,
    wire_struct,
)
from service.jobs.models import JOB_STATUSES, JobChanges, JobInfo
from service.ledger.models import LedgerEntry
from service.pricing.models import rate_label
from service.pricing.price import margin
from service.rollups.models import JobDetail, JobSummary


class JobLineOut(TotalsOut, kw_only=True):
    agent: str
    model: str
    provider: str
    catalog_version: int | None
    long_context_from: int | None
    """The rate of the line's unit prices: the long-context threshold, null for base prices."""
    rate: str | None
    """That rate as invoices name it (``base``, ``long context ≥ 200,001 input tokens``);
    null while the line is unpriced."""
    tier: str | None
    unit_prices: UnitPrices | None


class JobOut(TotalsOut, kw_only=True):
    job_id: str


class JobDetailOut(JobOut, kw_only=True):
    customer_id: str | None = None
    """The customer the job belongs to (set by its first event naming one, or a PATCH)."""
    lines: list[JobLineOut]


class JobPage(msgspec.Struct):
    items: list[JobOut]
    next_cursor: str | None


class LedgerEntryOut(msgspec.Struct):
    id: int
    event_id: str
    kind: str
    job_id: str
    agent: str
    model: str
    provider: str
    tier: str | None
    catalog_version: int | None
    long_context_from: int | None
    """The rate that priced the entry: the long-context threshold, null for base prices."""
    occurred_at: str
    recorded_at: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    events: int
    unpriced_events: int
    cost_usd: str | None
    provider_cost_usd: str | None
    actual_cost_usd: str | None
    """``provider_cost_usd`` where the event has one, else ``cost_usd``; null when neither."""
    price_usd: str | None
    """What the customer pays for it (on an adjustment, the change); null when unknown."""
    margin_usd: str | None
    """``price_usd − actual_cost_usd``; null unless both are known."""
    customer_id: str | None
    """The customer it was priced for (its job's); null for a job without one."""
    plan_id: str | None
    plan_version: int | None
    """The plan version that set ``price_usd``; null when none did (price = catalog cost)."""
    unit_prices: UnitPrices | None
    reason: str | None


class LedgerPage(msgspec.Struct):
    job_id: str
    items: list[LedgerEntryOut]
    next_cursor: str | None


class JobPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Absent fields stay as they are; ``null`` clears a metadata field."""

    status: Annotated[str, one_of(JOB_STATUSES)] | msgspec.UnsetType = msgspec.UNSET
    """``open`` or ``closed``. A closed job still records usage; it goes on a follow-up."""
    customer: str | msgspec.UnsetType | None = msgspec.UNSET
    title: str | msgspec.UnsetType | None = msgspec.UNSET
    reference: str | msgspec.UnsetType | None = msgspec.UNSET
    """The customer's own reference (a purchase order, say)."""
    customer_id: str | msgspec.UnsetType | None = msgspec.UNSET
    """The registered customer the job belongs to (its rate plan prices the job); a change
    is recorded. ``customer`` stays the free text its invoices print."""

    def changes(self) -> JobChanges:
        def given(value: Any) -> Any:
            return None if value is msgspec.UNSET else value

        return JobChanges(
            status=given(self.status),
            customer=given(self.customer),
            title=given(self.title),
            reference=given(self.reference),
            customer_id=given(self.customer_id),
            clear=frozenset(
                name
                for name in ("customer", "title", "reference", "customer_id")
                if getattr(self, name) is None
            ),
        )


class JobInfoOut(msgspec.Struct):
    job_id: str
    status: str
    customer: str | None
    """Free text printed on the job's invoices."""
    title: str | None
    reference: str | None
    updated_at: str | None
    customer_id: str | None
    """The customer the job belongs to."""


def job_info_out(job: JobInfo) -> JobInfoOut:
    return wire_struct(JobInfoOut, job)


def job_out(job: JobSummary) -> JobOut:
    return JobOut(job_id=job.job_id, **totals_fields(job.totals))


def job_detail_out(job: JobDetail) -> JobDetailOut:
    """The job as ``rollups.service.job_detail`` read it, in wire form already."""
    return JobDetailOut(
        job_id=job.job_id,
        customer_id=job.customer_id,
        lines=[_job_line_out(line) for line in job.lines],
        **msgspec.structs.asdict(job.totals),
    )


def _job_line_out(line: dict[str, Any]) -> JobLineOut:
    prices = line["unit_prices"]
    rate = None if line["catalog_version"] is None else rate_label(line["long_context_from"])
    return JobLineOut(**{**line, "rate": rate, "unit_prices": prices and UnitPrices(**prices)})


def ledger_entry_out(e: LedgerEntry) -> LedgerEntryOut:
    return wire_struct(
        LedgerEntryOut,
        e,
        events=e.event_count,
        unpriced_events=e.unpriced_count,
        margin_usd=money(margin(e.price_usd, e.actual_cost_usd)),
        unit_prices=unit_prices(e.unit_prices),
    )
