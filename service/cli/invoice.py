"""``luc invoice``: preview, issue, show and verify per-job invoices."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from service.cli.database import run_on_database
from service.cli.options import option_values
from service.errors import NotFoundError

if TYPE_CHECKING:
    from service.db import Connection


@click.group()
def invoice() -> None:
    """Invoices of a job or of a customer's month: preview, issue, show (JSON, CSV, HTML),
    verify a digest.

    An issued invoice never changes: usage recorded after it goes on the next (follow-up)
    invoice. Lines keep full precision; the total is rounded once to cents,
    half up.
    """


def _echo_json(document: dict[str, Any]) -> None:
    import json

    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@invoice.command(name="preview")
@click.argument("job_id")
def invoice_preview(job_id: str) -> None:
    """Print, as JSON, what issuing an invoice for JOB_ID would issue now."""
    from service.invoices.render import invoice_document
    from service.invoices.service import corrected_by, preview_invoice, refusal
    from service.settings import get_settings

    async def work(conn: Connection) -> dict[str, Any]:
        draft = await preview_invoice(conn, job_id)
        corrects = await corrected_by(conn, draft)
        document = invoice_document(draft, get_settings().issuer, None, None, corrects=corrects)
        reason = refusal(draft)
        return {
            **document,
            "status": None if draft.job is None else draft.job.status,
            "earlier_invoices": draft.earlier,
            "issuable": reason is None,
            "not_issued_because": reason,
        }

    _echo_json(run_on_database(work))


@invoice.command(name="issue")
@click.argument("job_id", required=False)
@click.option("--customer", help="Issue a customer's monthly invoice (with --month).")
@click.option("--month", help="The UTC month of --customer's invoice, YYYY-MM.")
def invoice_issue(job_id: str | None, customer: str | None, month: str | None) -> None:
    """Issue JOB_ID's next invoice, or --customer C --month YYYY-MM's; print it as JSON (a
    summary goes to stderr).

    A follow-up whose total is negative is a credit note (LUC-CN-…); one that comes to 0.00
    at the cent is not issued (exit 1, no number spent): its usage carries forward.
    """
    from service.customers.plans import servers_default_plan
    from service.invoices.models import CREDIT_NOTE, Invoice
    from service.invoices.monthly import issue_month_invoice, parse_month
    from service.invoices.service import issue_invoice
    from service.settings import get_settings

    if (job_id is None) == (customer is None) or (customer is None) != (month is None):
        raise click.UsageError("give JOB_ID, or --customer and --month (not both)")
    settings = get_settings()
    issuer = settings.issuer
    with option_values({"month": "--month"}):
        first_day = None if month is None else parse_month(month)

    async def work(conn: Connection) -> Invoice:
        if customer is not None and first_day is not None:
            default_plan = await servers_default_plan(conn, settings.billing.default_plan)
            return await issue_month_invoice(conn, customer, first_day, issuer, default_plan)
        assert job_id is not None
        return await issue_invoice(conn, job_id, issuer)

    issued = run_on_database(work)
    _echo_json(issued.with_digest())
    what = "credit note" if issued.kind == CREDIT_NOTE else "invoice"
    subject = f"job {job_id}" if job_id is not None else f"customer {customer} for {month}"
    click.echo(
        f"issued {what} {issued.number} for {subject}: total "
        f"{issued.document['total_usd']} USD, due {issued.document['due_date']}, "
        f"{issued.document['covered_entries']} ledger entries",
        err=True,
    )


@invoice.command(name="show")
@click.argument("number")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "html"]),
    default="json",
    show_default=True,
    help="JSON (with digest), CSV, or a printable HTML page.",
)
@click.option(
    "--internal",
    is_flag=True,
    help=(
        "JSON with each line's cost, providers' reported cost, actual cost and margin "
        "(for finance, not the customer)."
    ),
)
def invoice_show(number: str, fmt: str, internal: bool) -> None:
    """Print an issued invoice or credit note by its NUMBER, such as LUC-2026-000042."""
    from service.invoices.forms import to_csv
    from service.invoices.page import to_html
    from service.invoices.service import get_invoice, internal_view, logo_of

    if internal and fmt != "json":
        raise click.UsageError("--internal is JSON only: the CSV and HTML forms are the customer's")

    async def work(conn: Connection) -> tuple[Any, Any]:
        if internal:
            return await internal_view(conn, number), None
        stored = await get_invoice(conn, number)
        return stored, await logo_of(conn, stored) if fmt == "html" else None

    stored, logo = run_on_database(work)
    if internal:
        _echo_json(stored)
    elif fmt == "csv":
        click.echo(to_csv(stored.document), nl=False)
    elif fmt == "html":
        click.echo(to_html(stored.document, stored.digest, logo), nl=False)
    else:
        _echo_json(stored.with_digest())


@invoice.command(name="verify")
@click.argument("source")
@click.option(
    "--against-stored",
    is_flag=True,
    help="For a file: also require the stored invoice of that number to have its digest.",
)
def invoice_verify(source: str, against_stored: bool) -> None:
    """Check an invoice against its SHA-256 digest; exit 1 on any mismatch.

    SOURCE is an exported JSON file ('-' for stdin) or an invoice number. A file is checked
    on its own (digest of its canonical JSON, lines against subtotal and total); a number is
    checked in the database (stored text, digest, columns and covered entries).
    """
    import json
    from pathlib import Path

    from service.invoices.models import Verification
    from service.invoices.service import get_invoice
    from service.invoices.verify import verify_document, verify_stored

    if source == "-" or Path(source).is_file():
        # Bytes: json reads UTF-8 (and -16, -32) itself, and a file that is not text is
        # then "not JSON" (read as text, it was a UnicodeDecodeError's traceback).
        try:
            raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read {source}: {exc.strerror or exc}") from exc
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise click.ClickException(f"{source} is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise click.ClickException(f"{source} does not hold an invoice object")
        result = verify_document(document)
        if against_stored and result.number:
            number = result.number

            async def compare(conn: Connection) -> list[str]:
                stored = await get_invoice(conn, number)
                if stored.digest != document.get("digest"):
                    return [f"the stored invoice {number} has digest {stored.digest}"]
                return []

            try:
                extra = run_on_database(compare)
            except NotFoundError as exc:
                # Here a missing stored invoice is a verification failure, reported with the
                # file's other problems. A database that cannot be reached says nothing of
                # the invoice: that stays the command's error ("does not verify" said a
                # valid invoice was not).
                extra = [exc.message]
            result = Verification(result.number, result.ok and not extra, result.problems + extra)
    else:

        async def work(conn: Connection) -> Verification:
            return await verify_stored(conn, source)

        result = run_on_database(work)
    name = result.number or source
    if not result.ok:
        for problem in result.problems:
            click.echo(f"  {problem}", err=True)
        click.echo(f"FAILED: invoice {name} does not verify", err=True)
        raise SystemExit(1)
    click.echo(f"OK: invoice {name} matches its digest")
