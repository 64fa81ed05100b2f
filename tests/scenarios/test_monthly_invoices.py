"""Invoices at the customer's price (SPEC §7) and a customer's monthly invoice (SPEC §11),
every amount worked by hand.

AIMS prices (catalog version 1), USD per 1M tokens: Claude Sonnet 4.5 $3 in / $15 out,
GPT-5.1 $3 / $12, Gemini 3.0 Flash $0.10 / $0.40. Customer acme is on plan markup25
(catalog basis, + 25 %, a monthly minimum of 5.00 USD) and invoiced monthly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.invoices.verify import verify_document, verify_stored
from tests.support.clock import clear_of_end
from tests.support.commands import luc_on
from tests.support.events import record_accepted, wire_event
from tests.support.keys import bearer
from tests.support.settings import settings_for

SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-5.1"
FLASH = "google/gemini-3.0-flash"

october = partial(wire_event, occurred_at="2026-10-10T09:00:00Z", agent="ACHEEVY")


@asynccontextmanager
async def luc(database_url: str, admin_key: str) -> AsyncIterator[Any]:
    app = create_app(settings_for(database_url, LUC_AUTH="on"))
    async with AsyncTestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        yield client


async def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


async def acme_with_usage(client: Any) -> None:
    await created(
        await client.post(
            "/v1/plans",
            json={
                "id": "markup25",
                "name": "Markup 25",
                "effective_from": "2026-10-01T00:00:00Z",
                "basis": "catalog",
                "markup": "0.25",
                "minimum_monthly_usd": "5.00",
            },
        )
    )
    await created(
        await client.post(
            "/v1/customers",
            json={"id": "acme", "name": "Acme Corp", "plan_id": "markup25", "invoicing": "monthly"},
        )
    )
    await record_accepted(
        client,
        [
            # Sonnet: 100,000 × 3 + 10,000 × 15 = 450,000 per 1M = 0.45; × 1.25 = 0.5625
            october("a1", job_id="job-a", customer_id="acme", model=SONNET,
                    input_tokens=100_000, output_tokens=10_000),
            # GPT-5.1: 10,000 × 3 + 1,000 × 12 = 42,000 per 1M = 0.042; × 1.25 = 0.0525
            october("a2", job_id="job-a", customer_id="acme", agent="ORACLE", model=GPT,
                    input_tokens=10_000, output_tokens=1_000),
            # Flash: 1,000,000 × 0.10 + 100,000 × 0.40 = 0.14; × 1.25 = 0.175
            october("b1", job_id="job-b", customer_id="acme", model=FLASH,
                    input_tokens=1_000_000, output_tokens=100_000),
            # Sonnet: 10,000 × 3 + 1,000 × 15 = 45,000 per 1M = 0.045; × 1.25 = 0.05625
            october("c1", job_id="job-c", customer_id="acme", model=SONNET,
                    input_tokens=10_000, output_tokens=1_000),
            # November: never on October's invoice.
            october("a3", job_id="job-a", customer_id="acme", model=SONNET,
                    occurred_at="2026-11-02T00:00:00Z", input_tokens=10_000,
                    output_tokens=1_000),
        ],
    )  # fmt: skip


async def test_a_job_invoice_bills_the_customer_s_price_and_explains_it(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        # job-c: one Sonnet call, 0.045 at the catalog, 0.05625 at acme's price.
        invoice = await created(await client.post("/v1/jobs/job-c/invoices"))
        (line,) = invoice["lines"]
        assert line["amount_usd"] == "0.05625"
        assert line["unit_prices"]["input"] == "3" and line["unit_prices"]["output"] == "15"
        assert line["pricing"] == {
            "plan_id": "markup25",
            "plan_version": line["pricing"]["plan_version"],
            "method": "markup",
            "basis": "catalog",
            "basis_usd": "0.045",
            "markup": "0.25",
            "per_request_usd": "0",
        }
        assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("0.05625", "0.06")
        # The customer's forms state the markup on the line and never the cost.
        text = (await client.get(f"/v1/invoices/{invoice['number']}?format=csv")).text
        (row,) = [r for r in csv.DictReader(io.StringIO(text)) if r["row_type"] == "line"]
        assert row["unit_prices"] == (
            "input 3.00 / 1M tokens; output 15.00 / 1M tokens; catalog price + 25 %"
        )
        assert (row["amount_usd"], row["amount_exact_usd"]) == ("0.05625", "0.05625")
        page = (await client.get(f"/v1/invoices/{invoice['number']}?format=html")).text
        assert "catalog price + 25 %" in page and "0.045" not in page
        # Finance sees cost, actual cost and margin: 0.05625 − 0.045 = 0.01125.
        internal = (await client.get(f"/v1/invoices/{invoice['number']}?view=internal")).json()
        assert (internal["lines"][0]["cost_usd"], internal["lines"][0]["margin_usd"]) == (
            "0.045",
            "0.01125",
        )
        assert (internal["cost_usd"], internal["actual_cost_usd"], internal["margin_usd"]) == (
            "0.045",
            "0.045",
            "0.01125",
        )
        assert verify_document(invoice).ok


async def test_a_markup_of_many_digits_is_stated_on_the_invoice_with_every_digit(
    database_url: str, admin_key: str
) -> None:
    # A markup of 29 decimal places: its percent has more digits than Python's default
    # 28-digit context keeps, and the terms the customer reads must be the ones billed.
    markup = "0.12345678901234567890123456789"
    async with luc(database_url, admin_key) as client:
        await created(
            await client.post(
                "/v1/plans",
                json={
                    "id": "fine",
                    "name": "Fine",
                    "effective_from": "2026-10-01T00:00:00Z",
                    "basis": "catalog",
                    "markup": markup,
                },
            )
        )
        await created(
            await client.post("/v1/customers", json={"id": "fine", "name": "F", "plan_id": "fine"})
        )
        # Sonnet: 10,000 × 3 + 1,000 × 15 = 45,000 per 1M = 0.045 at the catalog.
        await record_accepted(
            client,
            [october("f1", job_id="job-f", customer_id="fine", model=SONNET,
                     input_tokens=10_000, output_tokens=1_000)],
        )  # fmt: skip
        invoice = await created(await client.post("/v1/jobs/job-f/invoices"))
        # 0.045 × 1.12345678901234567890123456789 = 0.05055555550555555555055555555505
        assert invoice["lines"][0]["amount_usd"] == "0.05055555550555555555055555555505"
        terms = "catalog price + 12.345678901234567890123456789 %"
        text = (await client.get(f"/v1/invoices/{invoice['number']}?format=csv")).text
        (row,) = [r for r in csv.DictReader(io.StringIO(text)) if r["row_type"] == "line"]
        assert row["unit_prices"].endswith("; " + terms), row["unit_prices"]
        page = (await client.get(f"/v1/invoices/{invoice['number']}?format=html")).text
        assert terms in page


async def test_a_monthly_invoice_bills_the_month_of_every_job_once_topped_up_to_the_minimum(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        per_job = await created(await client.post("/v1/jobs/job-c/invoices"))

        preview = (await client.get("/v1/customers/acme/invoices/preview?month=2026-10")).json()
        assert preview["issuable"] is True and preview["number"] is None
        invoice = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        assert (invoice["job_id"], invoice["month"]) == (None, "2026-10")
        assert invoice["customer"]["id"] == "acme"
        # job-c's call is on the per-job invoice, November's is another month: neither here.
        usage = [
            (x["job_id"], x["agent"], x["model"], x["amount_usd"])
            for x in invoice["lines"]
            if "line_type" not in x
        ]
        assert usage == [
            ("job-a", "ACHEEVY", SONNET, "0.5625"),
            ("job-a", "ORACLE", GPT, "0.0525"),
            ("job-b", "ACHEEVY", FLASH, "0.175"),
        ]
        # 0.5625 + 0.0525 + 0.175 = 0.79 here, and job-c's 0.05625 on its own invoice: the
        # month's usage is 0.84625, which the minimum 5.00 tops up by 4.15375 (October
        # comes to 5.00 in all, not 5.00 here besides job-c's invoice).
        minimum = invoice["lines"][-1]
        assert (minimum["line_type"], minimum["amount_usd"]) == ("minimum", "4.15375")
        assert "Monthly minimum 5.00 USD (plan markup25" in minimum["description"]
        assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("4.94375", "4.94")
        assert invoice["covered_entries"] == 3
        assert per_job["covered_entries"] == 1

        # The internal view: costs 0.45 + 0.042 + 0.14 = 0.632 (no provider cost reported,
        # so actual = catalog); margin 4.94375 − 0.632 = 4.31175 (the minimum line is all
        # margin).
        internal = (await client.get(f"/v1/invoices/{invoice['number']}?view=internal")).json()
        assert [x["margin_usd"] for x in internal["lines"]] == [
            "0.1125",
            "0.0105",
            "0.035",
            "4.15375",
        ]
        assert (internal["cost_usd"], internal["actual_cost_usd"], internal["margin_usd"]) == (
            "0.632",
            "0.632",
            "4.31175",
        )

        # The CSV names each line's job and tells the minimum apart; the column adds up. Every
        # row names the invoice, the customer and the job: the invoice's own rows name the
        # jobs it bills (in job_ids; job_id is one job or none).
        text = (await client.get(f"/v1/invoices/{invoice['number']}?format=csv")).text
        rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
        assert [(r["row_type"], r["job_id"], r["job_ids"], r["amount_usd"]) for r in rows[:5]] == [
            ("line", "job-a", '["job-a"]', "0.5625"),
            ("line", "job-a", '["job-a"]', "0.0525"),
            ("line", "job-b", '["job-b"]', "0.175"),
            ("minimum", "", '["job-a","job-b"]', "4.15375"),
            ("subtotal", "", '["job-a","job-b"]', "4.94375"),
        ]
        # 4.94375 rounded once, half up: 4.94 (−0.00375)
        assert [(r["row_type"], r["amount_usd"]) for r in rows[5:7]] == [
            ("rounding", "-0.00375"),
            ("total", "4.94"),
        ]
        assert all(r["invoice"] == invoice["number"] and r["customer_id"] == "acme" for r in rows)
        assert all(r["job_ids"] for r in rows)
        page = (await client.get(f"/v1/invoices/{invoice['number']}?format=html")).text
        assert "Monthly minimum" in page and "job job-b" in page and "2026-10" in page
        # The footer names what the invoice bills: a month's invoice has no job (it printed
        # "· job  · customer acme").
        footer = page[page.index('<div class="digest">') :]
        assert f"{invoice['number']} · month 2026-10 · customer acme" in footer, footer
        assert "· job" not in footer
        assert verify_document(invoice).ok
        conn = await asyncpg.connect(database_url)
        try:
            stored = await verify_stored(conn, invoice["number"])
        finally:
            await conn.close()
        assert stored.ok, stored.problems

        # Nothing new: a second issue is refused, naming the invoice.
        again = await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        assert again.status_code == 409 and invoice["number"] in again.json()["detail"]


async def test_re_pricing_after_issue_goes_on_the_month_s_follow_up(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        first = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        # A version from October on, created later (it wins the tie): + 50 %, minimum 0.50.
        await created(
            await client.post(
                "/v1/plans/markup25/versions",
                json={
                    "effective_from": "2026-10-01T00:00:00Z",
                    "basis": "catalog",
                    "markup": "0.5",
                    "minimum_monthly_usd": "0.50",
                },
            )
        )
        done = await client.post(
            "/v1/plans/markup25/reprice",
            json={"since": "2026-10-01T00:00:00Z", "dry_run": False},
        )
        assert done.status_code == 200, done.text
        # Each October call gains another 25 % of its cost: 0.1125, 0.0105, 0.035 and
        # 0.01125 (job-c, never invoiced per job here, was on the first monthly invoice).
        # Usage billed in October: first 0.84625 (0.5625 + 0.0525 + 0.175 + 0.05625), topped
        # up by 4.15375 to 5.00; now + 0.16925 = 1.0155, above the new minimum 0.50: the
        # top-up comes back.
        follow_up = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        assert first["lines"][-1]["amount_usd"] == "4.15375"
        assert follow_up["follow_up_of"] == first["number"]
        assert [x["amount_usd"] for x in follow_up["lines"]] == [
            "0.1125",
            "0.0105",
            "0.035",
            "0.01125",
            "-4.15375",
        ]
        assert follow_up["lines"][0]["pricing"]["method"] == "repricing"
        # 0.16925 − 4.15375 = −3.9845 → −3.98: a credit note correcting the first invoice.
        assert (follow_up["subtotal_usd"], follow_up["total_usd"]) == ("-3.9845", "-3.98")
        assert (follow_up["kind"], follow_up["corrects"]) == ("credit_note", first["number"])
        # The month now comes to 5.00 − 3.98 = 1.02, its usage 1.0155 at the cent.


async def test_a_month_is_issued_once_ended_and_only_for_a_customer_invoiced_monthly(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        now = await clear_of_end("month")  # still running when LUC is asked to issue it
        running = await client.post("/v1/customers/acme/invoices", json={"month": f"{now:%Y-%m}"})
        assert running.status_code == 409
        assert "has not ended" in running.json()["detail"]
        bad = await client.post("/v1/customers/acme/invoices", json={"month": "2026-13"})
        assert bad.status_code == 400
        await created(await client.post("/v1/customers", json={"id": "initech", "name": "I"}))
        per_job = await client.post("/v1/customers/initech/invoices", json={"month": "2026-10"})
        assert per_job.status_code == 409 and "invoiced per job" in per_job.json()["detail"]
        missing = await client.post("/v1/customers/ghost/invoices", json={"month": "2026-10"})
        assert missing.status_code == 404

    # The command line issues October: 0.84625 of usage topped up by 4.15375 to 5.00.
    done = await luc_on(
        database_url, "invoice", "issue", "--customer", "acme", "--month", "2026-10"
    )
    assert done.returncode == 0, done.stderr
    assert '"total_usd": "5.00"' in done.stdout
    assert '"amount_usd": "4.15375"' in done.stdout
    assert "for customer acme for 2026-10" in done.stderr


async def test_a_month_out_of_range_or_in_other_digits_is_a_400_naming_the_field(
    database_url: str, admin_key: str
) -> None:
    # December 9999 ends at a year Python's dates cannot hold (it was a 500), and
    # full-width digits matched \d and were read as October 2026 (the invoice was issued).
    # A well-formed month out of range was "not a month", as a typo was: now it says which
    # months are taken, in the same words on both routes and the command line.
    taken = "is out of range: LUC takes the months 1970-01 to 9999-11"
    refusals = {
        "9999-12": taken,
        "10000-01": taken,
        "0000-01": taken,
        "1969-12": taken,
        "2026-13": "is out of range: its month 13 is not 01 to 12",
        "2026-00": "is out of range: its month 00 is not 01 to 12",
        "２０２６-10": "is not a month (YYYY-MM, e.g. '2026-11')",
        "2026-1٠": "is not a month (YYYY-MM, e.g. '2026-11')",
        "2026-1": "is not a month (YYYY-MM, e.g. '2026-11')",
    }
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        for month, says in refusals.items():
            detail = f"month: {month!r} {says}"
            issue = await client.post("/v1/customers/acme/invoices", json={"month": month})
            assert (issue.status_code, issue.json()["detail"]) == (400, detail), month
            preview = await client.get(
                "/v1/customers/acme/invoices/preview", params={"month": month}
            )
            assert (preview.status_code, preview.json()["detail"]) == (400, detail), month
        # The first and the last month LUC can name still answer.
        for month in ("1970-01", "9999-11"):
            edge = await client.get("/v1/customers/acme/invoices/preview", params={"month": month})
            assert edge.status_code == 200, edge.text
        listed = await client.get("/v1/invoices")
        assert listed.json()["items"] == []
    refused = await luc_on(
        database_url, "invoice", "issue", "--customer", "acme", "--month", "9999-12"
    )
    assert refused.returncode != 0
    assert f"month: '9999-12' {taken}" in refused.stderr, refused.stderr


async def test_no_minimum_is_owed_for_a_month_over_before_the_customer_was_registered(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)  # plan markup25: a monthly minimum of 5.00 USD
        # Registered today with no usage: October was over before it was a customer. Its
        # "invoice" was the minimum alone, 5.00 USD, and so for every month back to the
        # plan's start.
        await created(
            await client.post(
                "/v1/customers",
                json={"id": "late", "name": "Late", "plan_id": "markup25", "invoicing": "monthly"},
            )
        )
        preview = (await client.get("/v1/customers/late/invoices/preview?month=2026-10")).json()
        assert (preview["lines"], preview["total_usd"], preview["issuable"]) == ([], "0.00", False)
        refused = await client.post("/v1/customers/late/invoices", json={"month": "2026-10"})
        assert refused.status_code == 409, refused.text
        assert "nothing new to invoice for customer 'late' for 2026-10" in refused.text
        # Registered today too, but with October usage recorded for it: it was a customer
        # then, and October is topped up to the minimum (0.84625 of usage + 4.15375).
        october_bill = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        assert [(x.get("line_type"), x["amount_usd"]) for x in october_bill["lines"]][-1] == (
            "minimum",
            "4.15375",
        )
        assert (await client.get("/v1/invoices")).json()["items"][-1]["customer_id"] == "acme"


async def test_a_month_billed_on_jobs_invoices_before_the_customer_was_registered_owes_its_minimum(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)  # registered today, with October usage recorded for it
        for job in ("job-a", "job-b", "job-c"):
            await created(await client.post(f"/v1/jobs/{job}/invoices"))
        # Every October entry is billed, on the jobs' own invoices: 0.5625 + 0.0525 + 0.175
        # + 0.05625 = 0.84625. It was a customer in October all the same (its usage says
        # so), and the month is topped up to the 5.00 minimum: 4.15375. Before, the month
        # counted as one without usage, and the minimum was never billed.
        preview = (await client.get("/v1/customers/acme/invoices/preview?month=2026-10")).json()
        assert [(x.get("line_type"), x["amount_usd"]) for x in preview["lines"]] == [
            ("minimum", "4.15375")
        ]
        october_bill = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        assert (october_bill["subtotal_usd"], october_bill["total_usd"]) == ("4.15375", "4.15")


async def test_a_job_whose_usage_a_monthly_invoice_billed_is_refused_naming_that_invoice(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        invoice = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        # job-b's one call is on the month's invoice: the job has priced usage, all billed.
        response = await client.post("/v1/jobs/job-b/invoices")
        assert response.status_code == 409, response.text
        assert response.json()["detail"] == (
            f"nothing new to invoice for job 'job-b': every ledger entry is already on "
            f"{invoice['number']}, the customer's monthly invoice; usage billed on an invoice "
            "is never billed again"
        )
        preview = (await client.get("/v1/jobs/job-b/invoice")).json()
        assert preview["not_issued_because"] == response.json()["detail"]


async def test_the_month_s_csv_names_jobs_whose_ids_hold_spaces_unambiguously(
    database_url: str, admin_key: str
) -> None:
    """Jobs ``a``, ``a b`` and ``b`` (a job id may hold spaces, SPEC §2): written
    space-separated, the month's own rows said ``a a b b``, which jobs ``a a`` and ``b b``
    would say too. They name them as a JSON array; ``job_id`` is one id or empty. The CSV
    starts with a byte-order mark, so Excel reads Zoë's name as UTF-8."""
    async with luc(database_url, admin_key) as client:
        await created(
            await client.post(
                "/v1/customers",
                json={"id": "zoe", "name": "Zoë Café", "invoicing": "monthly"},
            )
        )
        flash = {"model": FLASH, "input_tokens": 1_000_000, "output_tokens": 100_000}
        await record_accepted(
            client,
            [
                october(f"z{i}", job_id=job, customer_id="zoe", **flash)
                for i, job in enumerate(["a", "a b", "b"])
            ],
        )
        invoice = await created(
            await client.post("/v1/customers/zoe/invoices", json={"month": "2026-10"})
        )
        response = await client.get(f"/v1/invoices/{invoice['number']}?format=csv")
    assert response.content.startswith(b"\xef\xbb\xbfinvoice,")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["row_type"], r["job_id"], r["job_ids"]) for r in rows] == [
        ("line", "a", '["a"]'),
        ("line", "a b", '["a b"]'),
        ("line", "b", '["b"]'),
        *(
            (row_type, "", '["a","a b","b"]')
            for row_type in ("subtotal", "rounding", "total", "credits", "amount_due")
        ),
    ]
    assert all(r["invoice"] == invoice["number"] and r["customer_id"] == "zoe" for r in rows)


