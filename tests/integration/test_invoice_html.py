"""The printable invoice opens in a real browser: headless Chromium (Debian's ``chromium``).

The test keeps the page and its A4-sized screenshot under ``test-artifacts/`` for a human
to look at. Without Chromium it skips, except under CI (``CI`` set), where it fails:
``.ci/run`` installs the browser, so a missing one there is a broken pipeline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.events import wire_event
from tests.support.paths import PROJECT_ROOT

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
    # Lines to the cent (0.047205 → 0.05, 0.0022 → 0.00), the exact subtotal in the notes.
    assert '<td class="num">0.05</td>' in rendered and '<td class="num">0.00</td>' in rendered
    assert "0.049405" in rendered
    assert invoice["digest"] in rendered
