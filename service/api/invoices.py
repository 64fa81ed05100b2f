"""Invoices: a job's live preview, issuing, and issued invoices as JSON, CSV or HTML."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.deps import Resources, provide_resources
from service.api.params import decode_cursor, encode_cursor, page_size
from service.api.schemas import UnitPrices, timestamp
from service.auth.guard import ADMIN, READ
from service.db import on_connection
from service.errors import InvalidRequestError
from service.invoices.models import JobChanges, JobInfo
from service.invoices.render import invoice_document, to_csv, to_html
from service.invoices.service import get_invoice, issue_invoice, list_invoices, preview_invoice
from service.wire import cents_text, money_text

# Wire schemas ------------------------------------------------------------------------------


class JobPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Absent fields stay as they are; ``null`` clears a metadata field."""

    status: str | msgspec.UnsetType = msgspec.UNSET
    """``open`` or ``closed``. A closed job still records usage; it goes on a follow-up."""
    customer: str | msgspec.UnsetType | None = msgspec.UNSET
    title: str | msgspec.UnsetType | None = msgspec.UNSET
    reference: str | msgspec.UnsetType | None = msgspec.UNSET
    """The customer's own reference (a purchase order, say)."""

    def changes(self) -> JobChanges:
        def given(value: Any) -> Any:
            return None if value is msgspec.UNSET else value

        return JobChanges(
            status=given(self.status),
            customer=given(self.customer),
            title=given(self.title),
            reference=given(self.reference),
            clear=frozenset(
                name for name in ("customer", "title", "reference") if getattr(self, name) is None
            ),
        )


class JobInfoOut(msgspec.Struct):
    job_id: str
    status: str
    customer: str | None
    title: str | None
    reference: str | None
    updated_at: str | None


def job_info_out(job: JobInfo) -> JobInfoOut:
    return JobInfoOut(
        job_id=job.job_id,
        status=job.status,
        customer=job.customer,
        title=job.title,
        reference=job.reference,
        updated_at=timestamp(job.updated_at),
    )


class InvoiceLineOut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    agent: str
    model: str
    model_name: str | None
    provider: str
    catalog_version: int
    tier: str | None
    events: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    unit_prices: UnitPrices
    """USD per 1M tokens per class, and USD per request."""
    amount_usd: str
    """Full precision, never rounded."""


class InvoiceBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    job_id: str
    currency: str
    customer: str | None
    title: str | None
    reference: str | None
    follow_up_of: str | None
    """The job's invoice before this one; this one covers only entries recorded after it."""
    period_start: str | None
    period_end: str | None
    """Event times of the first and last covered entries."""
    lines: list[InvoiceLineOut]
    events: int
    subtotal_usd: str
    """Sum of the lines, full precision."""
    rounding_rule: str
    rounding_usd: str
    """total_usd − subtotal_usd."""
    total_usd: str
    """The subtotal rounded once to cents by the rounding rule."""
    covered_entries: int
    """Ledger entries this invoice covers; no other invoice covers any of them."""
    entries_sha256: str
    """SHA-256 of the covered ledger entry ids, ascending, comma-separated."""
    unpriced_events: int
    """Events of the job without a price: not billed here."""
    notes: list[str]


class InvoiceOut(InvoiceBody, kw_only=True):
    number: str
    issued_at: str
    digest: str
    """SHA-256 (hex) of the canonical JSON of this object without ``digest``: sorted keys,
    no whitespace, UTF-8."""


class InvoicePreviewOut(InvoiceBody, kw_only=True):
    number: None
    issued_at: None
    status: str
    """The job's status (open, closed)."""
    earlier_invoices: list[str]


class InvoiceSummaryOut(msgspec.Struct):
    number: str
    job_id: str
    issued_at: str
    currency: str
    subtotal_usd: str
    rounding_usd: str
    total_usd: str
    covered_entries: int
    unpriced_events: int
    follow_up_of: str | None
    digest: str


class InvoicePage(msgspec.Struct):
    items: list[InvoiceSummaryOut]
    next_cursor: str | None