async def test_a_job_s_invoices_listed_include_the_monthly_ones_that_billed_its_usage(
    database_url: str, admin_key: str
) -> None:
    """``GET /v1/invoices?job_id=`` answered only the job's own invoices: for a job of a
    customer invoiced monthly it listed nothing, while the job's preview named the month's
    invoice that billed it, and its CSV rows named the job."""
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        october_bill = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        # November's a3 (job-a), billed on a job invoice of its own: 0.045 × 1.25 = 0.05625
        own = await created(await client.post("/v1/jobs/job-a/invoices"))
        assert own["subtotal_usd"] == "0.05625"
        listed = (await client.get("/v1/invoices", params={"job_id": "job-a"})).json()["items"]
        assert [(i["number"], i["job_id"], i["month"]) for i in listed] == [
            (october_bill["number"], None, "2026-10"),
            (own["number"], "job-a", None),
        ]
        # What each asks in money, as the invoice says: October 5.00 (the minimum), the
        # job's 0.05625 → 0.06; no credits.
        assert [
            (i["total_usd"], i["credits_applied_usd"], i["amount_due_usd"]) for i in listed
        ] == [
            ("5.00", "0.00", "5.00"),
            ("0.06", "0.00", "0.06"),
        ]
        # job-b's one call is on the month's invoice only.
        listed = (await client.get("/v1/invoices", params={"job_id": "job-b"})).json()["items"]
        assert [i["number"] for i in listed] == [october_bill["number"]]
        assert (await client.get("/v1/invoices", params={"job_id": "nobody"})).json()["items"] == []


