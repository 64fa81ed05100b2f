"""Invoices: a job's live preview, issuing, and issued invoices as JSON, CSV or HTML."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.deps import LucController, Resources
from service.api.params import Limit, decode_cursor, page, page_size
from service.api.schemas.invoices import (
    InvoiceOut,
    InvoicePage,
    InvoicePreviewOut,
    invoice_out,
    invoice_preview_out,
    invoice_summary_out,
)
from service.auth.guard import ADMIN, READ
from service.db import on_connection
from service.errors import InvalidRequestError
from service.invoices.render import invoice_document, to_csv, to_html
from service.invoices.service import get_invoice, issue_invoice, list_invoices, preview_invoice

FORMATS = ("json", "csv", "html")


class JobInvoicesController(LucController):
    path = "/v1/jobs"
    tags = ["invoices"]
    opt = READ

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
        return invoice_preview_out(document, draft.job.status, draft.earlier)

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


class InvoicesController(LucController):
    path = "/v1/invoices"
    tags = ["invoices"]
    opt = READ

    @get("/", operation_id="listInvoices", summary="Issued invoices in number order")
    async def list(
        self,
        luc: NamedDependency[Resources],
        job_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = None,
    ) -> InvoicePage:
        size = page_size(limit)
        after = decode_cursor(cursor) or None
        rows = await on_connection(
            luc.pool, lambda conn: list_invoices(conn, job_id, after, size + 1)
        )
        items, next_cursor = page(rows, size, lambda r: r.number)
        return InvoicePage(items=[invoice_summary_out(r) for r in items], next_cursor=next_cursor)

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
        # Litestar appends "; charset=utf-8" to a text/* media type itself.
        if fmt == "csv":
            return Response(
                to_csv(invoice.document),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{invoice.number}.csv"'},
            )
        if fmt == "html":
            return Response(to_html(invoice.document, invoice.digest), media_type="text/html")
        return Response(invoice_out(invoice.with_digest()))