def invoice_out(document: dict[str, Any]) -> InvoiceOut:
    return msgspec.convert(document, InvoiceOut)


FORMATS = ("json", "csv", "html")

# Controllers -------------------------------------------------------------------------------


class JobInvoicesController(Controller):
    path = "/v1/jobs"
    tags = ["invoices"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @get(
        "/{job_id:str}/invoice",
        operation_id="previewJobInvoice",
        summary="Live preview of the job's next invoice",
        description=(
            "What issuing would issue now: the ledger entries no earlier invoice covers, in "
            "lines by agent, model, provider and catalog version. Without number or digest."
        ),
    )
    async def preview(
        self, luc: NamedDependency[Resources], job_id: FromPath[str]
    ) -> InvoicePreviewOut:
        draft = await on_connection(luc.pool, lambda conn: preview_invoice(conn, job_id))
        document = invoice_document(draft, None, None)
        return msgspec.convert(
            {**document, "status": draft.job.status, "earlier_invoices": draft.earlier},
            InvoicePreviewOut,
        )

    @post(
        "/{job_id:str}/invoices",
        operation_id="issueJobInvoice",
        summary="Issue the job's next invoice (the first, or a follow-up)",
        description=(
            "Numbers are gap-free per year (LUC-2026-000042). The invoice covers every ledger "
            "entry of the job that no earlier invoice covers; 409 when there is none. Once "
            "issued it never changes."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def issue(self, luc: NamedDependency[Resources], job_id: FromPath[str]) -> InvoiceOut:
        invoice = await on_connection(luc.pool, lambda conn: issue_invoice(conn, job_id))
        return invoice_out(invoice.with_digest())


class InvoicesController(Controller):
    path = "/v1/invoices"
    tags = ["invoices"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @get("/", operation_id="listInvoices", summary="Issued invoices in number order")
    async def list(
        self,
        luc: NamedDependency[Resources],
        job_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(description="page size, 1–1000 (100)")] = None,
    ) -> InvoicePage:
        size = page_size(limit)
        after = decode_cursor(cursor) or None
        rows = await on_connection(
            luc.pool, lambda conn: list_invoices(conn, job_id, after, size + 1)
        )
        more = len(rows) > size
        rows = rows[:size]
        return InvoicePage(
            items=[
                InvoiceSummaryOut(
                    number=r.number,
                    job_id=r.job_id,
                    issued_at=timestamp(r.issued_at) or "",
                    currency="USD",
                    subtotal_usd=money_text(r.subtotal_usd),
                    rounding_usd=money_text(r.rounding_usd),
                    total_usd=cents_text(r.total_usd),
                    covered_entries=r.covered_entries,
                    unpriced_events=r.unpriced_events,
                    follow_up_of=r.follow_up_of,
                    digest=r.digest,
                )
                for r in rows
            ],
            next_cursor=encode_cursor(rows[-1].number) if more else None,
        )

    @get(
        "/{number:str}",
        operation_id="getInvoice",
        summary="One issued invoice as JSON, CSV or a printable HTML page",
        description=(
            "`format=json` (default) is the invoice with its digest; `format=csv` has one row "
            "per line, then subtotal, rounding and total rows; `format=html` is an A4 page."
        ),
        responses={
            200: ResponseSpec(
                data_container=InvoiceOut,
                description="The invoice (JSON; text/csv or text/html with format)",
            )
        },
    )
    async def one(
        self,
        luc: NamedDependency[Resources],
        number: FromPath[str],
        fmt: Annotated[
            str, QueryParameter(name="format", description="json (default), csv or html")
        ] = "json",
    ) -> Response[Any]:
        if fmt not in FORMATS:
            raise InvalidRequestError(
                f"format: must be one of {', '.join(FORMATS)}", status_code=400
            )
        invoice = await on_connection(luc.pool, lambda conn: get_invoice(conn, number))
        if fmt == "csv":
            return Response(
                to_csv(invoice.document),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{invoice.number}.csv"'},
            )
        if fmt == "html":
            return Response(
                to_html(invoice.document, invoice.digest), media_type="text/html; charset=utf-8"
            )
        return Response(invoice_out(invoice.with_digest()))