async def _minimum_ten(client: Any, customer: str, credits: str | None = None) -> None:
    """Plan ``min10`` (catalog basis, no markup, a monthly minimum of 10.00) and a monthly
    customer on it, with ``credits`` granted."""
    plans = (await client.get("/v1/plans")).json()
    if not any(p["id"] == "min10" for p in plans["items"]):
        await created(
            await client.post(
                "/v1/plans",
                json={
                    "id": "min10",
                    "name": "Minimum 10",
                    "effective_from": "2026-10-01T00:00:00Z",
                    "basis": "catalog",
                    "markup": "0",
                    "minimum_monthly_usd": "10",
                },
            )
        )
    await created(
        await client.post(
            "/v1/customers",
            json={"id": customer, "name": customer, "plan_id": "min10", "invoicing": "monthly"},
        )
    )
    if credits is not None:
        await created(
            await client.post(f"/v1/customers/{customer}/credits", json={"amount_usd": credits})
        )


# Flash: 10,000,000 input tokens × 0.10 per 1M = 1.00.
one_dollar = partial(october, model=FLASH, input_tokens=10_000_000, output_tokens=0)


async def test_a_follow_up_of_zero_total_that_owes_credits_back_is_issued(
    database_url: str, admin_key: str
) -> None:
    """Usage that a month's minimum already paid for draws credits all the same; the
    follow-up that takes the top-up back comes to 0.00 but owes the customer the money
    those credits replace. Before, it was refused as rounding to zero: 1.00 on no
    document and not in the balance."""
    async with luc(database_url, admin_key) as client:
        await _minimum_ten(client, "cm", credits="5")
        await record_accepted(client, [one_dollar("m1", job_id="job-m", customer_id="cm")])
        first = await created(
            await client.post("/v1/customers/cm/invoices", json={"month": "2026-10"})
        )
        # 1.00 of usage (paid in credits) topped up by 9.00 to 10.00: 9.00 due in money.
        assert [x["amount_usd"] for x in first["lines"]] == ["1", "9"]
        assert (first["total_usd"], first["credits_applied_usd"], first["amount_due_usd"]) == (
            "10.00",
            "1.00",
            "9.00",
        )
        # A late October call: 1.00 more of credits (balance 5 − 1 − 1 = 3).
        await record_accepted(client, [one_dollar("m2", job_id="job-m")])
        follow_up = await created(
            await client.post("/v1/customers/cm/invoices", json={"month": "2026-10"})
        )
        # The month still costs max(10, 2) = 10: its top-up falls by 1.00. Paid so far:
        # 9.00 in money and 2.00 in credits, 11.00; so 1.00 of money is owed back.
        assert follow_up["follow_up_of"] == first["number"]
        assert [x["amount_usd"] for x in follow_up["lines"]] == ["1", "-1"]
        assert (
            follow_up["total_usd"],
            follow_up["credits_applied_usd"],
            follow_up["amount_due_usd"],
        ) == ("0.00", "1.00", "-1.00")
        again = await client.post("/v1/customers/cm/invoices", json={"month": "2026-10"})
        assert again.status_code == 409, again.text


