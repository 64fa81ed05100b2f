"""Invoices: a job's live preview, issuing, and issued invoices as JSON, CSV or HTML."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from service.api.deps import LucController, Resources
from service.api.openapi import more_answers
from service.api.params import Limit, decode_cursor, page, page_size
from service.api.raw_body import json_schema_of
from service.api.schemas.invoices import (
    InvoiceInternalOut,
    InvoiceOut,
    InvoicePage,
    InvoicePreviewOut,
    invoice_internal_out,
    invoice_out,
    invoice_preview_out,
    invoice_summary_out,
)
from service.auth.guard import ADMIN, READ
from service.customers.service import get_customer
from service.db import Connection, on_connection
from service.errors import InvalidRequestError
from service.invoices.forms import to_csv
from service.invoices.models import Draft
from service.invoices.monthly import (
    draft_month,
    issue_month_invoice,
    month_refusal,
    parse_month,
)
from service.invoices.page import to_html
from service.invoices.render import invoice_document
from service.invoices.service import (
    corrected_by,
    get_invoice,
    internal_view,
    issue_invoice,
    list_invoices,
    logo_of,
    preview_invoice,
    refusal,
)

FORMATS = ("json", "csv", "html")
VIEWS = ("customer", "internal")


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
            "lines by agent, model, provider and catalog version, with the issuer and the "
            "customer as they are now. Without number, dates or digest; `issuable` says "
            "whether issuing now would issue it, `not_issued_because` why not."
        ),
    )
    async def preview(
        self, luc: NamedDependency[Resources], job_id: FromPath[str]
    ) -> InvoicePreviewOut:
        async def work(conn: Connection) -> tuple[Draft, str | None]:
            draft = await preview_invoice(conn, job_id)
            return draft, await corrected_by(conn, draft)

        draft, corrects = await on_connection(luc.pool, work)
        document = invoice_document(draft, luc.settings.issuer, None, None, corrects=corrects)
        return invoice_preview_out(
            document, None if draft.job is None else draft.job.status, draft.earlier, refusal(draft)
        )

    @post(
        "/{job_id:str}/invoices",
        operation_id="issueJobInvoice",
        summary="Issue the job's next invoice (the first, or a follow-up)",
        description=(
            "The invoice covers every ledger entry of the job that no earlier invoice covers, "
            "with the issuer (LUC_ISSUER_*) and the job's customer copied in; once issued it "
            "never changes. A follow-up whose total is negative is a credit note "
            "(`kind: credit_note`, LUC-CN-2026-000042, naming the invoice it `corrects`); "
            "numbers are gap-free per kind and year (LUC-2026-000042). 409, with the reason "
            "in `detail` and no number spent, when there is nothing new to bill, or when a "
            "follow-up comes to 0.00 at the cent: its entries stay unbilled and carry forward "
            "to the next follow-up (the preview's `issuable` tells beforehand)."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def issue(self, luc: NamedDependency[Resources], job_id: FromPath[str]) -> InvoiceOut:
        issuer = luc.settings.issuer
        invoice = await on_connection(luc.pool, lambda conn: issue_invoice(conn, job_id, issuer))
        return invoice_out(invoice.with_digest())


class MonthBody(msgspec.Struct, forbid_unknown_fields=True):
    month: str
    """The UTC month to invoice, YYYY-MM."""


class CustomerInvoicesController(LucController):
    path = "/v1/customers"
    tags = ["invoices"]
    opt = READ

    @get(
        "/{customer_id:str}/invoices/preview",
        operation_id="previewMonthInvoice",
        summary="Live preview of a customer's invoice for a UTC month",
        description=(
            "What issuing the month would issue now (a month in progress too): the month's "
            "ledger entries of the customer's jobs that no invoice covers, in lines by job, "
            "agent, model, provider, catalog version and plan version, and the plan's "
            "`minimum` line. `issuable` says whether issuing now would issue it, "
            "`not_issued_because` why not."
        ),
    )
    async def preview_month(
        self,
        luc: NamedDependency[Resources],
        customer_id: FromPath[str],
        month: Annotated[str, QueryParameter(description="The UTC month, YYYY-MM")],
    ) -> InvoicePreviewOut:
        first_day = parse_month(month)
        default_plan = luc.settings.billing.default_plan

        async def work(conn: Connection) -> tuple[Draft, str | None, str | None]:
            draft = await draft_month(conn, customer_id, first_day, default_plan)
            now = await conn.fetchval("SELECT clock_timestamp()")
            reason = month_refusal(draft, await get_customer(conn, customer_id), now)
            return draft, reason, await corrected_by(conn, draft)

        draft, reason, corrects = await on_connection(luc.pool, work)
        document = invoice_document(draft, luc.settings.issuer, None, None, corrects=corrects)
        return invoice_preview_out(document, None, draft.earlier, reason)

    @post(
        "/{customer_id:str}/invoices",
        operation_id="issueMonthInvoice",
        summary="Issue a customer's invoice for a UTC month (the first, or a follow-up)",
        description=(
            "For a customer invoiced `monthly`, once the month has ended: the month's ledger "
            "entries (by occurred_at) of the customer's jobs that no invoice covers (an entry "
            "billed on a job's invoice is never billed again), lines by job × agent × model, "
            "and the plan's `minimum_monthly_usd` as a `minimum` line topping the month up "
            "(the plan version in force at the month's start). A second issue for the month "
            "is a follow-up (a credit note when negative). 409 with the reason in `detail` "
            "for a month in progress, a customer invoiced per job, nothing new, or a "
            "follow-up that is 0.00 at the cent."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def issue_month(
        self, luc: NamedDependency[Resources], customer_id: FromPath[str], data: JSONBody[MonthBody]
    ) -> InvoiceOut:
        first_day = parse_month(data.month)
        issuer, default_plan = luc.settings.issuer, luc.settings.billing.default_plan
        invoice = await on_connection(
            luc.pool,
            lambda conn: issue_month_invoice(conn, customer_id, first_day, issuer, default_plan),
        )
        return invoice_out(invoice.with_digest())


class InvoicesController(LucController):
    path = "/v1/invoices"
    tags = ["invoices"]
    opt = READ

    @get(
        "/",
        operation_id="listInvoices",
        summary="Issued invoices in number order",
        description=(
            "With `job_id`: the job's own invoices and every other invoice that billed "
            "usage of it (its customer's monthly invoices), in issue order."
        ),
    )
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
        summary="One issued invoice or credit note as JSON, CSV or a printable HTML page",
        description=(
            "The customer's forms: `format=json` (default) is the invoice with its digest; "
            "`format=csv` has one row per line, then subtotal, rounding, total, credits and "
            "amount-due rows (`row_type`), each naming the invoice, customer and job; "
            "`format=html` is an A4 page. CSV and HTML show the lines and the subtotal at "
            "every digit, the total and the amount due to the cent (rounded once). "
            "`view=internal` (JSON only) adds each line's `cost_usd`, `provider_cost_usd`, "
            "`actual_cost_usd` and `margin_usd` for finance; the customer's forms never show "
            "them."
        ),
        responses={
            200: ResponseSpec(
                data_container=InvoiceOut,
                description=(
                    "The invoice (JSON; text/csv or text/html with format; InvoiceInternalOut "
                    "with view=internal)"
                ),
            )
        },
        operation_class=more_answers(
            200, [json_schema_of(InvoiceInternalOut)], ["text/csv", "text/html"]
        ),
    )
    async def one(
        self,
        luc: NamedDependency[Resources],
        number: FromPath[str],
        fmt: Annotated[
            str,
            QueryParameter(
                name="format",
                description="json (default), csv or html",
                schema_extra={"enum": list(FORMATS)},
            ),
        ] = "json",
        view: Annotated[
            str,
            QueryParameter(
                description="customer (default): the issued document; internal: with costs",
                schema_extra={"enum": list(VIEWS)},
            ),
        ] = "customer",
    ) -> Response[Any]:
        if fmt not in FORMATS:
            raise InvalidRequestError(
                f"format: must be one of {', '.join(FORMATS)}", status_code=400
            )
        if view not in VIEWS:
            raise InvalidRequestError(f"view: must be one of {', '.join(VIEWS)}", status_code=400)
        if view == "internal" and fmt != "json":
            raise InvalidRequestError(
                "view=internal is JSON only: the CSV and HTML forms are the customer's",
                status_code=400,
            )
        if view == "internal":
            internal = await on_connection(luc.pool, lambda conn: internal_view(conn, number))
            return Response(invoice_internal_out(internal))
        invoice = await on_connection(luc.pool, lambda conn: get_invoice(conn, number))
        # Litestar appends "; charset=utf-8" to a text/* media type itself.
        if fmt == "csv":
            return Response(
                to_csv(invoice.document),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{invoice.number}.csv"'},
            )
        if fmt == "html":
            logo = await on_connection(luc.pool, lambda conn: logo_of(conn, invoice))
            return Response(to_html(invoice.document, invoice.digest, logo), media_type="text/html")
        return Response(invoice_out(invoice.with_digest()))
