"""The printable invoice opens in a real browser: headless Chromium (Debian's ``chromium``).

The tests keep the pages, their A4-sized screenshots and a long invoice printed to PDF (by
Chromium, as a browser's "Save as PDF" does) under ``test-artifacts/`` for a human to look
at; the PDF's pages are read back with pypdf to check how the invoice breaks across them.
Without Chromium they skip, except under CI (``CI`` set), where they fail: ``.ci/run``
installs the browser, so a missing one there is a broken pipeline.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from pypdf import PdfReader
from pypdf.generic import DictionaryObject

from service.app import create_app
from tests.support.events import wire_event
from tests.support.images import png
from tests.support.keys import bearer
from tests.support.paths import PROJECT_ROOT
from tests.support.settings import settings_for

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
# A4 at 150 dpi: 210 × 297 mm → 1240 × 1754 px.
WINDOW = "1240,1754"


def chromium_or_skip() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if found is None:
        reason = "chromium is not installed (apt-get install -y --no-install-recommends chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    return found


async def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_the_invoice_page_renders_in_headless_chromium_with_number_and_total(
    client: Any, tmp_path: Path
) -> None:
    binary = chromium_or_skip()
    events = [
        # Sonnet: 12,345 × 3 + 678 × 15 = 47,205 per 1M → 0.047205
        wire_event(
            "h1",
            occurred_at="2026-10-10T09:00:00Z",
            job_id="job-html",
            model="anthropic/claude-sonnet-4.5",
            input_tokens=12_345,
            output_tokens=678,
        ),
        # Flash: 10,000 × 0.10 + 40,000 cached × 0.01 + 2,000 × 0.40 = 2,200 → 0.0022
        wire_event(
            "h2",
            occurred_at="2026-10-11T09:00:00Z",
            job_id="job-html",
            agent="ORACLE",
            provider="vertex",
            model="gemini-3.0-flash",
            input_tokens=50_000,
            cached_input_tokens=40_000,
            output_tokens=2_000,
        ),
    ]
    assert (await client.post("/v1/events/batch", json={"events": events})).status_code == 200
    patched = await client.patch(
        "/v1/jobs/job-html",
        json={"customer": "Acme <Research> & Co", "title": "Q4 study", "reference": "PO-7731"},
    )
    assert patched.status_code == 200, patched.text
    issued = await client.post("/v1/jobs/job-html/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    # 0.047205 + 0.0022 = 0.049405 → 0.05
    assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("0.049405", "0.05")

    page = await client.get(f"/v1/invoices/{invoice['number']}", params={"format": "html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    ARTIFACTS.mkdir(exist_ok=True)
    html_path = ARTIFACTS / "invoice.html"
    html_path.write_text(page.text, encoding="utf-8")
    screenshot = ARTIFACTS / "invoice.png"
    screenshot.unlink(missing_ok=True)

    shot = await run_chromium(
        binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", html_path.as_uri()
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # An A4 page with a table on it, not an empty canvas.
    assert len(data) > 20_000

    dom = await run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", html_path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert f'<div class="number" id="invoice-number">{invoice["number"]}</div>' in rendered
    assert '<td class="num" id="invoice-total">0.05</td>' in rendered
    # Metadata is shown, escaped, never interpreted as markup.
    assert "Acme &lt;Research&gt; &amp; Co" in rendered
    assert "PO-7731" in rendered
    # Lines and subtotal at every digit; the total, 0.05, is the subtotal rounded once.
    assert '<td class="num">0.047205</td>' in rendered
    assert '<td class="num">0.0022</td>' in rendered
    assert '<td class="num" id="invoice-subtotal">0.049405</td>' in rendered
    assert '<td class="num" id="invoice-rounding">0.000595</td>' in rendered
    assert invoice["digest"] in rendered


AGENTS = [f"agent-{i:02d}" for i in range(55)]


async def test_a_long_invoice_prints_on_a4_pages_repeating_the_header_and_never_cutting_a_line(
    database_url: str, admin_key: str, tmp_path: Path
) -> None:
    binary = chromium_or_skip()
    logo = tmp_path / "logo.png"
    logo.write_bytes(png(120, 40))
    issuer = {
        "LUC_ISSUER_NAME": "AIMS Billing GmbH",
        "LUC_ISSUER_ADDRESS": "Hauptstraße 1\\n10115 Berlin\\nGermany",
        "LUC_ISSUER_TAX_ID": "DE123456789",
        "LUC_ISSUER_PAYMENT_TERMS_DAYS": "14",
        "LUC_ISSUER_LOGO": str(logo),
        "LUC_ISSUER_FOOTER": "AIMS Billing GmbH · IBAN DE00 1234 5678 9012 3456 78 · BIC AIMSDEFF",
    }
    app = create_app(settings_for(database_url, LUC_AUTH="on", **issuer))
    async with AsyncTestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        created = await client.post(
            "/v1/customers",
            json={
                "id": "acme",
                "name": "Acme Research Ltd",
                "address": "1 Road Runner Way\nPhoenix, AZ 85001\nUSA",
                "tax_id": "US-99-1234567",
            },
        )
        assert created.status_code == 201, created.text
        # One line per agent: 55 lines. Each call: Sonnet 12,345 in (400 cached) and 678 out:
        # 11,945 × 3 + 400 × 0.30 + 678 × 15 = 35,835 + 120 + 10,170 = 46,125 per 1M
        # → 0.046125, shown so; 55 of them: 2.536875 → 2.54, rounded once (+0.003125). To
        # the cent, each line showed 0.05: a column of 2.75 and a rounding of −0.21.
        events = [
            wire_event(
                f"long-{agent}",
                occurred_at="2026-10-10T09:00:00Z",
                job_id="job-long-invoice",
                customer_id="acme",
                agent=agent,
                model="anthropic/claude-sonnet-4.5",
                input_tokens=12_345,
                cached_input_tokens=400,
                output_tokens=678,
            )
            for agent in AGENTS
        ]
        batch = await client.post("/v1/events/batch", json={"events": events})
        assert batch.json()["accepted"] == 55, batch.text
        issued = await client.post("/v1/jobs/job-long-invoice/invoices")
        assert issued.status_code == 201, issued.text
        invoice = issued.json()
        assert len(invoice["lines"]) == 55
        assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("2.536875", "2.54")
        page = await client.get(f"/v1/invoices/{invoice['number']}", params={"format": "html"})
    assert page.status_code == 200

    ARTIFACTS.mkdir(exist_ok=True)
    html_path = ARTIFACTS / "invoice-long.html"
    html_path.write_text(page.text, encoding="utf-8")
    pdf_path = ARTIFACTS / "invoice-long.pdf"
    pdf_path.unlink(missing_ok=True)
    printed = await run_chromium(
        binary,
        tmp_path / "profile-pdf",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf_path}",
        html_path.as_uri(),
    )
    assert printed.returncode == 0, printed.stderr[-2000:]
    screenshot = ARTIFACTS / "invoice-long.png"
    shot = await run_chromium(
        binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", html_path.as_uri()
    )
    assert shot.returncode == 0, shot.stderr[-2000:]

    pages = PdfReader(pdf_path).pages
    # A4 (210 × 297 mm = 595 × 842 pt), as the page's @page rule asks.
    assert {(round(float(p.mediabox.width)), round(float(p.mediabox.height))) for p in pages} == {
        (595, 842)
    }
    texts = [p.extract_text() for p in pages]
    assert len(texts) > 1
    with_lines = [t for t in texts if "agent agent-" in t]
    assert len(with_lines) > 1
    for text in with_lines:
        # The table's header row heads every page that has lines...
        assert text.count("DESCRIPTION CALLS USAGE × UNIT PRICE (USD) AMOUNT (USD)") == 1, text
        # ...and each line is whole on its page: its name, its three price lines and its
        # amount are there as often as the line is.
        whole = text.count("agent agent-")
        assert whole == text.count("Claude Sonnet 4.5"), text
        assert whole == text.count("input tokens × 3.00 / 1M tokens"), text
        assert whole == text.count("cache read tokens × 0.30 / 1M tokens"), text
        assert whole == text.count("output tokens × 15.00 / 1M tokens"), text
    # Every line is printed once, in order.
    printed_agents = [a for t in texts for a in re.findall(r"agent (agent-\d\d)", t)]
    assert printed_agents == AGENTS
    # The first page: issuer, bill-to, number, dates and terms.
    first = texts[0]
    for expected in (
        "AIMS Billing GmbH",
        "Hauptstraße 1",
        "DE123456789",
        "BILL TO",
        "Acme Research Ltd",
        "US-99-1234567",
        invoice["number"],
        f"Due date {invoice['due_date']}",
        "14 days net",
    ):
        assert expected in first, expected
    # The totals are whole on one page, after every line; the footer ends the invoice.
    (totals,) = [t for t in texts if "Subtotal (USD)" in t]
    for expected in (
        "Subtotal (USD) 2.536875",
        "Rounding (USD) 0.003125",
        "Total (USD) 2.54",
        "Prepaid credits applied (USD) 0.00",
        "Amount due (USD) 2.54",
    ):
        assert expected in totals, expected
    assert texts.index(totals) >= max(texts.index(t) for t in with_lines)
    assert "IBAN DE00 1234 5678 9012 3456 78" in texts[-1]
    # The logo is drawn: an image of its size among the first page's resources.
    resources = pages[0]["/Resources"]
    assert isinstance(resources, DictionaryObject)  # what a page's /Resources holds
    objects = resources.get("/XObject", {})
    images = [objects[name].get_object() for name in objects]
    assert [(i["/Width"], i["/Height"]) for i in images if i["/Subtype"] == "/Image"] == [(120, 40)]


async def test_a_credit_note_page_says_credit_note_and_the_invoice_it_corrects(
    client: Any, tmp_path: Path
) -> None:
    binary = chromium_or_skip()
    llama = "meta-llama/llama-3.3-70b-instruct"
    # v1: (100,000 + 900,000 cached) × 0.10 + 20,000 × 0.10 = 0.102; corrected (cache reads
    # 0.01): 10,000 + 9,000 + 2,000 = 0.021; the follow-up −0.081 → −0.08
    call = wire_event(
        "cn-1",
        occurred_at="2026-10-10T09:00:00Z",
        job_id="job-credit",
        model=llama,
        input_tokens=1_000_000,
        cached_input_tokens=900_000,
        output_tokens=20_000,
    )
    assert (await client.post("/v1/events/batch", json={"events": [call]})).status_code == 200
    first = (await client.post("/v1/jobs/job-credit/invoices")).json()
    correction = {
        "effective_from": "2026-09-01T00:00:00Z",
        "parent": 1,
        "models": [
            {
                "id": llama,
                "name": "Llama 3.3 70B",
                "tier": "economy",
                "input": "0.10",
                "output": "0.10",
                "cache_read": "0.01",
            }
        ],
    }
    assert (await client.post("/v1/catalog/versions", json=correction)).status_code == 201
    rerated = await client.post("/v1/catalog/rerate", json={"since": "2026-09-01T00:00:00Z"})
    assert rerated.status_code == 200, rerated.text
    issued = await client.post("/v1/jobs/job-credit/invoices")
    assert issued.status_code == 201, issued.text
    credit = issued.json()
    assert (credit["kind"], credit["total_usd"]) == ("credit_note", "-0.08")
    page = await client.get(f"/v1/invoices/{credit['number']}", params={"format": "html"})
    ARTIFACTS.mkdir(exist_ok=True)
    html_path = ARTIFACTS / "credit-note.html"
    html_path.write_text(page.text, encoding="utf-8")
    screenshot = ARTIFACTS / "credit-note.png"
    shot = await run_chromium(
        binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", html_path.as_uri()
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    dom = await run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", html_path.as_uri())
    rendered = dom.stdout
    assert "<h1>Credit note</h1>" in rendered
    assert f'<div class="number" id="invoice-number">{credit["number"]}</div>' in rendered
    assert f'<dt>Corrects invoice</dt><dd class="">{first["number"]}</dd>' in rendered
    assert '<td class="num" id="invoice-total">-0.08</td>' in rendered
    assert '<td class="num" id="invoice-amount-due">-0.08</td>' in rendered
    # Nobody configured an issuer here: the page says so rather than invent one.
    assert "Issuer not configured (set LUC_ISSUER_NAME)" in rendered