async def test_a_month_s_follow_up_whose_minimum_changes_by_less_than_a_cent_takes_no_number(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await _minimum_ten(client, "cz")
        await record_accepted(client, [one_dollar("z1", job_id="job-z", customer_id="cz")])
        first = await created(
            await client.post("/v1/customers/cz/invoices", json={"month": "2026-10"})
        )
        assert first["total_usd"] == "10.00"

        async def minimum(amount: str) -> None:
            await created(
                await client.post(
                    "/v1/plans/min10/versions",
                    json={
                        "effective_from": "2026-10-01T00:00:00Z",
                        "basis": "catalog",
                        "markup": "0",
                        "minimum_monthly_usd": amount,
                    },
                )
            )

        # The minimum rises by 0.004: 0.00 at the cent, so no number is spent on it.
        await minimum("10.004")
        refused = await client.post("/v1/customers/cz/invoices", json={"month": "2026-10"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"] == (
            "not issued: the month's minimum for customer 'cz' for 2026-10 changed by 0.004 "
            f"USD since {first['number']}, which is 0.00 at the cent, so no invoice or credit "
            "note is issued and no number is spent; the change carries forward to the month's "
            "next follow-up"
        )
        preview = (
            await client.get("/v1/customers/cz/invoices/preview", params={"month": "2026-10"})
        ).json()
        assert preview["issuable"] is False
        # The plan's minimum with every digit it has: "10.00" would not add up to the line.
        assert "Monthly minimum 10.004 USD (plan min10" in preview["lines"][-1]["description"]
        # Another 0.006 on top: 0.01 in all, carried forward, is billed.
        await minimum("10.01")
        follow_up = await created(
            await client.post("/v1/customers/cz/invoices", json={"month": "2026-10"})
        )
        assert [x["amount_usd"] for x in follow_up["lines"]] == ["0.01"]
        assert (follow_up["total_usd"], follow_up["follow_up_of"]) == ("0.01", first["number"])


async def test_a_change_of_price_to_usage_billed_before_is_a_line_apart_from_new_usage(
    database_url: str, admin_key: str
) -> None:
    """A follow-up holding both a re-pricing's change to an event billed before and new
    usage at the same plan version: they were one line, "1 event, 1,000,000 input at 3,
    catalog price + 100 %, 7.50", whose terms give 6.00. Now the new usage is its line at
    its terms and the change of price one of its own."""
    async with luc(database_url, admin_key) as client:
        await created(
            await client.post(
                "/v1/plans",
                json={"id": "half", "name": "Half", "effective_from": "2026-01-01T00:00:00Z",
                      "basis": "catalog", "markup": "0.5"},
            )
        )  # fmt: skip
        await created(
            await client.post(
                "/v1/customers",
                json={"id": "ini", "name": "Ini", "plan_id": "half", "invoicing": "per_job"},
            )
        )
        # GPT-5.1, 1,000,000 input tokens: 3.00 of cost; × 1.5 = 4.50
        await record_accepted(
            client,
            [wire_event("r-a", occurred_at="2026-11-10T10:00:00Z", job_id="job-r",
                        customer_id="ini", model=GPT, input_tokens=1_000_000, output_tokens=0)],
        )  # fmt: skip
        first = await created(await client.post("/v1/jobs/job-r/invoices"))
        assert first["subtotal_usd"] == "4.5"
        doubled = await created(
            await client.post(
                "/v1/plans/half/versions",
                json={"effective_from": "2026-11-01T00:00:00Z", "basis": "catalog",
                      "markup": "1"},
            )
        )  # fmt: skip
        # The same call again, priced by the new version at once: 3.00 × 2 = 6.00
        await record_accepted(
            client,
            [wire_event("r-b", occurred_at="2026-11-11T10:00:00Z", job_id="job-r",
                        customer_id="ini", model=GPT, input_tokens=1_000_000, output_tokens=0)],
        )  # fmt: skip
        repriced = await client.post(
            "/v1/plans/half/reprice", json={"since": "2026-11-01T00:00:00Z", "dry_run": False}
        )
        assert repriced.status_code == 200, repriced.text
        follow_up = await created(await client.post("/v1/jobs/job-r/invoices"))
        lines = [
            (x["events"], x["input_tokens"], x["amount_usd"], x["pricing"])
            for x in follow_up["lines"]
        ]
        terms = {"plan_id": "half", "plan_version": str(doubled["id"])}
        assert lines == [
            (1, 1_000_000, "6", {**terms, "method": "markup", "basis": "catalog",
                                  "basis_usd": "3", "markup": "1", "per_request_usd": "0"}),
            # r-a, billed at 4.50 on the first invoice, is 6.00 under the new version
            (0, 0, "1.5", {**terms, "method": "repricing"}),
        ]  # fmt: skip
        assert (follow_up["subtotal_usd"], follow_up["total_usd"]) == ("7.5", "7.50")


async def test_a_change_of_plan_reaches_a_month_s_minimum_through_a_re_pricing_only(
    database_url: str, admin_key: str
) -> None:
    """SPEC §11: a customer's plan change reaches past entries through a re-pricing. The
    month's minimum was read from the plan the customer is on now: moved to a plan with no
    minimum, October, invoiced and untouched, got a credit note giving its top-up back."""
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        first = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        # October's usage 0.84625 (a1, a2, b1, c1 at + 25 %), topped up to 5.00
        assert (first["lines"][-1].get("line_type"), first["lines"][-1]["amount_usd"]) == (
            "minimum",
            "4.15375",
        )
        await created(
            await client.post(
                "/v1/plans",
                json={"id": "flat", "name": "Flat", "effective_from": "2026-01-01T00:00:00Z",
                      "basis": "catalog", "markup": "0.5"},
            )
        )  # fmt: skip
        moved = await client.patch("/v1/customers/acme", json={"plan_id": "flat"})
        assert moved.status_code == 200, moved.text
        again = await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        assert again.status_code == 409, again.text
        preview = (await client.get("/v1/customers/acme/invoices/preview?month=2026-10")).json()
        assert preview["lines"] == []
        # Re-priced under the new plan (+ 50 %), October's entries name plan flat, which
        # has no minimum: each call gains another 25 % of its cost (0.1125, 0.0105, 0.035,
        # 0.01125), and the top-up comes back.
        done = await client.post(
            "/v1/plans/flat/reprice", json={"since": "2026-10-01T00:00:00Z", "dry_run": False}
        )
        assert done.status_code == 200, done.text
        back = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        assert [(x.get("line_type"), x["amount_usd"]) for x in back["lines"]] == [
            (None, "0.1125"),
            (None, "0.0105"),
            (None, "0.035"),
            (None, "0.01125"),
            ("minimum", "-4.15375"),
        ]
        # 0.16925 − 4.15375 = −3.9845 → −3.98
        assert (back["kind"], back["total_usd"]) == ("credit_note", "-3.98")
        # (it said "since the last invoice of this job" on a month's credit note)
        assert back["notes"][0].startswith(
            "Credit note: what is billed since the last invoice of this month comes to less "
            "than nothing"
        )


async def test_a_minimum_of_thirty_one_digits_is_issued_and_shown_in_every_form(
    database_url: str, admin_key: str
) -> None:
    # Padding an amount to the cent in the default 28-digit context raised: the preview,
    # the issue and the CSV and page of such an invoice were 500s.
    minimum = "1234567890123456789012345678901.5"
    async with luc(database_url, admin_key) as client:
        await created(
            await client.post(
                "/v1/plans",
                json={
                    "id": "huge", "name": "Huge", "effective_from": "2026-10-01T00:00:00Z",
                    "basis": "catalog", "markup": "0", "minimum_monthly_usd": minimum,
                },
            )
        )  # fmt: skip
        await created(
            await client.post(
                "/v1/customers",
                json={"id": "cb", "name": "Big", "plan_id": "huge", "invoicing": "monthly"},
            )
        )
        await record_accepted(client, [one_dollar("h1", job_id="job-h", customer_id="cb")])
        preview = await client.get("/v1/customers/cb/invoices/preview", params={"month": "2026-10"})
        assert preview.status_code == 200, preview.text
        invoice = await created(
            await client.post("/v1/customers/cb/invoices", json={"month": "2026-10"})
        )
        # 1.00 of usage, topped up to the minimum: the line is the minimum less 1.
        top_up = invoice["lines"][-1]
        assert top_up["amount_usd"] == "1234567890123456789012345678900.5"
        assert f"Monthly minimum {minimum}0 USD (plan huge" in top_up["description"]
        assert invoice["total_usd"] == minimum + "0"
        for form in ("csv", "html"):
            shown = await client.get(f"/v1/invoices/{invoice['number']}", params={"format": form})
            assert shown.status_code == 200, (form, shown.text[:300])
            assert minimum + "0" in shown.text


async def _flat_plan(client: Any, minimum: str | None = None) -> None:
    await created(
        await client.post(
            "/v1/plans",
            json={
                "id": "flat",
                "name": "Flat",
                "effective_from": "2026-01-01T00:00:00Z",
                "basis": "catalog",
                "markup": "0.5",
                **({"minimum_monthly_usd": minimum} if minimum is not None else {}),
            },
        )
    )


async def test_a_late_call_priced_under_a_new_plan_leaves_the_month_s_minimum_as_it_was(
    database_url: str, admin_key: str
) -> None:
    """README: a customer moved to another plan keeps its past months' minimums until a
    re-pricing moves their entries. The month's plan was read from its latest entry: one
    late call, priced under the new plan (no minimum), gave October's whole 4.15375 top-up
    back on a credit note."""
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        first = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        assert first["lines"][-1]["amount_usd"] == "4.15375"
        await _flat_plan(client)
        moved = await client.patch("/v1/customers/acme", json={"plan_id": "flat"})
        assert moved.status_code == 200, moved.text
        # Flash, 1,000 input tokens: 0.0001, + 50 % under flat = 0.00015.
        await record_accepted(
            client,
            [october("late", job_id="job-b", model=FLASH, input_tokens=1000, output_tokens=0)],
        )
        preview = (await client.get("/v1/customers/acme/invoices/preview?month=2026-10")).json()
        # Still markup25's 5.00: the month's usage 0.84625 + 0.00015 = 0.8464 owes a top-up
        # of 4.1536, 0.00015 less than billed; 0.00015 − 0.00015 = 0.00, carried forward.
        assert [(x.get("line_type"), x["amount_usd"]) for x in preview["lines"]] == [
            (None, "0.00015"),
            ("minimum", "-0.00015"),
        ]
        assert "plan markup25" in preview["lines"][-1]["model_name"]
        again = await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        assert again.status_code == 409, again.text


async def test_a_late_call_priced_under_a_plan_with_a_minimum_adds_none_to_a_past_month(
    database_url: str, admin_key: str
) -> None:
    """The other way: a customer without a minimum moved to a plan with one, no
    re-pricing; a late October call made October follow the new plan's 7.00 minimum."""
    async with luc(database_url, admin_key) as client:
        await created(
            await client.post(
                "/v1/plans",
                json={"id": "plain", "name": "Plain", "effective_from": "2026-01-01T00:00:00Z",
                      "basis": "catalog", "markup": "0"},
            )
        )  # fmt: skip
        await created(
            await client.post(
                "/v1/customers",
                json={"id": "beta", "name": "Beta", "plan_id": "plain", "invoicing": "monthly"},
            )
        )
        # Flash: 1,000,000 × 0.10 + 100,000 × 0.40 = 0.14
        await record_accepted(
            client,
            [october("b-1", job_id="job-beta", customer_id="beta", model=FLASH,
                     input_tokens=1_000_000, output_tokens=100_000)],
        )  # fmt: skip
        first = await created(
            await client.post("/v1/customers/beta/invoices", json={"month": "2026-10"})
        )
        assert (first["total_usd"], len(first["lines"])) == ("0.14", 1)
        await _flat_plan(client, minimum="7.00")
        moved = await client.patch("/v1/customers/beta", json={"plan_id": "flat"})
        assert moved.status_code == 200, moved.text
        # 1,000,000 Flash input tokens under flat: 0.10 × 1.5 = 0.15
        await record_accepted(
            client,
            [october("b-2", job_id="job-beta", model=FLASH, input_tokens=1_000_000,
                     output_tokens=0)],
        )  # fmt: skip
        follow_up = await created(
            await client.post("/v1/customers/beta/invoices", json={"month": "2026-10"})
        )
        # The late call alone: no minimum line (before: a top-up of 7 − 0.29 = 6.71).
        assert [(x.get("line_type"), x["amount_usd"]) for x in follow_up["lines"]] == [
            (None, "0.15")
        ]
        assert follow_up["total_usd"] == "0.15"


async def test_a_month_invoiced_before_the_customer_went_per_job_gives_its_top_up_back(
    database_url: str, admin_key: str
) -> None:
    """October was invoiced monthly (0.84625 topped up by 4.15375 to 5.00); the customer
    then went per job, and a late October call was billed on its job's invoice. The
    month's follow-up, which gives back what that call covers of the top-up, was refused
    (409: invoiced per job) and no route could issue it: October billed 5.56."""
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        await created(await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"}))
        switched = await client.patch("/v1/customers/acme", json={"invoicing": "per_job"})
        assert switched.status_code == 200, switched.text
        # Sonnet, 150,000 input tokens: 0.45, + 25 % = 0.5625; and a stub's answer on
        # another job, which no invoice ever bills.
        await record_accepted(
            client,
            [october("late", job_id="job-late", customer_id="acme", model=SONNET,
                     input_tokens=150_000, output_tokens=0),
             october("stub", job_id="job-stub", customer_id="acme", model=FLASH,
                     provider="stub", input_tokens=1000, output_tokens=500)],
        )  # fmt: skip
        # Its usage goes on the job's invoice: until it is billed, the month's minimum is
        # what it was, and the follow-up holds nothing.
        early = await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        assert early.status_code == 409, early.text
        assert "nothing new" in early.json()["detail"]
        job = await created(await client.post("/v1/jobs/job-late/invoices"))
        assert [x["amount_usd"] for x in job["lines"]] == ["0.5625"]
        back = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        # The month's usage 0.84625 + 0.5625 = 1.40875 owes 3.59125 of top-up: 0.5625
        # back, −0.56 at the cent.
        assert [(x.get("line_type"), x["amount_usd"]) for x in back["lines"]] == [
            ("minimum", "-0.5625")
        ]
        assert (back["kind"], back["total_usd"], back["amount_due_usd"]) == (
            "credit_note",
            "-0.56",
            "-0.56",
        )
        # October: 5.00 + 0.56 − 0.56 = 5.00, the minimum.
        nothing = await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        assert nothing.status_code == 409, nothing.text


async def test_a_stub_s_answer_first_in_the_month_leaves_the_minimum_to_the_customer_s_plan(
    database_url: str, admin_key: str
) -> None:
    """The stub's answers are priced by no plan: the month's first event being one made
    the month's plan none, and its 5.00 minimum was not billed."""
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        await created(
            await client.post(
                "/v1/customers",
                json={"id": "stubco", "name": "Stub Co", "plan_id": "markup25",
                      "invoicing": "monthly"},
            )
        )  # fmt: skip
        await record_accepted(
            client,
            [october("first", job_id="job-s", customer_id="stubco", model=FLASH,
                     provider="stub", input_tokens=1000, output_tokens=500),
             # Flash: 1,000,000 × 0.10 = 0.10, + 25 % = 0.125
             october("second", job_id="job-s", model=FLASH, input_tokens=1_000_000,
                     output_tokens=0)],
        )  # fmt: skip
        october_invoice = await created(
            await client.post("/v1/customers/stubco/invoices", json={"month": "2026-10"})
        )
        # 0.125 topped up by 4.875 to 5.00
        assert [(x.get("line_type"), x["amount_usd"]) for x in october_invoice["lines"]] == [
            (None, "0.125"),
            ("minimum", "4.875"),
        ]
        assert october_invoice["total_usd"] == "5.00"


# Gemini 3.0 Flash re-rated from October: input 0.100004 instead of 0.10 USD per 1M.
FLASH_A_HAIR_DEARER = {
    "id": FLASH,
    "name": "Gemini 3.0 Flash",
    "tier": "fast",
    "input": "0.100004",
    "output": "0.40",
    "cache_read": "0.01",
    "context_tokens": 1000000,
}


async def _rerate_flash_from_october(client: Any) -> None:
    await created(
        await client.post(
            "/v1/catalog/versions",
            json={
                "effective_from": "2026-10-01T00:00:00Z",
                "parent": 1,
                "models": [FLASH_A_HAIR_DEARER],
            },
        )
    )
    done = await client.post(
        "/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z", "dry_run": False}
    )
    assert done.status_code == 200, done.text


async def test_a_job_s_re_rating_of_less_than_a_cent_after_a_monthly_invoice_takes_no_number(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        month = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
        await _rerate_flash_from_october(client)
        # b1 (job-b), billed on the month's invoice: 1,000,000 × 0.000004 per 1M = 0.000004
        # more cost, × 1.25 = 0.000005 more price: a reversal of 0.175 and a re-booking of
        # 0.175005. The job's first invoice of its own re-books a call the month billed: a
        # follow-up of that invoice, 0.00 at the cent, so not issued.
        preview = (await client.get("/v1/jobs/job-b/invoice")).json()
        assert [x["amount_usd"] for x in preview["lines"]] == ["-0.175", "0.175005"]
        assert (preview["subtotal_usd"], preview["total_usd"]) == ("0.000005", "0.00")
        assert preview["follow_up_of"] == month["number"]
        response = await client.post("/v1/jobs/job-b/invoices")
        assert response.status_code == 409, response.text
        assert response.json()["detail"] == (
            f"not issued: the new usage of job 'job-b' since {month['number']} comes to "
            "0.000005 USD, which is 0.00 at the cent, so no invoice or credit note is issued "
            "and no number is spent; its 2 ledger entries stay unbilled and carry forward to "
            "the job's next follow-up"
        )
        assert preview["not_issued_because"] == response.json()["detail"]
        listed = (await client.get("/v1/invoices")).json()["items"]
        assert [x["number"] for x in listed] == [month["number"]]


async def test_a_month_s_re_rating_of_less_than_a_cent_after_its_jobs_invoices_takes_no_number(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        # No plan: the price is the catalog cost, and no minimum tops a month up.
        await created(
            await client.post(
                "/v1/customers", json={"id": "bee", "name": "Bee", "invoicing": "monthly"}
            )
        )
        # 1,000,000 × 0.10 + 100,000 × 0.40 = 0.14, billed on the job's own invoice.
        await record_accepted(
            client,
            [october("b1", job_id="bee-job", customer_id="bee", model=FLASH,
                     input_tokens=1_000_000, output_tokens=100_000)],
        )  # fmt: skip
        job_invoice = await created(await client.post("/v1/jobs/bee-job/invoices"))
        assert job_invoice["total_usd"] == "0.14"
        await _rerate_flash_from_october(client)
        # The month's first invoice would hold only b1's reversal (−0.14) and re-booking
        # (0.140004): it re-books the call the job's invoice billed, so it is that invoice's
        # follow-up, 0.00 at the cent: not issued.
        preview = (await client.get("/v1/customers/bee/invoices/preview?month=2026-10")).json()
        assert [x["amount_usd"] for x in preview["lines"]] == ["-0.14", "0.140004"]
        assert preview["follow_up_of"] == job_invoice["number"]
        response = await client.post("/v1/customers/bee/invoices", json={"month": "2026-10"})
        assert response.status_code == 409, response.text
        assert response.json()["detail"] == (
            f"not issued: the new usage of customer 'bee' for 2026-10 since "
            f"{job_invoice['number']} comes to 0.000004 USD, which is 0.00 at the cent, so no "
            "invoice or credit note is issued and no number is spent; its 2 ledger entries "
            "stay unbilled and carry forward to the month's next follow-up"
        )
        listed = (await client.get("/v1/invoices")).json()["items"]
        assert [x["number"] for x in listed] == [job_invoice["number"]]
